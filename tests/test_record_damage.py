"""A record that fails in the middle of its use (damaged rows or pages, busy past the timeout) is a
sentence naming the file, never a traceback, and is left as it is."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import portbell, stop_process
from portbell.daemon.addresses import classify
from portbell.daemon.errors import StoreError
from portbell.daemon.model import Event, EventKind, Listener, Owner, Transport, snapshot_of
from portbell.daemon.record import Store
from portbell.daemon.record.schema import connect
from portbell.daemon.rules import Rule, Verdict

T0 = datetime.now(timezone.utc) - timedelta(hours=1)


def li(port: int, address: str = "0.0.0.0") -> Listener:
    owner = Owner(pid=42, uid=1000, name="python3", started_at=T0, exe="/usr/bin/python3")
    return Listener(Transport.TCP, 4, address, port, classify(address), owners=(owner,))


def make_record(path: Path, ports=range(8000, 8040)) -> None:
    """A valid record, as a daemon leaves it when it stops (no -wal): one opened event per port."""
    path.parent.mkdir(parents=True, exist_ok=True)
    store = Store.open(path)
    for n, port in enumerate(ports):
        store.record(snapshot_of([li(port)], T0), [(Event(EventKind.OPENED, T0 + timedelta(seconds=n), li(port)), Verdict(True, "new"))])
    store.close()


def overwrite(path: Path, marker: bytes, garbage: bytes) -> int:
    """Garbage over the bytes after every `marker` in the file itself (same inode, same size): rows whose
    text is no longer text, on pages whose structure is intact."""
    data = bytearray(path.read_bytes())
    at, n = data.find(marker), 0
    while at >= 0:
        data[at + len(marker) : at + len(marker) + len(garbage)] = garbage
        at, n = data.find(marker, at + 1), n + 1
    with open(path, "r+b") as f:
        f.write(data)
    return n


def test_reading_commands_on_a_record_with_garbage_in_its_rows_are_a_sentence_and_leave_it(home):
    path = home / "state" / "portbell.db"
    make_record(path)
    assert overwrite(path, b'"owners": [', b"\xff" * 12) >= 40
    Store.open(path, readonly=True).close()  # damage the open's checks cannot see: it shows mid-command
    before = path.read_bytes()
    for args in (["events"], ["events", "--json", "--since", "1d"], ["history", "8001"], ["events", "--port", "8001"]):
        result = portbell(*args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"portbell: the record {path} is damaged"), (args, result.stderr)
        assert "it was left as it is" in lines[0] and "move the file away" in lines[0], lines[0]
        assert lines[0].isprintable(), lines[0]  # none of the garbage reaches the terminal
    assert path.read_bytes() == before  # not deleted, not truncated, not changed
    assert sorted(p.name for p in path.parent.glob("*.broken-*")) == []


def test_the_tray_reads_on_when_the_events_it_asks_for_are_damaged(tmp_path, caplog):
    from portbell.tray.state import Record

    path = tmp_path / "portbell.db"
    make_record(path)
    store = Store.open(path)  # every listener closed again: only the events hold their text
    store.record(snapshot_of([], T0), [(Event(EventKind.CLOSED, T0, li(port)), Verdict(False, "closed")) for port in range(8000, 8040)])
    store.close()
    assert overwrite(path, b'"owners": [', b"\xff" * 12) >= 80
    record = Record(path)
    try:
        assert record.refresh() and record.reading.listeners == ()
        assert record.alerts_after(0) == [] and record.unseen(0) == 0  # no traceback into the tray's loop
        assert f"cannot read events: the record {path} is damaged" in caplog.text
    finally:
        record.close()


# A writer that holds the record's write lock (a migration, a long transaction) and waits.
HOLD_WRITE = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("holding", flush=True)
sys.stdin.read()
"""


def test_a_decision_while_another_process_holds_the_write_lock_is_a_busy_sentence(tmp_path):
    """Readers go on in WAL mode, so the open succeeds; the write waits out the busy timeout."""
    path = tmp_path / "portbell.db"
    make_record(path, ports=[8000])
    holder = subprocess.Popen([sys.executable, "-c", HOLD_WRITE, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        store = Store(connect(path, busy_timeout_s=0.2), path, readonly=False)
        try:
            try:
                store.add_decision(Rule(action="trust", ports=(8000, 8000), source="cli"))
            except StoreError as err:
                assert f"the record {path} is busy" in str(err) and err.path == path
            else:
                raise AssertionError("the decision was written under another process's write lock")
        finally:
            store.close()
    finally:
        holder.stdin.close()
        stop_process(holder)
    reader = Store.open(path, readonly=True)
    assert reader.decisions() == () and reader.last_id() == 1
    reader.close()
