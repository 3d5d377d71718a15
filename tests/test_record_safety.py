"""The record is never a way in: busy is not broken, foreign files are moved aside untouched,
links are refused, one lock per record, and every refusal is a sentence (issue 11: 4-7, 9, 12, 13)."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import NOBODY, as_nobody, is_root, portbell, wait_for
from portbell.daemon.errors import ConfigError, StoreError
from portbell.daemon.record import Store
from portbell.daemon.record.schema import connect

HOLD_LOCKED = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA locking_mode = EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
conn.execute("INSERT INTO meta VALUES ('held', 'by another process') ON CONFLICT DO NOTHING")
print("holding", flush=True)
sys.stdin.read()
"""


def brokens(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.broken-*"))


# ------------------------------------------------------------------ 4. busy is not broken


def test_a_record_another_process_holds_locked_is_busy_and_never_moved_aside(tmp_path):
    path = tmp_path / "portbell.db"
    Store.open(path).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCKED, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(StoreError, match="busy: another process holds it locked"):
            connect(path, busy_timeout_s=0.3)
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    assert brokens(tmp_path) == []
    store = Store.open(path)  # the history is all still there
    assert store.meta("coverage") is None and store.last_id() == 0
    store.close()


# ------------------------------------------------------------------ 5. foreign files: untouched, moved aside


def test_another_programs_sqlite_file_is_moved_aside_byte_identical_and_mode_kept(tmp_path):
    path = tmp_path / "portbell.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    other.execute("INSERT INTO photos (name) VALUES ('holiday.jpg')")
    other.commit()
    other.close()
    os.chmod(path, 0o644)
    before = path.read_bytes()
    assert before[18:20] == b"\x01\x01"  # a rollback-journal database
    Store.open(path).close()
    (aside,) = [p for p in brokens(tmp_path) if not p.name.endswith(("-wal", "-shm"))]
    assert aside.read_bytes() == before  # not switched to WAL, not touched at all
    assert stat.S_IMODE(aside.stat().st_mode) == 0o644  # not chmodded
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the new record is private


def test_garbage_at_the_record_path_is_moved_aside_byte_identical(tmp_path):
    path = tmp_path / "portbell.db"
    path.write_bytes(b"not a database at all\n" * 20)
    os.chmod(path, 0o640)
    Store.open(path).close()
    (aside,) = brokens(tmp_path)
    assert aside.read_bytes() == b"not a database at all\n" * 20 and stat.S_IMODE(aside.stat().st_mode) == 0o640


# ------------------------------------------------------------------ 6. links and odd files are refused


@pytest.mark.parametrize("content", [b"someone's notes\n", b""])
def test_a_symlink_at_the_record_path_is_refused_and_its_target_untouched(tmp_path, content):
    target = tmp_path / "elsewhere" / "notes.txt"
    target.parent.mkdir()
    target.write_bytes(content)
    os.chmod(target, 0o644)
    state = tmp_path / "state"
    state.mkdir()
    (state / "portbell.db").symlink_to(target)
    for readonly in (False, True):
        with pytest.raises(StoreError, match="symbolic link"):
            Store.open(state / "portbell.db", readonly=readonly)
    assert target.read_bytes() == content and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["notes.txt"]  # no -wal, -shm written there


def test_a_symlink_at_the_wal_is_refused(tmp_path):
    target = tmp_path / "target"
    target.write_bytes(b"")
    (tmp_path / "portbell.db-wal").symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link"):
        Store.open(tmp_path / "portbell.db")
    assert target.read_bytes() == b""


def test_a_symlink_at_the_lock_is_refused_and_its_target_untouched(tmp_path):
    from portbell.daemon.service import InstanceLock

    target = tmp_path / "target"
    target.write_text("keep me\n")
    os.chmod(target, 0o600)
    (tmp_path / "daemon.lock").symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link"):
        InstanceLock(tmp_path / "daemon.lock").acquire()
    assert target.read_text() == "keep me\n"


def test_a_directory_at_the_record_path_is_a_sentence_from_every_command(home):
    (home / "state" / "portbell.db").mkdir(parents=True)
    for args in (["status"], ["events"], ["trust", "8000"], ["daemon", "--quiet"]):
        result = portbell(*args)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr and "is a directory, not portbell's record" in result.stdout + result.stderr, (args, result.stderr)


# ------------------------------------------------------------------ 7. one record, one lock


def test_a_daemon_with_xdg_runtime_dir_and_one_without_share_one_lock(home, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PORTBELL_RUNTIME_DIR", "XDG_RUNTIME_DIR")}
    run = tmp_path / "xdg-run"
    run.mkdir(mode=0o700)
    first = subprocess.Popen([sys.executable, "-m", "portbell.daemon", "daemon", "--quiet"], env={**env, "XDG_RUNTIME_DIR": str(run)},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: (home / "state" / "daemon.lock").exists() and (home / "state" / "daemon.lock").read_text().strip(), what="the first daemon's lock")
        second = subprocess.run([sys.executable, "-m", "portbell.daemon", "daemon", "--quiet"], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0 and f"pid {first.pid}" in second.stderr
    finally:
        first.terminate()
        first.wait(timeout=20)


# ------------------------------------------------------------------ 9. a config that cannot be loaded


@pytest.mark.parametrize(
    "text, line",
    [
        ("[daemon]\ninterval_s = 2\nx = " + "[" * 5000 + "]" * 5000 + "\n", 3),
        ('[[rule]]\naction = "mute"\nuntil = 9999-12-31T23:59:59-12:00\n', 3),
    ],
    ids=["5000-deep array", "until past the year 9999 in UTC"],
)
def test_a_config_that_cannot_be_loaded_is_a_config_error_with_file_and_line(tmp_path, text, line):
    from portbell.daemon.config import load

    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert f"{path}:{line}:" in str(caught.value)


# ------------------------------------------------------------------ 12. sentences, not tracebacks


def _cli(*argv: str) -> tuple[int, str]:
    from portbell.daemon.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.fixture
def open_tmp():
    """A folder nobody can reach (pytest's own tmp_path sits under a 0700 folder)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="portbell-safety-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _system_record(tmp_path: Path) -> Path:
    """The system-wide layout: a root-owned record, group-readable (0640) by nobody's group."""
    state = tmp_path / "system"
    state.mkdir(mode=0o750)
    os.chown(state, 0, NOBODY)
    os.chmod(tmp_path, 0o755)
    os.environ["PORTBELL_STATE_MODE"] = "0640"
    try:
        store = Store.open(state / "portbell.db")
        store.set_meta("coverage", '["sockdiag", true]')
        store.close()  # the daemon stopped: SQLite removed the -wal and -shm
    finally:
        del os.environ["PORTBELL_STATE_MODE"]
    for name in os.listdir(state):
        os.chown(state / name, 0, NOBODY)
    return state


@pytest.mark.skipif(not is_root(), reason="needs root to stage the system-wide record and drop to nobody")
def test_group_readers_of_the_system_record_after_the_daemon_stops_read_it_and_trust_is_a_sentence(open_tmp, monkeypatch):
    state = _system_record(open_tmp)
    assert not (state / "portbell.db-wal").exists()
    monkeypatch.setenv("PORTBELL_STATE_DIR", str(state))

    def work():
        if os.geteuid() == 0:  # as_nobody's warm-up run: load the modules, change nothing
            from portbell.daemon import cli

            cli.build_parser()  # imports every command's module, as nobody could not

            return None
        store = Store.open(state / "portbell.db", readonly=True)
        coverage = store.meta("coverage")
        store.close()
        code, text = _cli("trust", "8000")
        status_code, status = _cli("status")
        return {"coverage": coverage, "code": code, "text": text, "status": status}

    got = as_nobody(work)
    assert got["coverage"] == '["sockdiag", true]'
    assert got["code"] != 0 and "Traceback" not in got["text"] and "cannot write the record" in got["text"], got["text"]
    assert "not a usable portbell database" not in got["status"], got["status"]


@pytest.mark.skipif(not is_root(), reason="needs root to stage the system-wide record and drop to nobody")
def test_roots_trust_on_the_system_record_without_its_mode_in_the_environment_keeps_the_group_reading(open_tmp, monkeypatch):
    """`sudo PORTBELL_STATE_DIR=/var/lib/portbell portbell trust 22`: the unit's PORTBELL_STATE_MODE is not there."""
    state = _system_record(open_tmp)
    monkeypatch.setenv("PORTBELL_STATE_DIR", str(state))
    monkeypatch.delenv("PORTBELL_STATE_MODE", raising=False)
    trust = portbell("trust", "22")
    assert trust.returncode == 0, trust.stderr
    db = state / "portbell.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o640 and (db.stat().st_uid, db.stat().st_gid) == (0, NOBODY)

    def work():
        if os.geteuid() == 0:  # as_nobody's warm-up run: the record's modules are loaded already
            return None
        store = Store.open(db, readonly=True)  # a member of the group: the tray, `portbell status`
        try:
            return [list(r.ports) for r in store.decisions()]
        finally:
            store.close()

    assert as_nobody(work) == [[22, 22]]


@pytest.mark.skipif(not is_root(), reason="needs root to drop to nobody")
def test_a_read_only_state_dir_or_record_is_a_sentence(open_tmp, monkeypatch):
    tmp_path = open_tmp
    state = tmp_path / "ro"
    state.mkdir()
    Store.open(state / "portbell.db").close()
    os.chown(state / "portbell.db", NOBODY, NOBODY)
    os.chmod(state / "portbell.db", 0o400)
    os.chmod(state, 0o555)
    os.chmod(tmp_path, 0o755)
    monkeypatch.setenv("PORTBELL_STATE_DIR", str(state))

    def work():
        if os.geteuid() == 0:  # the warm-up run: root may write anything
            from portbell.daemon import cli

            cli.build_parser()  # imports every command's module, as nobody could not

            return []
        return [_cli("trust", "8000"), _cli("forget", "1")]

    for code, text in as_nobody(work):
        assert code != 0 and "Traceback" not in text and "cannot write the record" in text and "read-only" in text, text


@pytest.mark.skipif(not is_root(), reason="needs root to drop to nobody (whose home does not exist)")
def test_home_unset_or_not_writable_is_a_sentence(open_tmp, monkeypatch):
    tmp_path = open_tmp
    for name in ("PORTBELL_STATE_DIR", "PORTBELL_RUNTIME_DIR", "PORTBELL_CONFIG", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    not_a_dir = tmp_path / "home-is-a-file"
    not_a_dir.write_text("")

    def work():
        out = []
        if os.geteuid() == 0:  # the warm-up run: root's home is writable
            from portbell.daemon import cli

            cli.build_parser()  # imports every command's module, as nobody could not

            return out
        for home in (None, str(not_a_dir)):
            if home is None:
                os.environ.pop("HOME", None)  # nobody's home in passwd is /nonexistent
            else:
                os.environ["HOME"] = home
            out += [_cli("trust", "8000"), _cli("daemon", "--quiet"), _cli("status")]
        return out

    results = as_nobody(work)
    assert len(results) == 6
    for code, text in results:
        assert code != 0 and "Traceback" not in text, text
        assert "cannot create the state directory" in text or "cannot read it" in text or "not running" in text, text


# ------------------------------------------------------------------ 13. events --follow


def test_events_follow_never_holds_back_an_event_committed_during_its_first_query(home, monkeypatch, capsys):
    """A commit between the first query and the first data_version is seen at the next tick,
    not at the next commit (the daemon's heartbeat, 15 s later)."""
    from datetime import datetime, timezone

    from portbell.daemon.cli import build_parser, record as cli_record
    from portbell.daemon.model import Event, EventKind, Listener, Exposure, Transport, snapshot_of
    from portbell.daemon.rules import Verdict

    db = home / "state" / "portbell.db"
    writer = Store.open(db)
    t0 = datetime.now(timezone.utc)
    li = lambda port: Listener(Transport.TCP, 4, "127.0.0.1", port, Exposure.LOOPBACK)  # noqa: E731
    writer.record(snapshot_of([li(1)], t0), [(Event(EventKind.OPENED, t0, li(1)), Verdict(False, "x"))])
    real_reader = cli_record._reader

    def reader():
        store = real_reader()
        query = store.events

        def events(**kw):
            got = query(**kw)
            if kw.get("after_id", 0) == 0:  # the first query: the daemon commits right after it
                writer.record(snapshot_of([li(1), li(2)], t0), [(Event(EventKind.OPENED, t0, li(2)), Verdict(False, "x"))])
            return got

        store.events = events
        return store

    monkeypatch.setattr(cli_record, "_reader", reader)
    old = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        args = build_parser().parse_args(["events", "--follow", "--json"])
        assert args.func(args) == 0
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, old[0])
        signal.signal(signal.SIGINT, old[1])
        writer.close()
    ports = [line for line in capsys.readouterr().out.splitlines() if '"port": 2' in line]
    assert len(ports) == 1, "the event committed during the first query was held back"


def test_tray_state_and_the_jsonl_sink_never_go_through_a_symlink(tmp_path):
    from portbell.daemon.sinks import SinkError
    from portbell.daemon.sinks._jsonl import JsonLinesSink
    from portbell.tray.state import TrayState

    target = tmp_path / "target.json"
    target.write_text('{"version": 1, "notified_id": 7, "seen_id": 7, "paused_until": null}')
    os.chmod(target, 0o644)
    (tmp_path / "tray.json").symlink_to(target)
    assert TrayState.load(tmp_path / "tray.json").notified_id is None  # ignored, not read through the link
    TrayState(notified_id=9).save(tmp_path / "tray.json")  # replaces the link, never writes the target
    assert '"notified_id": 7' in target.read_text() and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert not (tmp_path / "tray.json").is_symlink()

    (tmp_path / "events.jsonl").symlink_to(target)
    sink = JsonLinesSink(tmp_path / "events.jsonl", host="h")
    from datetime import datetime, timezone

    from portbell.daemon.model import Event, EventKind, Exposure, Listener, Recorded, Transport

    rec = Recorded(1, Event(EventKind.OPENED, datetime.now(timezone.utc), Listener(Transport.TCP, 4, "127.0.0.1", 1, Exposure.LOOPBACK)), False, "x")
    with pytest.raises(SinkError):
        sink.emit([rec], None)
    sink.close()
    assert '"notified_id": 7' in target.read_text() and "opened" not in target.read_text()


def test_a_second_writer_loses_nothing_the_first_commits_while_it_is_open(tmp_path):
    """Opening the record must not close a descriptor of its own on the file once SQLite has it:
    closing any descriptor drops every POSIX lock the process holds on that file, and a writer that
    closes last while it holds none believes it is the only one left, checkpoints and deletes the
    -wal under the running daemon. Found as a tray decision that never reached the record."""
    import subprocess
    import sys

    from portbell.daemon.record import Store

    path = tmp_path / "portbell.db"
    daemon = Store.open(path)  # the daemon's connection, open all along
    try:
        daemon.set_meta("before", "1")
        code = (
            "import sys; from pathlib import Path; from portbell.daemon.record import Store; from portbell.daemon.rules import Rule\n"
            "s = Store.open(Path(sys.argv[1])); s.add_decision(Rule(action='mute', ports=(8000, 8000), source='cli')); s.close()"
        )
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=60)  # `portbell mute 8000`
        assert Path(f"{path}-wal").exists(), "the -wal was deleted while the daemon had the record open"
        daemon.set_meta("after", "1")  # the daemon's next commit
        reader = Store.open(path, readonly=True)
        try:
            assert [r.ports for r in reader.decisions()] == [(8000, 8000)]
            assert reader.meta("after") == "1"
        finally:
            reader.close()
    finally:
        daemon.close()
