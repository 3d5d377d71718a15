"""Who holds the record open through SQLite: this process (its table of connections) and others
(their SQLite locks on the file), so that nothing of ours drops a lock or renames a file in use."""

from __future__ import annotations

import os
import sqlite3
import struct
import threading
import weakref
from pathlib import Path

# The records this process holds open through SQLite, by (device, inode): how many connections.
# Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's too (its
# unix VFS shares one set of locks per inode in a process, and defers its own closes for this reason).
# So a file held here is never opened with a descriptor of our own: it was looked at when first
# opened, and SQLite's checks run again on the new connection. One open at a time in a process
# (OPENING): no other thread connects between the look at HELD and our descriptor's close.
HELD: dict[tuple[int, int], int] = {}
_HELD_LOCK = threading.RLock()  # held for a moment; reentrant: a connection collected meanwhile lets go
OPENING = threading.Lock()


def _forked() -> None:
    """A forked child inherits no POSIX locks (it holds nothing yet), nor the threads that were opening."""
    global _HELD_LOCK, OPENING
    HELD.clear()
    _HELD_LOCK, OPENING = threading.RLock(), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class Connection(sqlite3.Connection):
    """A connection to the record that counts itself in HELD from its open to its close (or collection)."""

    _release = None
    ident: tuple[int, int] | None = None  # the file it opened (device, inode)

    def hold(self, ident: tuple[int, int]) -> None:
        self.ident = ident
        with _HELD_LOCK:
            HELD[ident] = HELD.get(ident, 0) + 1
        self._release = weakref.finalize(self, _let_go, ident)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._release is not None:
                self._release()


def _let_go(ident: tuple[int, int]) -> None:
    with _HELD_LOCK:
        left = HELD.get(ident, 0) - 1
        if left > 0:
            HELD[ident] = left
        else:
            HELD.pop(ident, None)


def ident(path: Path) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def held(path: Path) -> tuple[int, int] | None:
    """The file at `path` when this process already holds it open through SQLite, else None."""
    found = ident(path)
    with _HELD_LOCK:
        return found if found is not None and found in HELD else None


# SQLite's unix VFS locks bytes of the database file with POSIX record locks (fcntl): the PENDING
# byte at 1 GiB, the RESERVED byte after it, then the 510 bytes of the SHARED range. In WAL mode
# every open connection holds a read lock in the SHARED range for as long as it is open, idle or
# not (readers opened `immutable` hold none, and write nothing).
PENDING_BYTE = 0x40000000
LOCK_BYTES = 2 + 510
UNKNOWN = 0  # someone holds the file, but which process cannot be told


def holder(path: Path) -> int | None:
    """The pid of a process holding the file at `path` open through SQLite (UNKNOWN when one does
    whose pid cannot be told), or None when none does. Changes nothing (no byte, no lock kept).

    Only for a file this process does not hold (`held` is None): the descriptor opened here to ask
    is closed again, which would drop this process's own SQLite locks on it. Linux asks with
    F_OFD_GETLK, which sees every lock on the file, this process's too, and names a POSIX lock's
    pid; other POSIX systems try a write lock on those bytes and let go of it at once (no pid).
    Windows has no fcntl, and needs none here: it refuses to rename a file SQLite has open."""
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(path, (os.O_RDONLY if hasattr(fcntl, "F_OFD_GETLK") else os.O_RDWR) | getattr(os, "O_NOFOLLOW", 0))
    try:
        if hasattr(fcntl, "F_OFD_GETLK"):  # Linux: struct flock is (type, whence, start, len, pid)
            layout = "@hhqqi"
            size = -(-struct.calcsize(layout) // 8) * 8  # with the padding at its end
            asked = struct.pack(layout, fcntl.F_WRLCK, os.SEEK_SET, PENDING_BYTE, LOCK_BYTES, 0).ljust(size, b"\0")
            kind, _, _, _, pid = struct.unpack_from(layout, fcntl.fcntl(fd, fcntl.F_OFD_GETLK, asked))
            return None if kind == fcntl.F_UNLCK else (pid if pid > 0 else UNKNOWN)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, LOCK_BYTES, PENDING_BYTE, os.SEEK_SET)
        except OSError:
            return UNKNOWN
        fcntl.lockf(fd, fcntl.LOCK_UN, LOCK_BYTES, PENDING_BYTE, os.SEEK_SET)
        return None
    finally:
        os.close(fd)

