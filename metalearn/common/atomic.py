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

Several outputs that belong together (``next-batch``'s state file and its table to label) go
through :class:`AtomicGroup`: all are written to temporaries first, then renamed together, and
a failure part-way restores those already replaced.
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
    "AtomicGroup", "atomic_write", "atomic_write_bytes", "atomic_write_text", "fsync_replace", "output_mode", "remove_stale_temporaries",
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


class AtomicGroup:
    """Several outputs written all or none: a failure part-way leaves every target as it was.

    Each :meth:`add` writes one output to its temporary file beside the target (a full disk
    fails here, before any target changes); :meth:`commit` then renames the temporaries over
    their targets in the order they were added, keeping a hard link (or a copy) of each
    replaced file, and restores the replaced targets if a later rename fails. A group left
    without a commit (an error, Ctrl-C) removes its temporaries. Use it as a context manager.

    A process killed between two renames (SIGKILL, power loss) cannot roll back: order the
    outputs so that the first ones are safe to stand alone (for ``next-batch``, the state file
    that reserves the records before the table that hands them out).
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self._committed = False

    def __enter__(self) -> "AtomicGroup":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._committed:
            self.discard()

    def add(self, target: str | os.PathLike[str], write: Callable[[str], None]) -> None:
        """Write the content of ``target`` with ``write(temporary_path)``; nothing is replaced yet.

        Raises
        ------
        OutputFileError
            ``target`` is not a regular file (:func:`output_mode`) or the write failed; the
            temporaries of this group are removed and no target has changed.
        """
        target = Path(target)
        try:
            mode = output_mode(target)
            remove_stale_temporaries(target)
            try:
                handle, name = tempfile.mkstemp(prefix=_prefix(target), suffix=".tmp", dir=target.parent)
            except OSError as exc:
                raise _write_failed(target, exc) from None
            os.close(handle)
            tmp = Path(name)
            self._staged.append((target, tmp))
            try:
                write(str(tmp))
                os.chmod(tmp, mode)
                with open(tmp, "rb+") as staged:
                    os.fsync(staged.fileno())
            except OSError as exc:  # an OutputFileError of a nested writer names the temporary: name the target
                raise _write_failed(target, exc) from None
        except BaseException:
            self.discard()
            raise

    def commit(self) -> list[Path]:
        """Replace every target by its new content, in the order added; all or none.

        Returns
        -------
        list of Path
            The targets.

        Raises
        ------
        OutputFileError
            A rename failed: the targets already replaced are restored and the message says
            so (or names a target that could not be restored).
        """
        replaced: list[tuple[Path, Path | None]] = []  # (target, backup of its old content or None if new)
        try:
            for target, tmp in self._staged:
                backup = _backup(target)
                try:
                    os.replace(tmp, target)
                except BaseException:
                    if backup is not None:
                        backup.unlink(missing_ok=True)
                    raise
                replaced.append((target, backup))
        except OSError as exc:
            failed = self._staged[len(replaced)][0]
            others = [str(t) for t, _ in self._staged if t != failed]
            unrestored = _roll_back(replaced)
            self.discard()
            error = _write_failed(failed, exc)
            if unrestored:
                detail = f"; {', '.join(repr(str(p)) for p in unrestored)} could not be restored"
            else:
                detail = f"; {', '.join(repr(o) for o in others)} left as it was too" if others else ""
            raise OutputFileError(f"{error}{detail}") from None
        except BaseException:
            _roll_back(replaced)
            self.discard()
            raise
        self._committed = True
        for _, backup in replaced:
            if backup is not None:
                backup.unlink(missing_ok=True)
        for folder in dict.fromkeys(target.parent for target, _ in self._staged):
            _fsync_folder(folder)
        return [target for target, _ in self._staged]

    def discard(self) -> None:
        """Remove the temporaries not yet renamed (the targets are untouched)."""
        for _, tmp in self._staged:
            tmp.unlink(missing_ok=True)
        if not self._committed:
            self._staged = []


def _backup(target: Path) -> Path | None:
    """A second name for the current content of ``target`` (None if it does not exist), for a roll-back.

    A hard link costs nothing; where the file system has none, a copy. The name is a temporary
    of this process, so a kill leaves nothing the next write does not clean.
    """
    if not target.exists():
        return None
    import secrets
    import shutil

    for _ in range(100):
        backup = target.parent / f"{_prefix(target)}{secrets.token_hex(4)}.tmp"
        try:
            os.link(target, backup)
        except FileExistsError:
            continue
        except OSError:
            shutil.copy2(target, backup)
        return backup
    raise OutputFileError(f"cannot write {str(target)!r}: no free name for its backup")  # pragma: no cover


def _roll_back(replaced: list[tuple[Path, Path | None]]) -> list[Path]:
    """Put the old contents back (newest first); the targets that could not be restored."""
    failed = []
    for target, backup in reversed(replaced):
        try:
            if backup is None:
                target.unlink(missing_ok=True)
            else:
                os.replace(backup, target)
        except OSError:
            failed.append(target)
    return failed
