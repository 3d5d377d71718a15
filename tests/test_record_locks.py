"""A process that holds the record open keeps its SQLite locks when it opens the record again.

On POSIX, closing any descriptor of a file drops every fcntl lock the process holds on that file,
SQLite's own included. The tray holds a reader and opens a writer for Trust and Mute; if that
second open read or checked the file through a descriptor of its own, the tray would run on
without its SHARED lock, and the next connection of another process to close (the daemon
stopping, `portbell trust`) would take itself for the last one, checkpoint and delete the -wal
under the tray's live reader."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import portbell, stop_process
from portbell.daemon.record import Store

# SQLite's unix VFS: the SHARED lock is a read lock on 510 bytes after the PENDING and RESERVED bytes, at 1 GiB.
PENDING_BYTE = 0x40000000
SHARED_FIRST, SHARED_SIZE = PENDING_BYTE + 2, 510

# The tray: a reader open all along, then a writer opened, used and closed for one decision.
TRAY = """
import json, sys
from pathlib import Path
from portbell.daemon.record import Store
from portbell.daemon.rules import Rule

path = Path(sys.argv[1])
reader = Store.open(path, readonly=True)
reader.decisions()
writer = Store.open(path)
writer.add_decision(Rule(action="mute", ports=(8000, 8000), source="tray"))
writer.close()
print("ready", flush=True)
sys.stdin.readline()
print(json.dumps([list(r.ports) for r in reader.decisions()]), flush=True)
sys.stdin.readline()
"""


def someone_holds_shared(path: Path) -> bool:
    """Whether some process holds SQLite's SHARED lock on the file: an exclusive lock on its bytes is refused."""
    fd = os.open(path, os.O_RDWR)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, SHARED_SIZE, SHARED_FIRST, os.SEEK_SET)
        except OSError:
            return True
        fcntl.lockf(fd, fcntl.LOCK_UN, SHARED_SIZE, SHARED_FIRST, os.SEEK_SET)
        return False
    finally:
        os.close(fd)  # this process holds no connection to the record: nothing of ours is dropped


@pytest.mark.skipif(not hasattr(fcntl, "lockf") or sys.platform == "win32", reason="POSIX record locks")
def test_a_process_holding_a_reader_keeps_its_lock_when_it_opens_a_writer(home):
    path = home / "state" / "portbell.db"
    store = Store.open(path)  # the daemon made the record, then stopped: no -wal
    store.set_meta("coverage", '["sockdiag", true]')
    store.close()
    assert not someone_holds_shared(path)

    tray = subprocess.Popen([sys.executable, "-c", TRAY, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert tray.stdout.readline().strip() == "ready"
        assert someone_holds_shared(path), "opening a writer dropped the tray's SHARED lock on the record"

        trust = portbell("trust", "9000")  # another process's connection, closing while the tray reads
        assert trust.returncode == 0, trust.stderr
        assert Path(f"{path}-wal").exists(), "the -wal was deleted while the tray had the record open"
        assert someone_holds_shared(path)

        tray.stdin.write("\n")
        tray.stdin.flush()
        assert tray.stdout.readline().strip() == "[[8000, 8000], [9000, 9000]]"
    finally:
        stop_process(tray)


@pytest.mark.skipif(not hasattr(fcntl, "lockf") or sys.platform == "win32", reason="POSIX record locks")
def test_reopening_a_held_record_still_refuses_a_file_swapped_in_at_its_path(tmp_path):
    """A file this process holds is not read again when reopened; one swapped in at its path is."""
    path = tmp_path / "portbell.db"
    reader_side = Store.open(path)
    try:
        other = tmp_path / "other.db"
        other.write_bytes(b"not a database at all\n" * 20)
        os.replace(other, path)  # the held file is gone from the path; something else is there
        Store.open(path).close()
        (aside,) = sorted(p for p in tmp_path.glob("portbell.db.broken-*") if not p.name.endswith(("-wal", "-shm")))
        assert aside.read_bytes() == b"not a database at all\n" * 20
    finally:
        reader_side.close()


def test_a_record_no_longer_held_is_looked_at_again_before_it_is_opened(tmp_path):
    """Once every connection of this process is closed (or collected), a file changed in place is
    identified again before SQLite opens it: another program's database is moved aside untouched."""
    import gc
    import sqlite3

    path = tmp_path / "portbell.db"
    Store.open(path).close()
    reader, writer = Store.open(path, readonly=True), Store.open(path)
    writer.close()
    del reader  # dropped without close(): the collector lets go of it too
    gc.collect()
    other = tmp_path / "photos.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    foreign = other.read_bytes()
    with open(path, "r+b") as f:  # the same file, new bytes: another program's rollback-journal database
        f.write(foreign)
        f.truncate()
    Store.open(path).close()
    (aside,) = sorted(p for p in tmp_path.glob("portbell.db.broken-*") if not p.name.endswith(("-wal", "-shm")))
    assert aside.read_bytes() == foreign  # not switched to WAL before it was looked at
