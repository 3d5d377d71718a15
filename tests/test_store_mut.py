"""The record on real SQLite, its restart and retention logic: what the daemon restarts from, the
filters and limits of events(), what prune keeps, the memory, history, and how readers open files."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from conftest import damage_a_page
from portbell.daemon.addresses import classify
from portbell.daemon.errors import StoreError
from portbell.daemon.model import Event, EventKind, Exposure, Key, Listener, Owner, Transport, snapshot_of
from portbell.daemon.record import SCHEMA, Store
from portbell.daemon.rules import Verdict

T0 = datetime(2026, 11, 26, 9, tzinfo=timezone.utc)


def li(port, address="0.0.0.0", pid=42, name="python3", exe="/usr/bin/python3", transport=Transport.TCP):
    owners = (Owner(pid=pid, uid=1000, name=name, started_at=T0, exe=exe),)
    return Listener(transport, 6 if ":" in address else 4, address, port, classify(address), owners=owners)


def at(seconds):
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "portbell.db")
    yield s
    s.close()


def poll(store, listeners, events, when=T0, **kw):
    """Commit one poll: `events` as (kind, listener[, previous]) with a verdict that alerts on opened."""
    evs = [(Event(kind, when, x, prev[0] if prev else None), Verdict(kind is EventKind.OPENED, f"{kind}"))
           for kind, x, *prev in events]  # fmt: skip
    return store.record(snapshot_of(listeners, when, sampler="test"), evs, **kw)


# ------------------------------------------------------------------ what a restart starts from


def test_before_the_first_baseline_there_is_nothing_recorded(store):
    assert store.recorded() is None


def test_recorded_gives_back_the_listeners_time_and_coverage_committed(store):
    a = li(8000)
    store.record(snapshot_of([a], at(5), complete=False, sampler="psutil"), [(Event(EventKind.OPENED, at(5), a), Verdict(False, ""))])
    snap = store.recorded()
    assert (snap.listeners, snap.taken_at, snap.complete, snap.sampler) == ({a.key: a}, at(5), False, "psutil")


def test_a_refresh_stores_the_snapshots_attributes_without_an_event(store):
    a = li(8000)
    poll(store, [a], [(EventKind.OPENED, a)])
    renamed = li(8000, name="python3.12")
    poll(store, [renamed], [], when=at(60))
    assert store.recorded().listeners == {a.key: a}  # no event, no refresh: the record keeps what it had
    poll(store, [renamed], [], when=at(61), refresh=True)
    assert store.recorded().listeners == {a.key: renamed}
    assert [r.event.key.port for r in store.events()] == [8000]  # silently
    assert store.current_since() == {a.key: T0}


def test_polls_that_waited_are_committed_in_order_in_one_go(store):
    a, b = li(8000), li(9000)
    out = store.record_polls([
        (snapshot_of([a], at(0)), [(Event(EventKind.OPENED, at(0), a), Verdict(True, "x"))], False, False, False),
        (snapshot_of([a, b], at(1), sampler="late"), [(Event(EventKind.OPENED, at(1), b), Verdict(False, "y"))], True, False, False),
    ])
    assert [(r.id, r.event.key.port, r.baseline) for r in out] == [(1, 8000, False), (2, 9000, True)]
    assert store.recorded().sampler == "late" and set(store.recorded().listeners) == {a.key, b.key}


def test_a_listener_is_listening_since_it_opened_not_since_it_changed(store):
    a = li(8000)
    poll(store, [a], [(EventKind.OPENED, a)], when=at(0))
    b = li(8000, pid=43)
    poll(store, [b], [(EventKind.CHANGED, b, a)], when=at(30))
    assert store.current_since() == {a.key: at(0)}
    assert store.recorded().listeners == {b.key: b}  # the state is the new one
    poll(store, [], [(EventKind.CLOSED, b)], when=at(40))
    assert store.current_since() == {} and store.recorded().listeners == {}


def test_a_recorded_poll_keeps_its_flags_and_ids(store):
    a = li(8000)
    (rec,) = poll(store, [a], [(EventKind.OPENED, a)], baseline=True, found_at_start=True)
    (back,) = store.events()
    assert (back.id, back.baseline, back.found_at_start, back.alert, back.reason) == (rec.id, True, True, True, "opened")
    assert back.event == rec.event
    b = li(9000)
    (plain,) = poll(store, [a, b], [(EventKind.OPENED, b)])
    assert (plain.baseline, plain.found_at_start) == (False, False) and plain.id == rec.id + 1
    assert store.last_id() == plain.id


def test_a_changed_event_keeps_its_previous_state(store):
    a, b = li(8000), li(8000, pid=43, name="node", exe="/usr/bin/node")
    poll(store, [b], [(EventKind.CHANGED, b, a)])
    (rec,) = store.events()
    assert (rec.event.kind, rec.event.listener, rec.event.previous) == (EventKind.CHANGED, b, a)


# ------------------------------------------------------------------ reading the history


@pytest.fixture
def busy(store):
    """Five events a second apart: 8000 python3 (alert), 8001 node (alert), 8000 closed, 9000 node, 9000 closed."""
    p, n, n2 = li(8000), li(8001, name="node", exe="/usr/bin/node"), li(9000, name="nodejs", exe="/opt/nj")
    poll(store, [p], [(EventKind.OPENED, p)], when=at(0))
    poll(store, [p, n], [(EventKind.OPENED, n)], when=at(1))
    poll(store, [n], [(EventKind.CLOSED, p)], when=at(2))
    poll(store, [n, n2], [(EventKind.OPENED, n2)], when=at(3))
    poll(store, [n], [(EventKind.CLOSED, n2)], when=at(4))
    return store


def ports(records):
    return [r.event.key.port for r in records]


def test_events_limit_gives_the_newest_n_oldest_first(busy):
    assert [r.id for r in busy.events(limit=2)] == [4, 5]
    assert [r.id for r in busy.events()] == [1, 2, 3, 4, 5]


def test_a_sink_behind_reads_on_from_its_cursor_the_oldest_first_a_batch_at_a_time(busy):
    """As the daemon wires it: the Dispatcher's source is the record, read `first` records after a cursor."""
    from portbell.daemon.sinks import Dispatcher

    class Taking:
        name = "behind"

        def __init__(self):
            self.batches = []

        def emit(self, records, snapshot):
            self.batches.append([r.id for r in records])

    sink = Taking()
    dispatcher = Dispatcher([sink], source=lambda after, limit: busy.events(after_id=after, first=limit),
                            cursors={"behind": 1}, newest=busy.last_id(), max_pending=2)  # fmt: skip
    for _ in range(3):
        dispatcher.dispatch((), None)
    assert [b for b in sink.batches if b] == [[2, 3], [4, 5]]
    assert dispatcher.cursors() == {"behind": 5}


