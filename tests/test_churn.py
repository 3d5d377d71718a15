"""Churn with restarts, in a network namespace of the test's own: every listener recorded as opened
is recorded as closed, and nothing is closed that never opened (issue 11).

A forked child of the test unshares its network namespace (root only), brings its loopback up,
and runs there: the daemon (as root, or dropped to nobody), killed -9 and restarted at random
moments; threads and short-lived processes opening and closing loopback listeners with lifetimes
of 1 ms to 2 s; and one listener no process holds (its only descriptor in flight in a unix
socket), which sends the owner search through every process. Only this test's sockets live in
that namespace, so the record holds them and nothing else.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import pytest

from conftest import NOBODY, in_child

CLONE_NEWNET = 0x40000000
CHURN_S = 6.0
ENOUGH = 20  # opened (and closed) listeners the churn must have recorded to have tested anything

SHORT_LIVED = """
import random, socket, sys, time
family = socket.AF_INET6 if sys.argv[1] == "::1" else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM if sys.argv[2] == "udp" else socket.SOCK_STREAM)
s.bind((sys.argv[1], 0))
if sys.argv[2] == "tcp":
    s.listen()
time.sleep(float(sys.argv[3]))
"""


def _daemon(state: Path, as_nobody: bool) -> int:
    """Fork the daemon (its modules loaded first, so nobody needs to read nothing of ours)."""
    import tomllib  # noqa: F401  (everything the daemon imports lazily, loaded before the drop)

    from portbell.daemon import cli, record, samplers, service, sinks  # noqa: F401
    from portbell.daemon.cli import daemon as _command  # noqa: F401  (main imports it by name)
    from portbell.daemon.cli import main

    sampler, _ = samplers.open_sampler(None)
    sampler.sample()
    sampler.close()

    out = os.open(state.parent / "daemon.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    pid = os.fork()
    if pid == 0:
        try:
            # A dropped sqlite3 connection is freed by the cyclic collector only (Python 3.11: its
            # statement cache refers back to it). Collected here after closerange, one inherited
            # from the test would close whatever descriptor number it had: by then the daemon's own
            # record, -wal or -shm ("locking protocol", every start failing). So: collect first,
            # while its descriptors are still its own copies.
            gc.collect()
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, 65536)  # a fork holds the churn's sockets and the answer's pipe: drop them
            sys.stdout = open(1, "w", closefd=False)  # pytest's capture objects are not our log
            sys.stderr = open(2, "w", closefd=False)
            logging.root.handlers.clear()
            if as_nobody:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            code = main(["daemon", "--quiet", "--interval", "0.1"])
        except BaseException:
            traceback.print_exc()
            code = 70
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(out)
    return pid


def _recorded(db: Path, sql: str, args=()) -> list:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute(sql, args).fetchall()
    except sqlite3.Error:
        return []


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return value


def _churn(stop: threading.Event, seed: int, children: list) -> None:
    rng = random.Random(seed)
    while not stop.is_set():
        address = rng.choice(["127.0.0.1", "::1", "127.0.0.1"])
        transport = rng.choice(["tcp", "tcp", "udp"])
        life = rng.choice([0.001, 0.01, 0.05, 0.2, 0.5, 1.0, 2.0]) * rng.uniform(0.5, 1.0)
        if rng.random() < 0.15:  # some in short-lived processes
            children.append(subprocess.Popen([sys.executable, "-c", SHORT_LIVED, address, transport, str(life)]))
            continue
        s = socket.socket(socket.AF_INET6 if address == "::1" else socket.AF_INET, socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM)
        s.bind((address, 0))
        if transport == "tcp":
            s.listen()
        stop.wait(life)  # the listener's lifetime: the workload, not a wait for a condition
        s.close()


def own_network(folder: Path, as_nobody: bool) -> Path:
    """In a forked child: a network namespace of its own (its loopback up, nobody else's
    listeners), and a daemon's state folder in `folder` (nobody's when `as_nobody`), in the
    environment; the state folder."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    state = folder / "state"
    state.mkdir(mode=0o700)
    if as_nobody:
        os.chown(state, NOBODY, NOBODY)
    os.environ.update(PORTBELL_STATE_DIR=str(state), PORTBELL_RUNTIME_DIR=str(state), PORTBELL_CONFIG=str(folder / "none.toml"))
    return state


def _run_in_namespace(folder: Path, as_nobody: bool) -> dict:
    """In the forked child, in its own network namespace."""
    state = own_network(folder, as_nobody)
    db = state / "portbell.db"
    pid = _daemon(state, as_nobody)
    try:
        return _churn_with_restarts(db, pid, as_nobody)
    except BaseException:
        _kill(pid)
        raise


