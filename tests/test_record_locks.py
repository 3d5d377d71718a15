"""A process that holds the record open keeps its SQLite locks when it opens the record again.

On POSIX, closing any descriptor of a file drops every fcntl lock the process holds on that file,
SQLite's own included. The tray holds a reader and opens a writer for Trust and Mute; if that
second open read or checked the file through a descriptor of its own, the tray would run on
without its SHARED lock, and the next connection of another process to close (the daemon
stopping, `portbell trust`) would take itself for the last one, checkpoint and delete the -wal
under the tray's live reader.

Those locks also say when another process has the record open: a damaged record is moved aside
by a writer only when nobody else holds it, or by the daemon (the readers follow the path), never
by `trust` under a running daemon, which would go on writing into the renamed file."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import damage_a_page, portbell, stop_process, wait_for
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


# A process holding the record open through SQLite, as a daemon does: a writer's connection, idle.
HOLDER = """
import sys
from pathlib import Path
from portbell.daemon.record import Store

store = Store.open(Path(sys.argv[1]), readonly=sys.argv[2] == "reader")
store.decisions()
print("holding", flush=True)
sys.stdin.readline()
store.close()
"""


def hold(path: Path, how: str = "writer") -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), how], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def let_go(holder: subprocess.Popen) -> None:
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=20) == 0


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def made_record(path: Path) -> None:
    store = Store.open(path)
    store.set_meta("coverage", '["sockdiag", true]')
    store.close()  # no -wal: the next connection to open it is the holder's


@pytest.mark.skipif(not hasattr(fcntl, "lockf") or sys.platform == "win32", reason="POSIX record locks")
def test_a_damaged_record_another_process_has_open_is_refused_and_left_as_it_is_until_it_lets_go(home):
    path = home / "state" / "portbell.db"
    made_record(path)
    holder = hold(path)
    try:
        damage_a_page(path)  # under the holder's connection: it fails its integrity check from now on
        before = files(path.parent)
        assert {"portbell.db", "portbell.db-wal", "portbell.db-shm"} <= set(before)

        trust = portbell("trust", "9000")
        assert trust.returncode == 1, trust.stderr
        (line,) = trust.stderr.strip().splitlines()
        assert line.startswith(
            f"portbell: the record {path} is damaged (integrity check failed) and pid {holder.pid} has it open (the daemon?), "
            "so it was left as it is"
        ), line
        assert "Restart the daemon, which moves a damaged record aside when it starts, then run this again" in line
        assert files(path.parent) == before  # the same names, the same bytes: nothing moved, nothing written
        let_go(holder)
    finally:
        stop_process(holder)

    damaged = path.read_bytes()
    trust = portbell("trust", "9000")  # nobody holds it now: the same command moves it aside and goes on
    assert trust.returncode == 0, trust.stderr
    (aside,) = [p for p in path.parent.glob("portbell.db.broken-*") if not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes() == damaged
    store = Store.open(path, readonly=True)
    try:
        assert [r.ports for r in store.decisions()] == [(9000, 9000)]
    finally:
        store.close()


@pytest.mark.skipif(not hasattr(fcntl, "lockf") or sys.platform == "win32", reason="POSIX record locks")
def test_the_daemon_moves_a_damaged_record_aside_under_a_reader_which_follows_the_new_one(home):
    """The daemon holds the record's lock: whoever else has the file open reads it (a tray, `events --follow`)."""
    from test_daemon import DaemonProc

    from portbell.tray.state import Record

    path = home / "state" / "portbell.db"
    made_record(path)
    tray = Record(path)
    holder = hold(path, "reader")
    try:
        assert tray.refresh() and tray.generation == 1
        damage_a_page(path)
        damaged = path.read_bytes()
        d = DaemonProc("--interval", "0.1", "--quiet", folder=home)
        try:
            wait_for(lambda: "sampling with" in d.err_path.read_text() or d.proc.poll() is not None, timeout=20, what="the daemon's start")
            assert d.proc.poll() is None, d.err_path.read_text()
            wait_for(lambda: tray.refresh() or tray.generation == 2, timeout=20, what="the tray opening the new record")
        finally:
            code, _out, err = d.stop()
        assert code == 0 and "Traceback" not in err, err
        assert f"{path} was not a usable portbell database (integrity check failed); moved it to" in err, err
        (aside,) = [p for p in path.parent.glob("portbell.db.broken-*") if not p.name.endswith(("-wal", "-shm"))]
        assert aside.read_bytes() == damaged
        let_go(holder)
    finally:
        tray.close()
        stop_process(holder)


def test_a_process_reading_a_damaged_record_refuses_to_move_it_aside_itself(tmp_path):
    """The tray's Trust while its reader is open: this process cannot even ask who else holds the
    file (its descriptor would drop the reader's locks), and it holds it itself."""
    from portbell.daemon.errors import StoreError

    path = tmp_path / "portbell.db"
    made_record(path)
    reader = Store.open(path, readonly=True)
    try:
        damage_a_page(path)
        before = files(tmp_path)
        with pytest.raises(StoreError, match=r"is damaged \(integrity check failed\) and this program has it open already"):
            Store.open(path)
        assert files(tmp_path) == before
    finally:
        reader.close()
