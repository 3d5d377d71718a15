"""An unprivileged daemon on a busy desktop: root's loopback listeners it cannot name, churning
random ports all day, ring once, not once each; a new fixed loopback port of theirs rings once;
anything of theirs other machines can reach rings every time.

First the daemon's poll against replayed snapshots (the order of decisions inside one poll, and
across polls waiting for a full disk), then the real thing: a daemon dropped to nobody in a network
namespace of the test's own, while a root process opens and closes loopback listeners.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import LINUX, in_child, is_root, wait_for
from portbell.daemon.config import Config
from portbell.daemon.model import Exposure, Listener, Owner, Transport, snapshot_of
from portbell.daemon.record import Store
from portbell.daemon.service import Daemon

T0 = datetime(2026, 11, 26, tzinfo=timezone.utc)
BY_ROOT = "loopback, by a program of root nobody can name"
FIRST_RANDOM = f"{BY_ROOT}: the first random tcp port root opens on loopback"
REOPENS = f"{BY_ROOT}; root re-opens random tcp ports on loopback"


def nameless(port, address="127.0.0.1"):
    exposure = Exposure.LOOPBACK if address.startswith("127.") else Exposure.ALL_INTERFACES
    return Listener(Transport.TCP, 4, address, port, exposure, owners=(Owner(pid=None, uid=0, user="root"),))


class Replay:
    """The sampler seam: hands out the staged snapshots, then repeats the last."""

    name = "replay"

    def __init__(self, *states):
        self.states = [snapshot_of(s, T0, sampler="replay") for s in states]

    def sample(self):
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def close(self):
        pass


def verdicts(records) -> dict[int, tuple[bool, str]]:
    return {r.event.listener.port: (r.alert, r.reason) for r in records}


def test_nameless_random_ports_in_one_poll_ring_once(tmp_path):
    store = Store.open(tmp_path / "portbell.db")
    busy = [nameless(50001), nameless(50002), nameless(50003), nameless(20001), nameless(50004, "0.0.0.0"), nameless(50005, "0.0.0.0")]
    daemon = Daemon(store=store, sampler=Replay([], busy), config=Config(), config_path=None)
    daemon.step()  # the baseline
    got = verdicts(daemon.step())
    assert got == {
        50001: (True, FIRST_RANDOM),
        50002: (False, REOPENS),
        50003: (False, REOPENS),
        20001: (True, f"{BY_ROOT}: the first time root listens on 127.0.0.1:20001"),
        50004: (True, "reachable from other machines (all-interfaces), by a program nobody can name"),
        50005: (True, "reachable from other machines (all-interfaces), by a program nobody can name"),
    }
    daemon.close()
    store.close()


class FullDisk(Store):
    """The record's writes fail while `full` (the seam: what SQLite says on a full disk)."""

    full = True

    def record_polls(self, polls):
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        return super().record_polls(polls)


def test_a_poll_waiting_for_the_disk_counts_as_seen(tmp_path):
    store = FullDisk.open(tmp_path / "portbell.db")
    store.full = False
    daemon = Daemon(store=store, sampler=Replay([], [nameless(50001)], [nameless(50002)], [nameless(50002), nameless(50003)]), config=Config(), config_path=None)
    daemon.step()  # the baseline
    store.full = True
    assert daemon.step() == [] and daemon.step() == []  # 50001 opens, then 50001 closes and 50002 opens: both wait
    store.full = False
    got = daemon.step()  # the disk has room: all three polls are committed
    assert [(str(r.event.kind), r.event.listener.port, r.alert) for r in got] == [
        ("opened", 50001, True), ("closed", 50001, False), ("opened", 50002, False), ("opened", 50003, False)
    ]  # fmt: skip
    daemon.close()
    store.close()


# ------------------------------------------------------------------ the real thing

CLONE_NEWNET = 0x40000000
CHURN_S = 3.0

CHURN = textwrap.dedent(
    """
    import os, random, socket, sys, threading, time
    until = time.monotonic() + float(sys.argv[1])
    def churn(seed):
        rng = random.Random(seed)
        while time.monotonic() < until:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))  # a random port: the kernel's choice
            s.listen()
            os.write(1, f"{s.getsockname()[1]}\\n".encode())
            time.sleep(rng.choice([0.005, 0.05, 0.2, 0.4]))  # its lifetime: the workload
            s.close()
    threads = [threading.Thread(target=churn, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    """
)


