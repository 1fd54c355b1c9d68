"""Atomic file writes: a file appears under its final name complete, or not at all.

Every file metalearn writes that a crash, a full disk or Ctrl-C must not leave half-written
(run results, tables, policy files, checkpoints, progress logs, labeling state) goes through
:func:`atomic_write`: the data is written to a temporary file in the same folder, flushed to
disk (fsync) and moved over the target with :func:`os.replace`, which is atomic on POSIX and
Windows. A failure removes the temporary file and re-raises the :class:`OSError`, so callers
turn it into their own error naming what could not be written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_replace"]


def fsync_replace(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Flush the finished temporary file ``tmp`` to disk, then move it over ``final``."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Write ``path`` atomically with ``write(temporary_path)``, which writes the whole file.

    Parameters
    ----------
    path : path
        The target; its folder must exist.
    write : callable
        Called with the temporary file's path (an empty file in the same folder), e.g.
        ``lambda tmp: frame.to_parquet(tmp)``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OSError
        Whatever the write, the fsync or the rename raised; the temporary file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        fsync_replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""

    def write(tmp: str) -> None:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as handle:
            handle.write(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, newline: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""

    def write(tmp: str) -> None:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8", newline=newline) as handle:
            handle.write(text)

    return atomic_write(path, write)
