"""An exclusive lock on a file shared by several processes (``next-batch`` on one state).

The lock is an advisory lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows) on a sidecar
file, ``<file>.lock`` beside the real path of the protected file (a symlink and its target
share one lock). The sidecar stays after use: removing it while another process waits would
let two processes hold "the" lock on two different files. The operating system releases the
lock when its holder ends, a killed one included, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from metalearn.exceptions import MetalearnError, OutputFileError

__all__ = ["LOCK_SUFFIX", "ExclusiveFileLock", "lock_path_of"]

#: Suffix of the sidecar lock file.
LOCK_SUFFIX = ".lock"
_POLL_SECONDS = 0.05


def lock_path_of(path: str | os.PathLike[str]) -> Path:
    """The sidecar lock file of ``path``: ``<real path>.lock`` (symlinks followed)."""
    real = Path(os.path.realpath(path))
    return real.with_name(real.name + LOCK_SUFFIX)


def _try_lock(fd: int) -> bool:
    """Take the lock without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


class ExclusiveFileLock:
    """Hold an exclusive lock on ``path`` (its sidecar file) for a ``with`` block.

    Parameters
    ----------
    path : path
        The protected file (it need not exist yet).
    timeout : float
        Seconds to wait for another holder to finish; 0 tries once.
    busy : callable
        Builds the error raised when the lock is still held after ``timeout`` seconds.

    Raises
    ------
    OutputFileError
        The lock file cannot be created or opened, or is not a regular file.
    MetalearnError
        ``busy()``, when another process holds the lock for longer than ``timeout``.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float, busy: Callable[[], MetalearnError]) -> None:
        self.path = lock_path_of(path)
        self.timeout = float(timeout)
        self.busy = busy
        self._fd: int | None = None

    def __enter__(self) -> "ExclusiveFileLock":
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            raise OutputFileError(f"cannot open the lock file {str(self.path)!r}: {exc.strerror or exc}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OutputFileError(f"lock file {str(self.path)!r} is not a regular file; remove it")
            deadline = time.monotonic() + max(0.0, self.timeout)
            while not _try_lock(fd):
                if time.monotonic() >= deadline:
                    raise self.busy()
                time.sleep(_POLL_SECONDS)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _unlock(fd)
        finally:
            os.close(fd)