def test_events_since_includes_its_instant(busy):
    assert [r.id for r in busy.events(since=at(3))] == [4, 5]


def test_events_after_an_id_excludes_it(busy):
    assert [r.id for r in busy.events(after_id=3)] == [4, 5]


def test_events_by_port_and_alerts_only(busy):
    assert [r.id for r in busy.events(port=8000)] == [1, 3]
    assert [r.id for r in busy.events(alerts_only=True)] == [1, 2, 4]


def test_events_by_process_name_whole_word_or_exact_exe_path(busy):
    assert [r.id for r in busy.events(process="node")] == [2]  # not nodejs's 9000: a name is a whole word
    assert [r.id for r in busy.events(process="nodejs")] == [4, 5]
    assert [r.id for r in busy.events(process="/usr/bin/python3")] == [1, 3]  # the exe's exact path
    assert busy.events(process="/usr/bin/py") == []  # never a substring


def test_the_filters_combine(busy):
    assert [r.id for r in busy.events(since=at(1), port=8000, alerts_only=False, limit=5)] == [3]


def test_last_holder_is_the_latest_closed_on_that_port_and_transport(busy):
    assert busy.last_holder("tcp", 8000) == (li(8000), at(2))
    assert busy.last_holder("udp", 8000) is None
    assert busy.last_holder("tcp", 8001) is None  # opened, never closed


