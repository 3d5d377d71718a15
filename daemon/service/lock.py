"""One daemon per record: the instance lock, a file holding the pid, locked while the daemon runs."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import AlreadyRunning


class InstanceLock:
    """One daemon per user: an exclusive lock on a file in the runtime dir, holding the pid."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # 0644: it holds only a pid, and in the system-wide mode the tray and `status` of
        # other users read it to find the daemon (the user mode's runtime dir is 0700).
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise AlreadyRunning(self.holder(self.path), self.path)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock
            self.fd = None

    @staticmethod
    def holder(path: Path) -> int | None:
        """The pid of the running daemon, or None when the lock is free."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            if _try_lock(fd, shared=True):
                return None
            text = os.read(fd, 32).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        finally:
            os.close(fd)


def _try_lock(fd: int, shared: bool = False) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
