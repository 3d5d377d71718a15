"""The record is never lost and never duplicated (issue 11: 1-3, 11): a coverage flip, a slow hook
across stops and kill -9, a full disk, a hook that prints gigabytes."""

from __future__ import annotations

import json
import logging
import resource
import socket
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import LINUX, is_root, stop_process, wait_for
from portbell.daemon import paths
from portbell.daemon.config import Config
from portbell.daemon.model import Exposure, Listener, Owner, Transport, snapshot_of
from portbell.daemon.record import Store
from portbell.daemon.service import Daemon

T0 = datetime(2026, 11, 26, tzinfo=timezone.utc)


class Replay:
    """A sampler that replays snapshots, then repeats the last (the narrow seam)."""

    name = "replay"

    def __init__(self, *steps):
        self.steps = list(steps)

    def sample(self):
        return self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]

    def close(self):
        pass


def li(port, pid=None, address="127.0.0.1"):
    return Listener(Transport.TCP, 4, address, port, Exposure.LOOPBACK, owners=(Owner(pid=pid, uid=0, name="srv" if pid else None),))


def kinds(store: Store) -> list[tuple[str, int]]:
    return [(str(r.event.kind), r.event.listener.port) for r in store.events() if not r.baseline]


# ------------------------------------------------------------------ 1. a coverage flip


def test_a_coverage_flip_records_what_opened_and_closed_and_takes_owners_silently(tmp_path):
    partial = snapshot_of([li(1), li(3)], T0, complete=False, sampler="replay")
    complete = snapshot_of([li(1, pid=10), li(2, pid=20)], T0, complete=True, sampler="replay")
    store = Store.open(tmp_path / "portbell.db")
    daemon = Daemon(store=store, sampler=Replay(partial, complete), config=Config(), config_path=None)
    daemon.step()  # the baseline
    daemon.step()  # the flip: 2 opened, 3 closed, 1's owner became visible
    assert sorted(kinds(store)) == [("closed", 3), ("opened", 2)]
    daemon.close()
    store.close()
    again = Store.open(tmp_path / "portbell.db")
    now = {li.port: li for li in again.recorded().listeners.values()}
    assert now[1].owners[0].pid == 10 and again.recorded().complete  # the record took the new owner, silently
    again.close()


def test_a_sink_added_after_the_per_sink_cursors_starts_at_the_newest_record_whatever_the_old_marker(tmp_path):
    """A record from before per-sink cursors holds one marker for all sinks: it serves only until
    the sinks' own cursors are kept; a sink configured later starts at the newest record."""
    store = Store.open(tmp_path / "portbell.db")
    daemon = Daemon(store=store, sampler=Replay(snapshot_of([li(1)], T0, sampler="replay"), snapshot_of([li(1), li(2)], T0, sampler="replay")),
                    config=Config(), config_path=None)
    daemon.step()
    daemon.step()
    daemon.close()
    newest = store.last_id()
    store.set_meta("sinks_delivered", "1")
    jsonl = {"path": str(tmp_path / "a.jsonl")}
    first = Daemon(store=store, sampler=Replay(), config=Config(sinks={"jsonl": jsonl}), config_path=None)
    assert first._cursors == {"jsonl": 1}  # the old marker: what it had delivered
    first.close()
    store.set_cursors({"jsonl": newest})  # as the first daemon kept it, once it caught up
    both = {"jsonl": jsonl, "prometheus": {"path": str(tmp_path / "portbell.prom")}}
    later = Daemon(store=store, sampler=Replay(), config=Config(sinks=both), config_path=None)
    assert later._cursors == {"jsonl": newest, "prometheus": newest}
    later.close()
    store.close()


@pytest.mark.skipif(not (LINUX and is_root()), reason="the owner search through every process needs root and Linux")
def test_a_socket_no_process_holds_keeps_the_root_view_complete():
    from portbell.daemon.samplers import create

    sampler = create("sockdiag")
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    orphan = socket.socket()
    orphan.bind(("127.0.0.1", 0))
    orphan.listen()
    port = orphan.getsockname()[1]
    socket.send_fds(left, [b"x"], [orphan.fileno()])  # in flight, never received
    orphan.close()
    try:
        sampler.sample()
        if not sampler._attributor.denied:
            pytest.skip("no process hides its descriptors from root on this machine")
        snap = wait_for(lambda: (s := sampler.sample()) and any(k.port == port for k in s.listeners) and s, what="the orphan listener")
        (held,) = [v for k, v in snap.listeners.items() if k.port == port]
        assert held.owners[0].pid is None  # nobody holds it
        assert snap.complete  # a process hiding its fds is a fact about that process, not the view
    finally:
        left.close()
        right.close()
        sampler.close()