def test_history_pairs_a_change_and_a_baseline(store):
    a, b = li(3000, pid=1), li(3000, pid=2)
    poll(store, [a], [(EventKind.OPENED, a)], when=at(0), baseline=True)
    poll(store, [b], [(EventKind.CHANGED, b, a)], when=at(10))
    first, second = store.history(3000)
    assert (first.listener, first.opened_at, first.closed_at) == (a, None, at(10))  # a baseline is no opening
    assert (second.listener, second.opened_at, second.closed_at) == (b, at(10), None)
    assert store.history(3000, "udp") == []


# ------------------------------------------------------------------ retention


def test_prune_by_age_keeps_the_event_at_the_cutoff(busy):
    assert busy.prune(older_than=at(2), max_rows=100) == 2
    assert [r.id for r in busy.events()] == [3, 4, 5]


def test_prune_by_rows_keeps_exactly_the_newest_max_rows(busy):
    assert busy.prune(older_than=at(0), max_rows=5) == 0
    assert busy.prune(older_than=at(0), max_rows=3) == 2
    assert [r.id for r in busy.events()] == [3, 4, 5]


def test_prune_never_touches_the_listeners_or_the_memory(busy):
    busy.prune(older_than=at(100), max_rows=0)
    assert busy.events() == [] and busy.recorded().listeners == {li(8001, name="node").key: li(8001, name="node", exe="/usr/bin/node")}
    assert busy.key_seen(li(8000).key, "/usr/bin/python3")


# ------------------------------------------------------------------ the memory


def test_a_key_is_seen_only_with_the_program_that_held_it(busy):
    assert busy.key_seen(Key(Transport.TCP, "0.0.0.0", 8000), "/usr/bin/python3")
    assert not busy.key_seen(Key(Transport.TCP, "0.0.0.0", 8000), "/usr/bin/node")
    assert not busy.key_seen(Key(Transport.UDP, "0.0.0.0", 8000), "/usr/bin/python3")


def test_a_program_is_seen_on_random_ports_only_if_it_used_one(store):
    fixed, random = li(8000), li(50000, name="x", exe="/x")
    poll(store, [fixed, random], [(EventKind.OPENED, fixed), (EventKind.OPENED, random)])
    seen = store.program_seen
    assert seen("/usr/bin/python3", Exposure.ALL_INTERFACES, Transport.TCP, random_port=False)
    assert not seen("/usr/bin/python3", Exposure.ALL_INTERFACES, Transport.TCP, random_port=True)
    assert seen("/x", Exposure.ALL_INTERFACES, Transport.TCP, random_port=True)
    assert not seen("/usr/bin/python3", Exposure.LOOPBACK, Transport.TCP, random_port=False)
    assert not seen("/usr/bin/python3", Exposure.ALL_INTERFACES, Transport.UDP, random_port=False)


def test_a_closed_listener_is_not_remembered_again(store):
    a = li(8000)
    poll(store, [], [(EventKind.CLOSED, a)])
    assert not store.key_seen(a.key, "/usr/bin/python3")


# ------------------------------------------------------------------ how files are opened


def test_a_reader_of_a_missing_file_says_there_is_no_history_and_creates_nothing(tmp_path):
    path = tmp_path / "portbell.db"
    with pytest.raises(StoreError, match="^no history yet at .*: start `portbell daemon` to keep one$"):
        Store.open(path, readonly=True)
    assert not path.exists()


def test_a_reader_of_an_empty_database_says_there_is_no_history(tmp_path):
    path = tmp_path / "portbell.db"
    sqlite3.connect(path).close()
    path.write_bytes(b"")
    with pytest.raises(StoreError, match="^no history yet at "):
        Store.open(path, readonly=True)


def test_a_reader_refuses_a_corrupt_file_instead_of_opening_an_empty_record(tmp_path):
    path = tmp_path / "portbell.db"
    path.write_bytes(b"this is not a database, not even close" * 100)
    with pytest.raises(StoreError) as err:
        Store.open(path, readonly=True)
    assert str(err.value).startswith(f"{path} is not a usable portbell database (")
    assert err.value.path == path


def test_a_reader_reads_the_file_itself_read_only(tmp_path):
    path = tmp_path / "portbell.db"
    w = Store.open(path)
    poll(w, [li(8000)], [(EventKind.OPENED, li(8000))])
    w.close()
    r = Store.open(path, readonly=True)
    assert ports(r.events()) == [8000] and r.readonly is True
    assert r.conn.execute("PRAGMA database_list").fetchone()[2] == str(path)
    with pytest.raises(sqlite3.OperationalError):
        r.conn.execute("DELETE FROM events")
    r.close()


