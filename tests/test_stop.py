"""`portbell stop [ADDR:]PORT`: real child processes, the guard's refusals, and the units and containers
it does not signal but names the command for."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys

import pytest

from portbell.daemon import samplers
from portbell.daemon.cli import main
from portbell.daemon.model import Container, Forward, Unit, UnitKind, replace, snapshot_of

from conftest import LINUX, NOBODY, is_root, portbell

LISTEN = """
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


@pytest.fixture
def listening():
    """listening(**popen) -> (proc, port): a child holding a TCP listener on 127.0.0.1."""
    made = []

    def spawn(**kw):
        proc = subprocess.Popen([sys.executable, "-c", LISTEN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kw)
        made.append(proc)
        return proc, int(proc.stdout.readline())

    yield spawn
    for proc in made:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def stop(*args, answer: str | None = None) -> subprocess.CompletedProcess:
    return portbell("stop", *args, input=answer if answer is not None else "")


def test_stop_shows_what_listens_asks_and_stops_it(listening):
    proc, port = listening()
    done = stop(str(port), answer="y\n")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"tcp 127.0.0.1:{port}  loopback" in done.stdout
    assert f"(pid {proc.pid})" in done.stdout and "with SIGTERM? [y/N]" in done.stdout
    assert f"sent SIGTERM to python" in done.stdout and f"Port {port} is free now." in done.stdout
    assert proc.wait(10) == -signal.SIGTERM


def test_stop_answered_no_or_not_at_all_signals_nothing(listening):
    proc, port = listening()
    for answer in ("n\n", ""):  # no, and end of input
        done = stop(f"127.0.0.1:{port}", answer=answer)
        assert done.returncode == 1 and "Not stopped" in done.stdout
        assert proc.poll() is None


def test_stop_yes_does_not_ask(listening):
    proc, port = listening()
    done = stop(str(port), "--yes")
    assert done.returncode == 0 and "[y/N]" not in done.stdout
    assert proc.wait(10) == -signal.SIGTERM


def test_stop_where_nothing_listens_exits_1_and_bad_input_2():
    assert stop("1").returncode == 1 and "nothing to stop" in stop("1").stdout
    bad = stop("http")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def _nobody_listener():
    """A forked child that became nobody and listens on 127.0.0.1: (pid, port, release)."""
    import socket

    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(hold_w)
            os.close(ready_r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen()
            os.write(ready_w, str(s.getsockname()[1]).encode())
            os.read(hold_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    port = int(os.read(ready_r, 16))
    os.close(ready_r)

    def release():
        os.close(hold_w)
        os.waitpid(pid, 0)

    return pid, port, release


@pytest.mark.skipif(not (LINUX and is_root()), reason="needs root to start a child as another user")
def test_stop_refuses_another_users_process_even_for_root():
    pid, port, release = _nobody_listener()
    try:
        done = stop(str(port), "--yes")
        assert done.returncode == 1 and "belongs to nobody, not to you" in done.stdout, done.stdout
        assert os.waitpid(pid, os.WNOHANG) == (0, 0)  # still running
    finally:
        release()


class Shifted:
    """The sampler seam: the real sample, with every owner's recorded start moved by `ticks`."""

    name = "shifted"

    def __init__(self, ticks: int = 0, **listener_changes) -> None:
        self.real = samplers.create("sockdiag" if LINUX else "psutil")
        self.ticks, self.changes = ticks, listener_changes

    def sample(self):
        snap = self.real.sample()
        changed = [
            replace(li, owners=tuple(replace(o, start=o.start - self.ticks if o.start is not None else None) for o in li.owners), **self.changes)
            for li in snap.listeners.values()
        ]
        return snapshot_of(changed, snap.taken_at, complete=snap.complete, sampler=self.name)

    def close(self):
        self.real.close()


def _run(monkeypatch, sampler, *argv) -> tuple[int, str]:
    monkeypatch.setattr(samplers, "open_sampler", lambda prefer=None: (sampler, []))
    monkeypatch.setattr(samplers, "sample_once", lambda prefer=None, ports=None: sampler.sample())  # a command's one look
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def test_a_start_time_that_differs_by_one_tick_is_refused(listening, monkeypatch):
    # Within the old 1.5 s tolerance: a pid reused that fast was signalled.
    proc, port = listening()
    code, out = _run(monkeypatch, Shifted(ticks=1), "stop", str(port), "--yes")
    assert code == 1 and "belongs to another process" in out and "started at a different time" in out
    assert proc.poll() is None


def test_a_systemd_unit_is_named_with_its_systemctl_never_signalled(listening, monkeypatch):
    proc, port = listening()
    unit = Unit(UnitKind.SERVICE, "web.service", cgroup="/system.slice/web.service")
    code, out = _run(monkeypatch, Shifted(unit=unit), "stop", str(port), "--yes")
    assert code == 1 and "`systemctl stop web.service`" in out and "unit     web.service" in out
    user_unit = Unit(UnitKind.USER_SERVICE, "app.service", uid=1000)
    code, out = _run(monkeypatch, Shifted(unit=user_unit), "stop", str(port), "--yes")
    assert "`systemctl --user stop app.service`" in out
    assert proc.poll() is None


def test_a_docker_proxy_names_the_container_and_docker_stop(listening, monkeypatch):
    proc, port = listening()
    web = Container("ab" * 32, runtime="docker", name="shop-web-1", image="nginx:1.25")
    fw = Forward("docker-proxy", "172.17.0.2", 80, web)
    code, out = _run(monkeypatch, Shifted(forward=fw), "stop", str(port), "--yes")
    assert code == 1 and "container shop-web-1" in out and "`docker stop shop-web-1`" in out
    assert "forward  -> 172.17.0.2:80 (shop-web-1)" in out
    assert proc.poll() is None


def test_stop_never_signals_portbell_itself(monkeypatch, sockets):
    port = sockets().getsockname()[1]  # held by this very process, which runs the command
    code, out = _run(monkeypatch, Shifted(), "stop", str(port), "--yes")
    assert code == 1 and "refusing to stop portbell itself" in out


@pytest.mark.skipif(not (LINUX and is_root()), reason="needs root listeners and a switch to nobody")
def test_as_nobody_a_root_listener_is_named_and_refused_never_signalled(listening):
    from conftest import as_nobody

    proc, port = listening()  # root's

    def work():
        # as_nobody's first, warming pass runs as root: it answers no (end of input), so it stops nothing
        warming = os.geteuid() == 0
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            sys.stdin, stdin = io.StringIO(""), sys.stdin
            try:
                code = main(["stop", str(port)] if warming else ["stop", str(port), "--yes"])
            finally:
                sys.stdin = stdin
        return {"code": code, "out": out.getvalue()}

    seen = as_nobody(work)
    assert seen["code"] == 1 and "Cannot stop a process of root" in seen["out"], seen
    assert "run as root, or run the system-wide daemon" in seen["out"]
    assert proc.poll() is None


@pytest.mark.skipif(not (LINUX and is_root()), reason="needs root listeners and a switch to nobody")
def test_as_nobody_ls_filters_root_listeners_by_user(sockets):
    from conftest import as_nobody

    port = sockets().getsockname()[1]

    def work():
        results = []
        for user in ("root", "0", "nobody"):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                main(["ls", "--port", str(port), "--user", user])
            results.append(out.getvalue())
        return results

    by_name, by_uid, other = as_nobody(work)
    assert f"127.0.0.1:{port} " in by_name and f"127.0.0.1:{port} " in by_uid
    assert other.startswith("Nothing listens")


def test_a_process_that_ignores_sigterm_is_reported_still_listening(listening):
    proc = subprocess.Popen([sys.executable, "-c", "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + LISTEN],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        done = stop(str(port), "--yes")
        assert done.returncode == 1 and "sent SIGTERM" in done.stdout
        assert f"Port {port} still listens 5s after SIGTERM" in done.stdout
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(10)
