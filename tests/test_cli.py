"""The command line, run for real in child processes."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import has_ipv6, portbell


def listener_doc(doc, transport, port):
    return [li for li in doc["listeners"] if li["transport"] == transport and li["port"] == port]


def test_ls_json_has_the_documented_shape(sockets):
    s = sockets(address="127.0.0.1")
    out = portbell("ls", "--json", check=True)
    doc = json.loads(out.stdout)
    assert doc["version"] == 1 and isinstance(doc["complete"], bool)
    (li,) = listener_doc(doc, "tcp", s.getsockname()[1])
    assert set(li) == {"transport", "family", "address", "port", "exposure", "dual_stack", "owners", "unit", "forward", "candidates", "socket"}
    assert (li["family"], li["address"], li["exposure"], li["dual_stack"]) == (4, "127.0.0.1", "loopback", False)
    owner = next(o for o in li["owners"] if o["pid"] == os.getpid())
    assert set(owner) == {"pid", "name", "exe", "cmdline", "user", "uid", "ppid", "started_at", "via", "start"}
    from portbell.daemon.process import start_of

    assert owner["start"] == start_of(os.getpid()) and isinstance(owner["start"], int)  # clock ticks, exact
    assert owner["via"] == "fd" and li["socket"] is True
    assert owner["started_at"].endswith("Z") and isinstance(owner["cmdline"], list)


def test_ls_filters_exposed_and_transport(sockets):
    lo = sockets(address="127.0.0.1").getsockname()[1]
    wild = sockets(address="0.0.0.0").getsockname()[1]
    udp = sockets(kind=socket.SOCK_DGRAM, address="127.0.0.1").getsockname()[1]
    exposed = json.loads(portbell("ls", "--json", "--exposed", check=True).stdout)
    assert listener_doc(exposed, "tcp", wild) and not listener_doc(exposed, "tcp", lo)
    only_udp = json.loads(portbell("ls", "--json", "--udp", check=True).stdout)
    assert listener_doc(only_udp, "udp", udp) and all(li["transport"] == "udp" for li in only_udp["listeners"])
    assert portbell("ls", "--tcp", "--udp").returncode == 2


def test_ls_table_is_aligned_and_readable(sockets):
    port = sockets(address="127.0.0.1").getsockname()[1]
    lines = portbell("ls", check=True).stdout.splitlines()
    assert lines[0].split() == ["PROTO", "ADDRESS", "EXPOSURE", "PID", "PROCESS", "USER", "UNIT", "SERVICE"]
    row = next(line for line in lines if f"127.0.0.1:{port} " in line)
    assert row.split()[:4] == ["tcp", f"127.0.0.1:{port}", "loopback", str(os.getpid())]
    assert lines[0].index("EXPOSURE") == row.index("loopback")  # columns line up


def test_who_names_the_process_and_the_port_class(child):
    c = child(address="127.0.0.1")
    out = portbell("who", str(c.port))
    assert out.returncode == 0, out.stderr
    assert f"tcp 127.0.0.1:{c.port}" in out.stdout
    assert f"(pid {c.pid})" in out.stdout
    assert "parent   " in out.stdout and f"(pid {os.getpid()})" in out.stdout
    assert f"port {c.port}: " in out.stdout and "ephemeral range" in out.stdout


def test_who_with_address_matches_wildcards_that_serve_it(child):
    c = child(address="0.0.0.0")
    doc = json.loads(portbell("who", f"127.0.0.1:{c.port}", "--json", check=True).stdout)
    assert [li["address"] for li in doc["listeners"]] == ["0.0.0.0"]
    assert doc["port"]["port"] == c.port and doc["port"]["class"] in ("registered", "dynamic")


@pytest.mark.skipif(not has_ipv6(), reason="no IPv6")
def test_who_ipv6_in_brackets(sockets):
    port = sockets(socket.AF_INET6, address="::1").getsockname()[1]
    doc = json.loads(portbell("who", f"[::1]:{port}", "--json", check=True).stdout)
    assert [li["address"] for li in doc["listeners"]] == ["::1"]


def test_who_exits_1_with_a_sentence_when_nothing_listens():
    with socket.socket() as s:  # a port that was free a moment ago and now has nobody
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = portbell("who", str(port))
    assert out.returncode == 1
    assert out.stdout.startswith(f"Nothing listens on port {port} (tcp or udp).")
    doc = json.loads(portbell("who", str(port), "--json").stdout)
    assert doc["listeners"] == []


@pytest.mark.parametrize("target", ["http", "70000", "::1:80", "[::1]80", "example.org:80", "-1"])
def test_bad_targets_exit_2_with_a_message(target):
    out = portbell("who", "--", target)
    assert out.returncode == 2
    assert out.stderr.startswith("portbell: ") and "Traceback" not in out.stderr


def test_bad_interval_is_usage_error():
    out = portbell("watch", "--interval", "0")
    assert out.returncode == 2 and "out of range" in out.stderr


class Lines:
    """Read a child's stdout line by line with a deadline.

    It reads the pipe's descriptor itself, with its own buffer: a text stream's readline would
    buffer several lines, and select() would then wait for more while lines are already here."""

    def __init__(self, proc):
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)
        self.buffer = b""

    def next(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise AssertionError(f"no line within {timeout}s")
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise AssertionError(f"the output ended without another line within {timeout}s")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode() + "\n"


def test_watch_reports_a_child_opening_then_closing_within_two_intervals(child):
    interval = 0.5
    proc = subprocess.Popen(
        [sys.executable, "-m", "portbell.daemon", "watch", "--json", "--interval", str(interval)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proc.stderr.readline()  # "watching N listeners ...": the baseline is taken
        c = child(address="127.0.0.1")
        opened_at = time.monotonic()
        lines = Lines(proc)

        def event_for(kind):
            while True:
                ev = json.loads(lines.next(2 * interval + 0.5))
                if ev["listener"]["port"] == c.port and ev["kind"] == kind:
                    return ev

        ev = event_for("opened")
        assert time.monotonic() - opened_at <= 2 * interval + 0.5
        assert ev["version"] == 1 and ev["previous"] is None and ev["at"].endswith("Z")
        assert [o["pid"] for o in ev["listener"]["owners"]] == [c.pid]
        c.stop()
        closed_at = time.monotonic()
        ev = event_for("closed")
        assert time.monotonic() - closed_at <= 2 * interval + 0.5
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_watch_stops_cleanly_on_sigterm():
    proc = subprocess.Popen([sys.executable, "-m", "portbell.daemon", "watch", "--interval", "30"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    proc.stderr.readline()
    started = time.monotonic()
    proc.terminate()
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and time.monotonic() - started < 5  # the wait is interruptible
    assert "Traceback" not in err


def test_portbell_alone_picks_the_tray_on_a_desktop_and_the_daemon_without(monkeypatch, tmp_path):
    from portbell.daemon import cli

    monkeypatch.setenv("PORTBELL_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("PORTBELL_STATE_DIR", str(tmp_path))  # the daemon's lock is beside the record
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":99")
    assert cli._main_job(False) == ["tray"]
    monkeypatch.delenv("DISPLAY")
    assert cli._main_job(True) == ["--verbose", "daemon"]


def test_windowless_portbellw_writes_what_it_would_print_to_the_user_log_folder(tmp_path):
    # pythonw has no stderr nor stdout; run the entry as it would, and look for the trace
    code = (
        "import sys; sys.stderr = None; sys.stdout = None\n"
        "from portbell.daemon.cli import main\n"
        "raise SystemExit(main(['no-such-command']))\n"
    )
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"), HOME=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    (log,) = (tmp_path / "state").rglob("portbellw.log")
    assert "invalid choice: 'no-such-command'" in log.read_text()
