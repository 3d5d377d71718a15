"""One daemon per record: the instance lock, a file holding the pid, locked while the daemon runs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import AlreadyRunning, StoreError, UnwritableDir

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class InstanceLock:
    """One daemon per record: an exclusive lock on a file beside it, holding the pid. The file is
    opened without following a symbolic link and must be a regular file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise UnwritableDir(self.path.parent, err) from err
        try:
            # 0644: it holds only a pid, and in the system-wide mode the tray and `status` of
            # other users read it to find the daemon (the user mode's state dir is 0700).
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | NOFOLLOW, 0o644)
        except OSError as err:
            what = "is a symbolic link (never followed)" if os.path.islink(self.path) else f"cannot be opened: {err.strerror or err}"
            raise StoreError(f"the daemon's lock {self.path} {what}; move it away or fix its folder's permissions", path=self.path) from err
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"the daemon's lock {self.path} is not a regular file; move it away", path=self.path)
        if not _try_lock(fd):
            os.close(fd)
            raise AlreadyRunning(self.holder(self.path), self.path)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def note(self, text: str) -> None:
        """Say something about the running daemon where readers find it without the record:
        a second line of the lock file (`portbell status` shows it). Rewritten in place within
        the file's first block, so it works when the disk is full and the record cannot be written."""
        if self.fd is None:
            return
        data = f"{os.getpid()}\n{' '.join(text.split())[:900]}\n" if text else f"{os.getpid()}\n"
        try:
            os.pwrite(self.fd, data.encode("utf-8", "replace"), 0)
            os.ftruncate(self.fd, len(data.encode("utf-8", "replace")))
        except OSError:
            pass

    @staticmethod
    def note_of(path: Path) -> str | None:
        """What the running daemon noted (see `note`), or None (also when no daemon holds the lock:
        an old note means nothing)."""
        lines = _held_lines(path)
        return lines[1] if lines and len(lines) > 1 and lines[1].strip() else None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock
            self.fd = None

    @staticmethod
    def holder(path: Path) -> int | None:
        """The pid of the running daemon, or None when the lock is free."""
        lines = _held_lines(path)
        if lines is None:
            return None
        text = lines[0].strip() if lines else ""
        return int(text) if text.isdigit() else -1


def _held_lines(path: Path) -> list[str] | None:
    """The lock file's lines while a daemon holds it; None when it is free (or absent)."""
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    except OSError:
        return None
    try:
        if _try_lock(fd, shared=True):
            return None
        return os.read(fd, 1024).decode(errors="replace").splitlines()
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