def test_a_newer_schema_is_refused_by_readers_too(tmp_path):
    path = tmp_path / "portbell.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA + 1}")
    with pytest.raises(StoreError, match=f"written by a newer portbell \\(schema {SCHEMA + 1}, this one knows {SCHEMA}\\)"):
        Store.open(path, readonly=True)


def test_another_programs_database_is_refused_by_readers_and_moved_aside_by_the_writer(tmp_path):
    path = tmp_path / "portbell.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 1")
        conn.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(StoreError, match="application id 0x0 is not portbell's"):
        Store.open(path, readonly=True)
    Store.open(path).close()
    assert [p.name.startswith("portbell.db.broken-") for p in tmp_path.iterdir() if "-wal" not in p.name and "-shm" not in p.name].count(True) == 1


def test_the_writer_creates_a_fresh_file_at_the_current_schema(tmp_path):
    path = tmp_path / "new" / "portbell.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x70626C6C
    r = Store.open(path, readonly=True)
    assert r.recorded() is None and r.events() == []
    r.close()


def test_the_writer_creates_missing_state_folders_private(tmp_path):
    path = tmp_path / "a" / "b" / "portbell.db"
    Store.open(path).close()
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_a_record_failing_its_integrity_check_says_so_to_readers_and_the_writer_moves_it_aside(tmp_path, caplog):
    path = tmp_path / "portbell.db"
    store = Store.open(path)
    poll(store, [li(8000)], [(EventKind.OPENED, li(8000))])
    store.close()
    damage_a_page(path)  # its header and schema read; a page of an index does not
    damaged = path.read_bytes()
    with pytest.raises(StoreError, match=rf"^{re.escape(str(path))} is not a usable portbell database \(integrity check failed\)$"):
        Store.open(path, readonly=True)
    assert path.read_bytes() == damaged
    with caplog.at_level("WARNING", logger="portbell"):
        Store.open(path).close()  # nobody else has it open: moved aside, a new record begun
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("portbell.db.broken-") and not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes() == damaged
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "portbell"]
    assert f"{path} was not a usable portbell database (integrity check failed); moved it to {aside}" in warning


def test_moving_a_foreign_file_aside_takes_its_wal_and_shm_along_and_says_so(tmp_path, caplog):
    path = tmp_path / "portbell.db"
    path.write_bytes(b"not a database" * 100)
    for suffix, data in (("-wal", b"wal bytes"), ("-shm", b"shm bytes")):
        (tmp_path / f"portbell.db{suffix}").write_bytes(data)
    with caplog.at_level("WARNING", logger="portbell"):
        Store.open(path).close()
    (aside,) = [p for p in tmp_path.iterdir() if p.name.startswith("portbell.db.broken-") and not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes() == b"not a database" * 100
    assert (tmp_path / f"{aside.name}-wal").read_bytes() == b"wal bytes"
    assert (tmp_path / f"{aside.name}-shm").exists()  # its bytes are SQLite's index of the WAL, rewritten on the first try
    (warning,) = [r for r in caplog.records if r.name == "portbell"]
    assert f"{path} was not a usable portbell database" in warning.getMessage() and str(aside) in warning.getMessage()


def test_history_is_ordered_by_when_each_stretch_ended_even_after_the_clock_stepped_back(store):
    a, b = li(3000, address="127.0.0.1"), li(3000, address="0.0.0.0")
    poll(store, [a], [(EventKind.OPENED, a)], when=at(100))
    poll(store, [], [(EventKind.CLOSED, a)], when=at(200))
    poll(store, [b], [(EventKind.OPENED, b)], when=at(10))  # the clock went back
    poll(store, [], [(EventKind.CLOSED, b)], when=at(20))
    c = li(3000, address="::")
    poll(store, [c], [(EventKind.OPENED, c)], when=at(30))
    assert [(h.listener.address, h.opened_at, h.closed_at) for h in store.history(3000)] == [
        ("0.0.0.0", at(10), at(20)), ("127.0.0.1", at(100), at(200)), ("::", at(30), None),
    ]  # fmt: skip