def _orphan() -> tuple[int, tuple[socket.socket, socket.socket]]:
    """A listener no process holds: its only descriptor in flight in a unix socket (sent, never
    received, the sender's copy closed). It closes when the pair does."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    orphan = socket.socket()
    orphan.bind(("127.0.0.1", 0))
    orphan.listen()
    port = orphan.getsockname()[1]
    socket.send_fds(left, [b"x"], [orphan.fileno()])
    orphan.close()
    return port, (left, right)


def _orphans(stop: threading.Event, pairs: list, ports: list) -> None:
    """Now and then one more listener nobody holds, so the owner search goes through every
    process at moments the daemon cannot foresee; some go away again."""
    rng = random.Random(3)
    while not stop.wait(rng.uniform(0.3, 1.5)):
        port, pair = _orphan()
        ports.append(port)
        pairs.append(pair)
        if len(pairs) > 2 and rng.random() < 0.5:
            for end in pairs.pop(0):
                end.close()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _churn_with_restarts(db: Path, pid: int, as_nobody: bool) -> dict:
    state = db.parent
    try:
        _wait(lambda: _recorded(db, "SELECT 1 FROM meta WHERE key = 'coverage'"), 30, "the baseline")
    except AssertionError as err:
        raise AssertionError(f"{err}; the daemon's log:\n{(state.parent / 'daemon.log').read_text()[-3000:]}") from None
    orphan_port, first = _orphan()  # after the baseline: the view may flip now
    pairs, orphan_ports = [first], [orphan_port]
    stop, children = threading.Event(), []
    threads = [threading.Thread(target=_churn, args=(stop, seed, children)) for seed in range(6)]
    threads.append(threading.Thread(target=_orphans, args=(stop, pairs, orphan_ports)))
    for t in threads:
        t.start()
    rng = random.Random(7)
    kills = 0
    started = time.monotonic()

    def churned_enough() -> bool:  # CHURN_S, and on a slow machine until enough was recorded (up to 10x)
        elapsed = time.monotonic() - started
        if elapsed < CHURN_S:
            return False
        return elapsed > 10 * CHURN_S or len(_recorded(db, "SELECT 1 FROM events WHERE kind = 'opened'")) >= ENOUGH

    try:
        while not churned_enough():
            time.sleep(rng.uniform(0.2, 1.2))  # a random moment of the churn: the point of the test
            os.kill(pid, signal.SIGKILL if rng.random() < 0.8 else signal.SIGTERM)
            os.waitpid(pid, 0)
            kills += 1
            pid = _daemon(state, as_nobody)
    finally:
        stop.set()
        for t in threads:
            t.join()
        for child in children:
            child.wait()
    for pair in pairs:
        for end in pair:
            end.close()  # the orphans' only references go: they close
    try:
        _wait(lambda: not _recorded(db, "SELECT 1 FROM listeners") and _recorded(db, "SELECT 1 FROM events WHERE port = ? AND kind = 'closed'", (orphan_port,)),
              30, "every listener recorded closed")  # fmt: skip
    except AssertionError as err:
        log = (state.parent / "daemon.log").read_text()[-3000:]
        raise AssertionError(f"{err}; still listening per the record: {_recorded(db, 'SELECT transport, address, port FROM listeners')}; log:\n{log}") from None
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    log = (state.parent / "daemon.log").read_text()[-3000:]
    return {"db": str(db), "kills": kills, "orphans": orphan_ports, "exit": os.waitstatus_to_exitcode(status), "log": log}


@pytest.mark.parametrize("as_nobody", [False, True], ids=["root daemon", "daemon dropped to nobody"])
def test_churn_with_restarts_pairs_every_open_with_one_close(as_nobody):
    folder = Path(tempfile.mkdtemp(prefix="portbell-churn-"))
    os.chmod(folder, 0o755)
    try:
        got = in_child(lambda: _run_in_namespace(folder, as_nobody), "the churn in its namespace")
        assert got["kills"] >= 4 and got["exit"] == 0
        rows = _recorded(Path(got["db"]), "SELECT kind, transport, address, port FROM events ORDER BY id")
        open_now: dict[tuple, bool] = {}
        opened = closed = 0
        for kind, *key in rows:
            key = tuple(key)
            if kind == "opened":
                assert not open_now.get(key), f"{key} opened twice without a close"
                open_now[key] = True
                opened += 1
            elif kind == "closed":
                assert open_now.get(key), f"{key} closed without being open"
                open_now[key] = False
                closed += 1
            else:
                assert open_now.get(key), f"{key} changed without being open"
        assert not any(open_now.values()), f"never closed: {[k for k, v in open_now.items() if v]}"
        assert opened == closed and opened >= ENOUGH, (opened, closed, got["log"])
        assert got["orphans"][0] in {port for _, _, _, port in rows}  # the listener nobody held, there from start to end
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)