# ------------------------------------------------------------------ 2. a slow hook across a clean stop

SLOW_HOOK = textwrap.dedent(
    """
    import json, os, sys, time
    record = json.loads(sys.stdin.readline())
    with open(sys.argv[1], "a") as out:
        out.write(f"{record['id']}\\n")
    time.sleep(float(sys.argv[2]))
    """
)


def hook_config(seen: Path, pause_s: float, **hook) -> Config:
    table = {"argv": [sys.executable, "-c", SLOW_HOOK, str(seen), str(pause_s)], "max_concurrent": 1, "timeout_s": 1, **hook}
    return Config(notify_loopback="always", sinks={"hook": table})


def seen_ids(seen: Path) -> set[int]:
    return {int(x) for x in seen.read_text().split()} if seen.exists() else set()


def test_hook_runs_waiting_at_a_clean_stop_run_at_the_next_start(tmp_path):
    seen = tmp_path / "seen"
    ports = range(1000, 1020)
    steps = (snapshot_of([], T0, complete=True, sampler="replay"), snapshot_of([li(p, pid=p) for p in ports], T0, complete=True, sampler="replay"))
    store = Store.open(tmp_path / "portbell.db")
    daemon = Daemon(store=store, sampler=Replay(*steps), config=hook_config(seen, 0.2), config_path=None)
    daemon.step()
    alerts = [r.id for r in daemon.step() if r.alert]
    assert len(alerts) == 20
    wait_for(lambda: seen_ids(seen), what="the first hook run")
    daemon.close()  # most runs still wait
    assert len(seen_ids(seen)) < 20, "the hook was too fast to leave runs waiting"
    daemon = Daemon(store=store, sampler=Replay(steps[1]), config=hook_config(seen, 0.0), config_path=None)

    def all_seen():
        daemon.step()
        return seen_ids(seen) >= set(alerts)

    wait_for(all_seen, timeout=60, interval=0.05, what="every alert at the hook")
    daemon.close()
    store.close()


# ------------------------------------------------------------------ 2. kill -9 at random moments, a slow hook


@pytest.mark.skipif(not LINUX, reason="signals and /proc")
def test_kill_9_at_random_moments_the_slow_hook_sees_every_alert_at_least_once(home, tmp_path):
    import random

    from test_daemon import DaemonProc

    seen = tmp_path / "seen"
    argv = json.dumps([sys.executable, "-c", SLOW_HOOK, str(seen), "0.05"])
    (home / "config.toml").write_text(f'[notify]\nloopback = "always"\n[sinks.hook]\nargv = {argv}\nmax_concurrent = 1\n')
    db = home / "state" / "portbell.db"
    rng = random.Random(11)
    held: list[socket.socket] = []

    def alerts() -> list[int]:
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                return [i for (i,) in conn.execute("SELECT id FROM events WHERE alert = 1")]
        except sqlite3.Error:
            return []

    first = DaemonProc("--interval", "0.1", "--quiet", folder=home)
    wait_for(lambda: db.exists() and _count(db.parent, "baseline = 1"), timeout=20, what="the baseline")
    assert first.stop()[0] == 0
    kills = 0
    try:
        for round_ in range(22):
            d = DaemonProc("--interval", "0.1", "--quiet", folder=home)
            opened = rng.randint(1, 4)
            for _ in range(opened):  # news for this daemon: listeners open and close
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                s.listen()
                held.append(s)
            if len(held) > 6:
                held.pop(0).close()
            want = len(alerts()) + rng.randint(0, opened)
            wait_for(lambda: len(alerts()) >= want, timeout=30, what="some alerts recorded")
            assert d.proc.poll() is None, d.err_path.read_text()
            if rng.random() < 0.5:  # sometimes at once, sometimes while the hook is behind
                start = len(seen_ids(seen))
                wait_for(lambda: len(seen_ids(seen)) > start or len(seen_ids(seen)) >= len(alerts()), timeout=30, what="a hook run")
            d.proc.kill()
            d.proc.wait(timeout=10)
            kills += 1
        d = DaemonProc("--interval", "0.1", "--quiet", folder=home)
        wanted = set(alerts())
        assert len(wanted) >= 40
        wait_for(lambda: seen_ids(seen) >= wanted, timeout=60, interval=0.1, what="every alert at the hook")
        d.stop()
    finally:
        for s in held:
            s.close()
    assert kills >= 20


