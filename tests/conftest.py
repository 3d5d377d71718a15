"""Shared fixtures: real sockets, real child processes, polling with a deadline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import traceback
from contextlib import ExitStack

import pytest

from portbell.daemon.samplers import create

LINUX = sys.platform.startswith("linux")
SAMPLERS = ["sockdiag", "psutil"] if LINUX else ["psutil"]


def wait_for(condition, timeout=10.0, interval=0.02, what="condition"):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC for one test (the texts that show local times are then known), restored after."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private state, runtime and config location for one test, for this process and its children."""
    for name, path in (("PORTBELL_STATE_DIR", "state"), ("PORTBELL_RUNTIME_DIR", "run"), ("PORTBELL_CONFIG", "config.toml")):
        monkeypatch.setenv(name, str(tmp_path / path))
    return tmp_path


@pytest.fixture(params=SAMPLERS)
def sampler(request):
    s = create(request.param)
    yield s
    s.close()


@pytest.fixture
def sockets():
    """bind(family, type, address, **opts) -> a bound socket (listening for TCP), closed at teardown."""
    with ExitStack() as stack:

        def bind(family=socket.AF_INET, kind=socket.SOCK_STREAM, address="127.0.0.1", v6only=None, reuseport=False, port=0):
            s = stack.enter_context(socket.socket(family, kind))
            if v6only is not None:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
            if reuseport:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((address, port))
            if kind == socket.SOCK_STREAM:
                s.listen()
            return s

        yield bind


CHILD = textwrap.dedent(
    """
    import os, socket, sys
    family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
    kind = socket.SOCK_DGRAM if sys.argv[2] == "udp" else socket.SOCK_STREAM
    s = socket.socket(family, kind)
    if sys.argv[4] == "reuseport":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((sys.argv[1], int(sys.argv[3])))
    if kind == socket.SOCK_STREAM:
        s.listen()
    def say():  # one write: a forked pair shares the pipe, and print() may write in pieces
        os.write(1, f"{s.getsockname()[1]} {os.getpid()}\\n".encode())
    if sys.argv[5] == "fork":
        if os.fork() == 0:
            say()
            sys.stdin.read()
            os._exit(0)
    say()
    sys.stdin.read()  # hold the socket until the test closes our stdin
    """
)


class Child:
    """A child process holding a listener until stopped. `port` and `pids` (the holders)."""

    def __init__(self, address="127.0.0.1", transport="tcp", port=0, reuseport=False, fork=False, argv0=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, address, transport, str(port), "reuseport" if reuseport else "-", "fork" if fork else "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            executable=argv0,
        )
        lines = [self.proc.stdout.readline().split() for _ in range(2 if fork else 1)]
        self.port = int(lines[0][0])
        self.pids = sorted(int(line[1]) for line in lines)
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


@pytest.fixture
def child():
    """child(**kw) -> Child; every child is stopped at teardown."""
    made: list[Child] = []

    def spawn(**kw):
        c = Child(**kw)
        made.append(c)
        return c

    yield spawn
    for c in made:
        c.stop()


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def portbell(*args, check=False, **kw) -> subprocess.CompletedProcess:
    """Run the real command line in a child process."""
    return subprocess.run([sys.executable, "-m", "portbell.daemon", *args], capture_output=True, text=True, timeout=60, check=check, **kw)


def machine_addresses(family) -> list[str]:
    """This machine's own non-loopback addresses of a family (binding them sends no traffic)."""
    import psutil

    out = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == family and "%" not in a.address and not a.address.startswith(("127.", "::1", "fe80")):
                out.append(a.address)
    return out


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


NOBODY = 65534


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """TERM, then KILL, then wait: nothing outlives the test."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def in_child(work, what: str = "the check"):
    """Run `work()` in a forked child and return what it returned (JSON's types); a failure there,
    with its traceback, fails the test here. The child never returns into pytest."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            os.close(read_end)
            out = json.dumps({"ok": work()})
        except BaseException:  # report anything to the parent
            out, status = json.dumps({"error": traceback.format_exc()}), 1
        with os.fdopen(write_end, "w") as f:
            f.write(out)
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        data = json.loads(f.read() or '{"error": "no answer"}')
    os.waitpid(pid, 0)
    if "error" in data:
        pytest.fail(f"{what} failed:\n{data['error']}")
    return data["ok"]


def as_nobody(work, *, drop: tuple[socket.socket, ...] = ()) -> dict:
    """Run `work()` in a forked child that became uid/gid nobody; return the dict it produced.

    A fork, not a subprocess: this interpreter may live where nobody cannot
    read it, so the work runs once here first: every module it imports lazily
    is loaded before the fork. The child closes its copies of `drop`, so it
    holds none of the test's sockets.
    """
    work()

    def as_nobody_now():
        for sock in drop:
            sock.close()
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        return work()

    return in_child(as_nobody_now, "the check as nobody")


def debian_tool(command: str, package: str) -> str:
    """The path of `command`; as root with apt-get, Debian's `package` is installed when it is
    missing (CI); otherwise the test skips, naming the package."""
    import shutil

    tool = shutil.which(command)
    if tool:
        return tool
    if not (is_root() and shutil.which("apt-get")):
        pytest.skip(f"{command} is missing: install Debian's {package} package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, timeout=600)
        done = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    tool = shutil.which(command)
    if tool is None:
        pytest.fail(f"could not install {package}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return tool


def damage_a_page(path, btree: str = "events_at") -> None:
    """Garbage over the first bytes of one b-tree page of a record, in the file itself (same inode,
    same size): its header and schema still read, and PRAGMA quick_check answers that it failed."""
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ((root, size),) = conn.execute(
            "SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master WHERE name = ?", (btree,)
        ).fetchall()
    finally:
        conn.close()
    with open(path, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\xff" * 8)
