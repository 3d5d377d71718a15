"""A record that fails in the middle of its use (damaged rows or pages, busy past the timeout) is a
sentence naming the file, never a traceback, and is left as it is; the daemon keeps sampling."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import portbell, stop_process, wait_for
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


def test_the_daemon_keeps_sampling_when_the_decisions_it_rereads_are_damaged(home):
    from test_daemon import DaemonProc

    path = home / "state" / "portbell.db"
    d = DaemonProc("--interval", "0.1", "--quiet", folder=home)
    try:
        wait_for(lambda: _count(path, "baseline = 1"), timeout=20, what="the daemon's baseline")
        writer = Store.open(path)  # `portbell mute`, then the page it wrote damaged on disk
        writer.add_decision(Rule(action="mute", program="/opt/garble-this-program", source="cli"))
        wait_for(lambda: writer.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0, what="a checkpoint")
        writer.close()
        assert overwrite(path, b"/opt/garble", b"\xff" * 8) == 1
        with socket.socket() as s:  # an event: the daemon rereads the decisions before deciding
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            wait_for(lambda: _count(path, "port = ? AND kind = 'opened'", (port,)), timeout=20, what="the opened event")
        assert d.proc.poll() is None, d.err_path.read_text()
        code, _out, err = d.stop()
    finally:
        stop_process(d.proc)
    assert code == 0 and "Traceback" not in err, err
    assert f"cannot read the decisions in the record: the record {path} is damaged" in err, err


class Forgetting(Store):
    """The record, whose memory fails as its queries do on a damaged page (the narrow seam: rules.Memory)."""

    def key_seen(self, key, program):
        raise StoreError(f"the record {self.path} is damaged (database disk image is malformed)", path=self.path)

    def program_seen(self, program, exposure, transport, *, random_port):
        return self.key_seen(None, program)


def test_an_event_the_record_cannot_remember_alerts_as_new_and_is_recorded(tmp_path, caplog):
    from portbell.daemon.config import Config
    from portbell.daemon.service import Daemon
    from test_reliability import Replay

    path = tmp_path / "portbell.db"
    Store.open(path).close()
    store = Forgetting(connect(path), path, readonly=False)
    here, gone = snapshot_of([li(8000)], T0, sampler="replay"), snapshot_of([], T0, sampler="replay")
    daemon = Daemon(store=store, sampler=Replay(here, gone, here), config=Config(), config_path=None)
    try:
        for _ in range(3):  # the baseline, 8000 closed, 8000 opened again (seen before: quiet, had it been remembered)
            daemon.step()
        (again,) = [r for r in store.events() if r.event.kind is EventKind.OPENED and not r.baseline]
        assert again.alert and again.reason == "reachable from other machines (all-interfaces)"
        assert "cannot read what the record remembers" in caplog.text and "as if nothing was seen before" in caplog.text
    finally:
        daemon.close()
        store.close()


def _count(path: Path, where: str, args=()) -> int | None:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return conn.execute(f"SELECT count(*) FROM events WHERE {where}", args).fetchone()[0] or None
    except sqlite3.Error:
        return None