def _opened(db: Path, port: int) -> list[tuple]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT id, alert, reason, program FROM events WHERE kind = 'opened' AND port = ? ORDER BY id", (port,)).fetchall()
    except sqlite3.Error:
        return []


def _baseline(db: Path) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT 1 FROM meta WHERE key = 'coverage'").fetchone() is not None
    except sqlite3.Error:
        return False


def _listening(db: Path) -> int | None:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM listeners").fetchone()[0]
    except sqlite3.Error:
        return None


def _held(db: Path, address: str, port: int, times: int) -> list[tuple]:
    """Listen on address:port as root (this process) until the record has its `times`-th opening, then close."""
    with socket.socket() as s:
        s.bind((address, port))
        s.listen()
        port = s.getsockname()[1]
        got = wait_for(lambda: len(rows := _opened(db, port)) >= times and rows, timeout=20, what=f"{address}:{port} recorded")
    wait_for(lambda: _listening(db) == 0, timeout=20, what=f"{address}:{port} recorded closed")
    return got


def _in_namespace(folder: Path) -> dict:
    from test_churn import _daemon, _kill, own_network

    from portbell.daemon.rules import is_random_port

    state = own_network(folder, as_nobody=True)
    db = state / "portbell.db"
    pid = _daemon(state, as_nobody=True)  # the default policy: notify.loopback = "first-seen"
    log = folder / "daemon.log"
    try:
        try:
            wait_for(lambda: _baseline(db), timeout=30, what="the baseline")
        except AssertionError as err:
            raise AssertionError(f"{err}; the daemon's log:\n{log.read_text()[-3000:]}") from None
        churn = subprocess.run([sys.executable, "-c", CHURN, str(CHURN_S)], capture_output=True, text=True, timeout=60, check=True)
        ports = sorted({int(p) for p in churn.stdout.split()})
        wait_for(lambda: _listening(db) == 0, timeout=30, what="the churn recorded closed")
        churned = sorted(row + (port,) for port in ports for row in _opened(db, port))
        fixed = next((p for p in range(20000, 20100) if not is_random_port(p)), None)
        held = {
            "fixed": _held(db, "127.0.0.1", fixed, 1) + _held(db, "127.0.0.1", fixed, 2)[1:] if fixed else None,
            "exposed": _held(db, "0.0.0.0", 0, 1) + _held(db, "0.0.0.0", 0, 1),
        }
        os.kill(pid, signal.SIGTERM)
        _, status = os.waitpid(pid, 0)
        return {"churned": churned, "ports": len(ports), **held, "exit": os.waitstatus_to_exitcode(status), "log": log.read_text()[-3000:]}
    except BaseException:
        _kill(pid)
        raise


@pytest.mark.skipif(not (LINUX and is_root()), reason="a network namespace and dropping to nobody need root and Linux")
def test_an_unprivileged_daemon_rings_once_for_roots_churn_of_random_loopback_ports():
    folder = Path(tempfile.mkdtemp(prefix="portbell-nameless-"))
    os.chmod(folder, 0o755)
    try:
        got = in_child(lambda: _in_namespace(folder), "the churn in its namespace")
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)
    assert got["exit"] == 0, got["log"]
    churned = got["churned"]
    if {program for _, _, _, program, _ in churned} != {"uid:0"}:
        pytest.skip(f"root's listeners have a name or a unit here, not a uid alone: {sorted({r[3] for r in churned})}")
    assert len(churned) >= 10, (got["ports"], churned)  # the churn was seen at work
    first, *rest = churned
    assert (first[1], first[2]) == (1, FIRST_RANDOM), churned
    loud = [row for row in rest if row[1]]
    assert not loud, f"{len(loud)} of {len(churned)} of root's random loopback listeners alerted: {loud[:5]}"
    assert all(reason == REOPENS or reason.startswith(f"{BY_ROOT}; root has listened on 127.0.0.1:") for _, _, reason, _, _ in rest)
    if got["fixed"] is None:
        pytest.skip("every port of 20000-20099 is a random one here")
    (_, alert, reason, _), (_, again, reason_again, _) = got["fixed"]
    assert (alert, again) == (1, 0), got["fixed"]  # a new fixed port rings once; the same one re-opened is seen
    assert reason.startswith(f"{BY_ROOT}: the first time root listens on 127.0.0.1:")
    assert reason_again.startswith(f"{BY_ROOT}; root has listened on 127.0.0.1:")
    (a, b) = got["exposed"]
    assert a[1:3] == b[1:3] == [1, "reachable from other machines (all-interfaces), by a program nobody can name"], got["exposed"]
