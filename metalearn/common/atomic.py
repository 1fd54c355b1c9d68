"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never a part.

Every file metalearn writes that a crash, a full disk or Ctrl-C must not leave half-written
(run results, tables, policy files, checkpoints, progress logs, labeling state, next-batch
output) goes through :func:`atomic_write`.

The data goes to a temporary file beside the target, named ``.<target>.<pid>.<random>.tmp``,
is flushed to disk, then renamed over the target (:func:`os.replace`, atomic on POSIX and
Windows). A process killed mid-write (SIGKILL, power loss) leaves its temporary file behind;
the next write to the same target removes the temporaries of processes that no longer run.

The output gets the mode a plain write would give it: the replaced file's mode, or for a new
file ``0o666`` less the process umask (not the ``0o600`` of a temporary file). A target that
exists and is not a regular file (a device such as ``/dev/null``, a FIFO, a folder, or a symlink
to one) is refused, never replaced by a regular file. A write that fails (disk full, file-size
limit, read-only folder) leaves the target as it was and raises
:class:`~metalearn.exceptions.OutputFileError`, one line naming the file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable

from metalearn.exceptions import OutputFileError

__all__ = [
    "atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_replace", "output_mode", "remove_stale_temporaries",
]

_LEGACY_AGE_SECONDS = 3600.0


def _prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True


def remove_stale_temporaries(target: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that writes to ``target`` by dead processes left behind.

    Returns
    -------
    list of Path
        The files removed.
    """
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[^.]*\.tmp$")
    # metalearn 0.1.0 named them <target>.<random>.tmp, without a process id: removed once an
    # hour old (no write takes that long).
    legacy = re.compile(rf"^{re.escape(target.name)}\.[a-z0-9_]{{8}}\.tmp$")
    removed: list[Path] = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = pattern.match(entry.name)
        if match is not None:
            if _process_alive(int(match.group(1))):
                continue
        elif legacy.match(entry.name) is None or not _older_than(entry, now - _LEGACY_AGE_SECONDS):
            continue
        try:
            entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except OSError:
        return False


def _current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (a brief, process-wide change)
    os.umask(mask)
    return mask


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def output_mode(target: str | os.PathLike[str]) -> int:
    """The permission bits a plain write to ``target`` would leave: the existing file's, or the umask's.

    Raises
    ------
    OutputFileError
        ``target`` exists (following symlinks) and is not a regular file: a device, a FIFO, a
        socket or a folder is never replaced by a regular file.
    """
    try:
        info = os.stat(target)  # follows a symlink: a link to /dev/null is refused too
    except FileNotFoundError:  # a new file (or a dangling symlink, which a plain write would create)
        return 0o666 & ~_current_umask()
    except OSError as exc:
        raise OutputFileError(f"cannot write {os.fspath(target)!r}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise OutputFileError(
            f"refusing to write {os.fspath(target)!r}: it is {_kind_of(info.st_mode)}, not a regular file; "
            "choose a file path for the output"
        )
    return stat.S_IMODE(info.st_mode)


def _write_failed(target: Path, exc: OSError) -> OutputFileError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = {errno.ENOSPC: "; free space and retry", errno.EFBIG: "; the file-size limit was reached",
            errno.EDQUOT: "; the disk quota is used up"}.get(exc.errno or 0, "")
    error = OutputFileError(f"cannot write {str(target)!r}: {reason}{hint} (the file was left as it was)")
    error.errno, error.strerror, error.filename = exc.errno, exc.strerror or reason, str(target)
    return error


def fsync_replace(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Flush the finished temporary file ``tmp`` to disk, then move it over ``final``."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def atomic_write(target: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Write ``target`` atomically with ``write(temporary_path)``.

    Parameters
    ----------
    target : path
        The file to create or replace. Its folder must exist.
    write : callable
        Writes the complete content to the path it is given (e.g. ``frame.to_csv``).

    Returns
    -------
    Path
        ``target``.

    Raises
    ------
    OutputFileError
        ``target`` is not a regular file (see :func:`output_mode`), or the temporary file
        cannot be created, written or renamed (nothing is left behind, and an existing
        ``target`` is unchanged). An ``OSError`` as well as one of metalearn's errors.
    """
    target = Path(target)
    mode = output_mode(target)
    remove_stale_temporaries(target)
    try:
        handle, name = tempfile.mkstemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _write_failed(target, exc) from None
    os.close(handle)
    tmp = Path(name)
    try:
        write(str(tmp))
        os.chmod(tmp, mode)  # mkstemp's 0600 would hide the output from colleagues
        fsync_replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OutputFileError):
            raise
        raise _write_failed(target, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)
    return target


def atomic_write_bytes(target: str | os.PathLike[str], payload: bytes) -> Path:
    """Write ``payload`` to ``target`` atomically (see :func:`atomic_write`)."""

    def write(path: str) -> None:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_TRUNC), "wb") as out:
            out.write(payload)

    return atomic_write(target, write)


def atomic_write_text(target: str | os.PathLike[str], text: str, *, newline: str | None = None) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically (see :func:`atomic_write`)."""

    def write(path: str) -> None:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_TRUNC), "w", encoding="utf-8", newline=newline) as out:
            out.write(text)

    return atomic_write(target, write)


def _fsync_folder(folder: Path) -> None:
    """Persist the rename (POSIX; best effort elsewhere)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
