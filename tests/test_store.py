"""The record on real SQLite: what a poll commits, what readers see, and bad files."""

from __future__ import annotations

import sqlite3
import stat
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portbell.daemon.addresses import classify
from portbell.daemon.model import Event, EventKind, Key, Listener, Owner, Transport, snapshot_of
from portbell.daemon.rules import Rule, Verdict
from portbell.daemon.errors import StoreError
from portbell.daemon.record import SCHEMA, Store

T0 = datetime(2026, 11, 26, 9, tzinfo=timezone.utc)


def li(port, address="0.0.0.0", pid=42, name="python3", exe="/usr/bin/python3"):
    return Listener(Transport.TCP, 4, address, port, classify(address), owners=(Owner(pid=pid, uid=1000, name=name, started_at=T0, exe=exe),))


def opened(listener, at=T0):
    return (Event(EventKind.OPENED, at, listener), Verdict(True, "new"))


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "portbell.db")
    yield s
    s.close()


def test_database_is_private_and_in_wal_mode(tmp_path, store):
    path = tmp_path / "portbell.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_poll_commits_events_listeners_and_memory_together(store):
    a = li(8000)
    snap = snapshot_of([a], T0)
    (rec,) = store.record(snap, [opened(a)])
    assert rec.id == 1 and rec.alert and rec.event.listener == a
    assert store.recorded().listeners == {a.key: a}
    assert store.key_seen(a.key, "/usr/bin/python3")
    assert not store.key_seen(Key(Transport.TCP, "0.0.0.0", 8001), "/usr/bin/python3")
    closed = Event(EventKind.CLOSED, T0 + timedelta(seconds=5), a)
    store.record(snapshot_of([], T0 + timedelta(seconds=5)), [(closed, Verdict(False, "closed"))])
    assert store.recorded().listeners == {}
    assert [r.event.kind for r in store.events()] == [EventKind.OPENED, EventKind.CLOSED]


def test_readers_see_commits_and_notice_them_through_data_version(tmp_path, store):
    reader = Store.open(tmp_path / "portbell.db", readonly=True)
    before = reader.data_version()
    store.record(snapshot_of([li(8000)], T0), [opened(li(8000))])
    assert reader.data_version() != before
    assert [r.event.listener.port for r in reader.events()] == [8000]
    with pytest.raises(sqlite3.OperationalError):
        reader.conn.execute("DELETE FROM events")  # read-only, truly
    reader.close()


def test_history_pairs_opens_and_closes(store):
    a, b = li(3000, pid=1), li(3000, pid=2, name="node", exe="/usr/bin/node")
    store.record(snapshot_of([a], T0), [opened(a)])
    t1 = T0 + timedelta(minutes=5)
    store.record(snapshot_of([], t1), [(Event(EventKind.CLOSED, t1, a), Verdict(False, ""))])
    t2 = T0 + timedelta(minutes=9)
    store.record(snapshot_of([b], t2), [opened(b, t2)])
    first, second = store.history(3000)
    assert (first.listener.pids, first.opened_at, first.closed_at) == ((1,), T0, t1)
    assert (second.listener.pids, second.opened_at, second.closed_at) == ((2,), t2, None)
    assert store.last_holder("tcp", 3000) == (a, t1)


def test_retention_prunes_by_age_and_by_rows(store):
    for i in range(30):
        at = T0 + timedelta(days=i)
        store.record(snapshot_of([li(9000 + i)], at), [opened(li(9000 + i), at)])
    assert store.prune(older_than=T0 + timedelta(days=10), max_rows=1000) == 10
    assert store.prune(older_than=T0, max_rows=5) == 15
    assert [r.event.listener.port for r in store.events()] == [9025, 9026, 9027, 9028, 9029]


def test_decisions_round_trip(store):
    until = T0 + timedelta(hours=8)
    rid = store.add_decision(Rule("mute", program="node*", ports=(3000, 3010), until=until, source="cli"))
    (rule,) = store.decisions()
    assert (rule.id, rule.action, rule.program, rule.ports, rule.until, rule.source) == (rid, "mute", "node*", (3000, 3010), until, "cli")
    assert store.remove_decision(rid) and store.decisions() == () and not store.remove_decision(rid)


# ------------------------------------------------------------------ bad files


def test_newer_schema_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "portbell.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA + 1}")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="newer portbell"):
        Store.open(path)
    assert path.read_bytes() == before


def test_foreign_sqlite_database_is_moved_aside_never_deleted(tmp_path):
    path = tmp_path / "portbell.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
        conn.execute("INSERT INTO photos VALUES (7)")
    Store.open(path).close()
    (aside,) = [p for p in tmp_path.iterdir() if ".broken-" in p.name and not p.name.endswith(("-wal", "-shm"))]
    with sqlite3.connect(aside) as conn:
        assert conn.execute("SELECT id FROM photos").fetchall() == [(7,)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(min_size=1, max_size=4096), truncate=st.integers(0, 8192))
def test_garbage_or_truncated_files_never_crash_and_are_kept(tmp_path_factory, garbage, truncate):
    folder = tmp_path_factory.mktemp("db")
    path = folder / "portbell.db"
    good = folder / "good.db"
    s = Store.open(good)
    s.record(snapshot_of([li(1234)], T0), [opened(li(1234))])
    s.close()
    data = good.read_bytes()[:truncate] + garbage if truncate else garbage
    path.write_bytes(data)
    try:  # a reader refuses with a message, or reads that very file: never a stand-in, never a change
        r = Store.open(path, readonly=True)
    except StoreError as err:
        refused = True
        assert str(path) in str(err)
    else:
        refused = False
        try:
            assert r.conn.execute("PRAGMA database_list").fetchone()[2] == str(path)
            r.events()
        except StoreError:
            refused = True
        finally:
            r.close()
    if not truncate:
        assert refused  # bytes without SQLite's header are never a record
    assert path.read_bytes() == data
    s = Store.open(path)  # the writer keeps going: the bad file is moved aside
    s.record(snapshot_of([li(1)], T0), [opened(li(1))])
    s.close()
    kept = [p for p in folder.iterdir() if p.name.startswith("portbell.db.broken-") and not p.name.endswith(("-wal", "-shm"))]
    if kept:
        assert kept[0].read_bytes() == data
    else:  # SQLite accepted the bytes as a (valid, empty-enough) database: nothing was lost either
        assert path.exists()