# ------------------------------------------------------------------ 3. a full disk


@pytest.mark.skipif(not (LINUX and is_root()), reason="mounting a small tmpfs needs root")
def test_a_full_disk_keeps_what_it_could_not_write_and_commits_it_when_there_is_room(home, tmp_path, monkeypatch):
    from test_daemon import DaemonProc

    state = home / "state"
    state.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(state)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    d = None
    try:
        d = DaemonProc("--interval", "0.1", "--quiet", folder=home)
        wait_for(lambda: (state / "portbell.db").exists() and _count(state, "baseline = 1") is not None, timeout=20, what="the baseline")
        lock = paths.lock_file()
        filler = state / "filler"
        with open(filler, "wb") as out:  # fill the disk to the last byte
            try:
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            except OSError:
                pass
        ports = []
        failing = None
        for _ in range(8):  # open and close while nothing can be written
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen()
            ports.append(s.getsockname()[1])
            _sampled(lock)  # the daemon saw it open (it cannot record it yet)
            status = subprocess.run([sys.executable, "-m", "portbell.daemon", "status"], capture_output=True, text=True, timeout=60)
            failing = failing or ("writes failing" in status.stdout and status.stdout)
            s.close()
            _sampled(lock)  # and saw it closed
        assert "cannot write the record" in d.err_path.read_text()
        assert failing, "status did not say writes are failing"
        filler.unlink()
        for port in ports:
            wait_for(lambda: _count(state, "port = ? AND kind = 'closed'", (port,)) == 1, timeout=30, what=f"port {port} recorded")
            assert _count(state, "port = ? AND kind = 'opened'", (port,)) == 1
        assert d.stop()[0] == 0
    finally:
        if d is not None and d.proc.poll() is None:  # a failure above must not leave it sampling
            stop_process(d.proc)
        subprocess.run(["umount", "-l", str(state)], check=False)


def _sampled(lock: Path) -> None:
    """Wait for two samples to end (the daemon stamps its lock after each): the second began after
    this call, so it saw the machine as it is now. A socket the test closes sooner may be missed by a
    daemon whose polls run long (each one retries the full disk)."""
    first = lock.stat().st_mtime_ns
    wait_for(lambda: lock.stat().st_mtime_ns != first, timeout=20, what="a sample")
    second = lock.stat().st_mtime_ns
    wait_for(lambda: lock.stat().st_mtime_ns != second, timeout=20, what="a second sample")


def _count(state: Path, where: str, args=()) -> int | None:
    try:
        with sqlite3.connect(f"file:{state / 'portbell.db'}?mode=ro", uri=True) as conn:
            return conn.execute(f"SELECT count(*) FROM events WHERE {where}", args).fetchone()[0] or None
    except sqlite3.Error:
        return None


# ------------------------------------------------------------------ 11. a hook that prints a lot

LOUD_HOOK = textwrap.dedent(
    """
    import sys
    sys.stdin.read()
    chunk = b"x" * (1 << 20)
    for _ in range(int(sys.argv[1])):
        sys.stderr.buffer.write(chunk)
    sys.stderr.buffer.write(b"the very end")
    sys.exit(3)
    """
)


def test_a_hook_that_prints_gigabytes_costs_a_bounded_tail(caplog):
    from portbell.daemon.model import Event, EventKind, Recorded
    from portbell.daemon.sinks._hook import HookSink

    hook = HookSink([sys.executable, "-c", LOUD_HOOK, "600"], timeout_s=60)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    with caplog.at_level(logging.WARNING, logger="portbell.sinks"):
        hook.emit([Recorded(1, Event(EventKind.OPENED, T0, li(1)), True, "x")], None)
        wait_for(lambda: hook.failed == 1, timeout=60, what="the loud hook to end")
    hook.close()
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, f"the daemon grew by {grown_mib:.0f} MiB for 600 MiB of stderr"
    assert "status 3" in caplog.text and "the very end" in caplog.text
