"""The command line as a person meets it (issue 13): dates, a doctor that agrees with the kernel,
filters, colour, help and the small things. Through the real command, on real sockets and a real record."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import pytest

from portbell.daemon.model import Event, EventKind, Exposure, Listener, Owner, Transport, snapshot_of
from portbell.daemon.rules import Rule, Verdict

from conftest import has_ipv6, portbell, wait_for
from test_doctor import doctor_json, free_port_with_listening_neighbour, listen, listen_alone

NOW = datetime.now(timezone.utc)
PY = Owner(pid=4242, uid=1000, name="python3", exe="/root/venv/bin/python3", user="ana", started_at=NOW - timedelta(days=3))
HELPER = Owner(pid=4243, uid=1000, name="root-helper", exe="/usr/bin/root-helper", user="ana", started_at=NOW - timedelta(days=3))


def _li(port, owner=PY, address="127.0.0.1", exposure=Exposure.LOOPBACK, dual=False, family=4):
    return Listener(Transport.TCP, family, address, port, exposure, dual, (owner,))


def write_record(*events: tuple[datetime, Listener, str, bool]) -> None:
    """A real record (the Store) holding `events`: (at, listener, reason, alert)."""
    from portbell.daemon import paths
    from portbell.daemon.record import Store

    store = Store.open(paths.database())
    try:
        for at, li, reason, alert in events:
            snap = snapshot_of([li], at, sampler="replay")
            store.record(snap, [(Event(EventKind.OPENED, at, li), Verdict(alert, reason))])
    finally:
        store.close()


@pytest.fixture
def utc(home, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    return home


# ------------------------------------------------------------------ 1. dates in events


def _today_at_least(delta: timedelta) -> datetime:
    start_of_day = NOW.replace(hour=0, minute=0, second=0, microsecond=0)
    return max(NOW - delta, start_of_day)


def test_events_from_other_days_carry_their_date_on_every_line(utc):
    yesterday, earlier = NOW - timedelta(days=1), NOW - timedelta(days=7)
    today = _today_at_least(timedelta(seconds=5))
    write_record((earlier, _li(8001), "new", True), (yesterday, _li(8002), "new", True), (today, _li(8003), "new", True))
    lines = portbell("events", "--since", "8d", check=True).stdout.splitlines()
    assert [line[:19] for line in lines] == [m.strftime("%Y-%m-%d %H:%M:%S") for m in (earlier, yesterday, today)]


def test_events_all_from_today_show_the_time_only(utc):
    write_record((_today_at_least(timedelta(seconds=5)), _li(8003), "new", True))
    (line,) = portbell("events", check=True).stdout.splitlines()
    assert re.match(r"\d\d:\d\d:\d\d  opened ", line), line


# ------------------------------------------------------------------ 2. a doctor that never contradicts itself


@pytest.mark.skipif(not has_ipv6(), reason="needs IPv6 on loopback")
def test_doctor_on_an_ipv4_wildcard_never_says_only_one_address():
    with ExitStack() as stack:
        port = listen_alone(stack, "0.0.0.0").getsockname()[1]
        _, data = doctor_json(f"localhost:{port}")
    sentences = [f["sentence"] for f in data["findings"]]
    family = next(f for f in data["findings"] if f["code"] == "ipv4-only")
    assert "every IPv4 address (0.0.0.0)" in family["sentence"]
    assert "all-interfaces" in [f["code"] for f in data["findings"]]
    assert not [s for s in sentences if "127.0.0.1 only" in s or "only (IPv4)" in s], sentences


def test_doctor_at_another_loopback_address_names_the_address_that_listens():
    with ExitStack() as stack:
        port, _neighbour = free_port_with_listening_neighbour(stack)
        listen(stack, "127.0.0.1", port)
        _, data = doctor_json(f"127.0.0.2:{port}")
    codes = [f["code"] for f in data["findings"]]
    assert "other-address" in codes and "nearby-port" not in codes, codes
    assert not [f for f in data["findings"] if f["sentence"].startswith("Nothing")]
    assert f"127.0.0.1:{port}" in next(f["sentence"] for f in data["findings"] if f["code"] == "other-address")


def test_who_says_which_transport_and_address_do_listen():
    with ExitStack() as stack:
        udp_port = listen_alone(stack, "127.0.0.1", udp=True).getsockname()[1]
        tcp_port = listen_alone(stack, "127.0.0.1").getsockname()[1]
        wrong_transport = portbell("who", str(udp_port), "--tcp")
        wrong_address = portbell("who", f"127.0.0.2:{tcp_port}")
    assert wrong_transport.returncode == 1
    assert f"But udp port {udp_port} listens: udp 127.0.0.1:{udp_port} by " in wrong_transport.stdout
    assert wrong_address.returncode == 1
    assert f"But port {tcp_port} listens on another address: tcp 127.0.0.1:{tcp_port} by " in wrong_address.stdout


# ------------------------------------------------------------------ 3. filters


def _ports_in(stdout: str) -> set[int]:
    return {int(m) for m in re.findall(r"127\.0\.0\.1:(\d+) ", stdout)}


def test_ls_filters_by_port_list_range_process_user_and_exposure(sockets):
    a, b = (sockets().getsockname()[1] for _ in range(2))
    me = str(os.getuid())
    exe = os.path.realpath(sys.executable)
    assert {a, b} <= _ports_in(portbell("ls", check=True).stdout)
    assert _ports_in(portbell("ls", "--port", str(a), check=True).stdout) == {a}
    assert _ports_in(portbell("ls", "--port", f"{a},{b}", check=True).stdout) == {a, b}
    low, high = sorted((a, b))
    assert {a, b} <= _ports_in(portbell("ls", "--port", f"{low}-{high}", check=True).stdout)
    assert {a, b} <= _ports_in(portbell("ls", "--port", f"{a},{b}", "--process", exe, "--user", me, "--exposure", "loopback", check=True).stdout)
    assert portbell("ls", "--port", str(a), "--process", os.path.dirname(exe), check=True).stdout.startswith("Nothing listens")
    assert portbell("ls", "--port", str(a), "--user", "65534", check=True).stdout.startswith("Nothing listens")
    assert portbell("ls", "--port", str(a), "--exposure", "all-interfaces", check=True).stdout.startswith("Nothing listens")
    assert portbell("ls", "--port", str(a), "--unit", "no-such-unit-*", check=True).stdout.startswith("Nothing listens")
    assert portbell("ls", "--port", "a-b").returncode == 2


def test_watch_prints_only_what_its_filter_names():
    from test_cli import Lines

    reserved = socket.socket()  # bound, not listening: its port is ours, and nobody's listener yet
    reserved.bind(("127.0.0.1", 0))
    port = reserved.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "portbell.daemon", "watch", "--json", "--interval", "0.2", "--port", str(port),
                             "--exposure", "loopback", "--process", os.path.realpath(sys.executable), "--user", str(os.getuid())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    other = socket.socket()
    try:
        proc.stderr.readline()  # the baseline is taken
        other.bind(("127.0.0.1", 0))
        other.listen()  # opens first: it would be printed first, were it not filtered out
        reserved.listen()
        lines = Lines(proc)
        first = json.loads(lines.next(10))
        assert (first["kind"], first["listener"]["port"]) == ("opened", port)
    finally:
        other.close()
        reserved.close()
        proc.terminate()
        proc.wait(10)


def test_events_process_matches_the_name_or_the_exact_exe_never_a_substring(utc):
    write_record((NOW, _li(8001, PY), "new", True), (NOW, _li(8002, HELPER), "new", True))

    def ports(*args):
        done = portbell("events", "--json", *args)
        return sorted(json.loads(line)["listener"]["port"] for line in done.stdout.splitlines())

    assert ports("--process", "python3") == [8001]
    assert ports("--process", "/root/venv/bin/python3") == [8001]
    assert ports("--process", "root") == []  # once: every exe under /root, and root-helper
    assert ports("--process", "/root") == []
    assert ports("--process", "root-helper") == [8002]


def test_events_with_no_match_exit_1_like_history(utc):
    write_record((NOW, _li(8001), "new", True))
    done = portbell("events", "--port", "9")
    assert (done.returncode, done.stdout) == (1, "") and "No events" in done.stderr
    assert portbell("history", "9").returncode == 1


# ------------------------------------------------------------------ 5. colour


def _under_pty(*args: str, env: dict | None = None) -> str:
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "portbell.daemon", *args], stdout=follower, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the other side closed: EIO
            break
        if not chunk:
            break
        out += chunk
    proc.wait(30)
    os.close(leader)
    return out.decode()


@pytest.fixture
def coloured_env(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")


def test_ls_on_a_terminal_colours_the_exposure(sockets, coloured_env):
    wild = sockets(address="0.0.0.0").getsockname()[1]
    loop = sockets().getsockname()[1]
    out = _under_pty("ls", "--port", f"{wild},{loop}")
    assert "\x1b[2mloopback" in out and "\x1b[31mall-interfaces" in out, out
    assert "\x1b" not in portbell("ls", "--port", f"{wild},{loop}").stdout  # a pipe: no colour


def test_no_color_and_never_turn_colour_off_and_always_forces_it(sockets, coloured_env):
    port = sockets().getsockname()[1]
    assert "\x1b" not in _under_pty("ls", "--port", str(port), env={"NO_COLOR": "1"})
    assert "\x1b" not in _under_pty("ls", "--port", str(port), "--color", "never")
    assert "\x1b[2mloopback" in portbell("ls", "--port", str(port), "--color", "always").stdout


def test_alerts_are_bold_on_a_terminal(utc, coloured_env):
    write_record((NOW, _li(8001), "first time this program listens, on loopback", True), (NOW, _li(8002), "loopback, seen before", False))
    lines = _under_pty("events").splitlines()
    assert lines[0].startswith("\x1b[1m") and "! first time" in lines[0]
    assert not lines[1].startswith("\x1b[1m")


# ------------------------------------------------------------------ 7. help and small things


def _actions(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {n}", a) for n, a in _actions(sub))
        elif not isinstance(action, argparse._HelpAction):
            yield (action.dest, action)


def test_every_option_and_argument_has_help_text():
    from portbell.daemon.cli import build_parser

    missing = [name for name, action in _actions(build_parser()) if not action.help]
    assert missing == []


def test_the_main_help_says_what_portbell_alone_does_and_v_works_everywhere():
    text = portbell("--help", check=True).stdout
    flat = " ".join(text.split())
    assert "the tray when there is a desktop" in flat and "otherwise the daemon in the foreground" in flat
    assert portbell("-V", check=True).stdout.startswith("portbell ")
    assert portbell("ls", "-v", "--port", "1", check=True).returncode == 0
    assert portbell("status", "--verbose").returncode in (0, 1)


def test_watch_interval_takes_the_configs_range():
    assert portbell("watch", "--interval", "0.05").returncode == 2
    assert portbell("watch", "--interval", "3601").returncode == 2
    assert "0.1 to 3600" in portbell("watch", "--help").stdout.replace("\n", " ")


def test_event_columns_fit_the_widest_exposure(utc):
    dual = _li(22, address="::", exposure=Exposure.ALL_INTERFACES, dual=True, family=6)
    write_record((NOW, dual, "new", True), (NOW, _li(8001), "new", True))
    lines = portbell("events", check=True).stdout.splitlines()
    assert lines[0].index("python3 (4242)") == lines[1].index("python3 (4242)")


def test_event_lines_say_which_rule_trusted_or_muted_them(utc):
    trust = Rule("trust", ports=(8001, 8001), id=3)
    mute = Rule("mute", ports=(8002, 8002), id=4)
    write_record(
        (NOW, _li(8001), f"trusted by {trust.describe()}", False),
        (NOW, _li(8002), f"muted by {mute.describe()}", False),
        (NOW, _li(8003), "trusted by a config rule (trust port 8003)", False),
    )
    lines = portbell("events", check=True).stdout.splitlines()
    assert lines[0].endswith("(trusted by rule 3)") and lines[1].endswith("(muted by rule 4)")
    assert lines[2].endswith("(trusted by a config rule)")


def test_a_config_file_that_does_not_exist_is_an_error(home, tmp_path):
    for args in (("config", "check"), ("config", "show"), ("daemon", "--interval", "0.2"), ("trust",)):
        done = portbell(*args, "--config", str(tmp_path / "typo.toml"))
        assert done.returncode == 2 and "no such file" in done.stderr and "Traceback" not in done.stderr, args
    assert portbell("config", "path", "--config", str(tmp_path / "typo.toml"), check=True).stdout.strip().endswith("typo.toml")


def test_config_check_prints_problems_in_line_order(home, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[rule]]\naction = "allow"\n\n[daemon]\ninterval_s = 0\n\n[notify]\nloopback = "sometimes"\n')
    done = portbell("config", "check", "--config", str(path))
    assert done.returncode == 2
    lines = [int(m) for m in re.findall(rf"{re.escape(str(path))}:(\d+):", done.stderr)]
    assert len(lines) == 3 and lines == sorted(lines), done.stderr


def test_trust_alone_lists_the_configs_rules_too_and_marks_expired_ones(home):
    from portbell.daemon import paths
    from portbell.daemon.record import Store

    (home / "config.toml").write_text('[[rule]]\naction = "trust"\nport = 22\n\n[[rule]]\naction = "mute"\nport = 23\nuntil = 2020-01-01T00:00:00Z\n')
    store = Store.open(paths.database())
    try:
        store.add_decision(Rule("mute", ports=(8000, 8000), until=NOW - timedelta(hours=1), source="cli"))
        store.add_decision(Rule("trust", ports=(9000, 9000), source="cli"))
    finally:
        store.close()
    lines = portbell("trust", check=True).stdout.splitlines()
    assert any("mute port 8000" in line and line.endswith("(expired)") for line in lines), lines
    assert any("trust port 9000" in line and not line.endswith("(expired)") for line in lines)
    assert any(line.lstrip().startswith("c1 ") and "trust port 22" in line and "[config]" in line for line in lines)
    assert any(line.lstrip().startswith("c2 ") and "mute port 23" in line and line.endswith("(expired)") for line in lines)


def test_trust_and_mute_take_a_unit(home):
    done = portbell("trust", "--unit", "cups.service", check=True)
    assert "unit cups.service" in done.stdout
    assert "unit cups.service" in portbell("trust", check=True).stdout
    muted = portbell("mute", "--unit", "app-*", check=True).stdout
    assert muted.startswith("muted: rule 2 (mute unit app-*)"), muted  # once "muteed"; the glob kept as typed
    assert "unit app-*" in portbell("mute", check=True).stdout


def test_a_record_from_before_unit_decisions_keeps_its_decisions(home):
    import sqlite3

    from portbell.daemon import paths
    from portbell.daemon.record import Store
    from portbell.daemon.record.schema import APPLICATION_ID, MIGRATIONS

    path = paths.database()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[1])
    conn.execute("INSERT INTO decisions (action, port_low, port_high, source, created_at) VALUES ('trust', 22, 22, 'cli', 0)")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = Store.open(path)
    try:
        (old,) = store.decisions()
        assert (old.action, old.ports, old.unit) == ("trust", (22, 22), None)
        store.add_decision(Rule("mute", unit="cups.service", source="cli"))
        assert store.decisions()[1].unit == "cups.service"
    finally:
        store.close()


def test_status_tells_when_the_daemon_last_sampled_not_when_it_last_beat(home):
    from test_daemon import DaemonProc

    d = DaemonProc("--interval", "0.2", folder=home)
    try:
        def ahead():
            done = portbell("status", "--json")
            data = json.loads(done.stdout)
            if not data["running"] or not data["daemon"] or not data["last_sample_at"]:
                return None
            beat = datetime.fromisoformat(data["daemon"]["heartbeat_at"])
            sampled = datetime.fromisoformat(data["last_sample_at"].replace("Z", "+00:00"))
            return sampled - beat > timedelta(seconds=1)  # samples every 0.2 s; beats every 15 s

        wait_for(ahead, timeout=14, what="a last sample later than the heartbeat")
        text = portbell("status", check=True).stdout
        assert re.search(r"last sample  .*\((\d)s ago\) \(every 0\.2s\)", text), text
    finally:
        d.stop()


def test_status_prints_the_samplers_notes_from_the_heartbeat(home):
    from portbell.daemon import paths
    from portbell.daemon.config import Config
    from portbell.daemon.record import Store
    from portbell.daemon.service import Daemon, InstanceLock

    class Noting:
        name, notes = "noting", ["no Engine API: containers have no names (add yourself to the docker group)"]

        def sample(self):
            return snapshot_of([], datetime.now(timezone.utc), sampler="noting")

        def close(self):
            pass

    lock = InstanceLock(paths.lock_file())
    lock.acquire()  # this process is the running daemon
    store = Store.open(paths.database())
    try:
        daemon = Daemon(store=store, sampler=Noting(), config=Config(), config_path=None)
        daemon.step()
        daemon.close()
        out = portbell("status").stdout
    finally:
        store.close()
        lock.release()
    assert "  note         no Engine API: containers have no names (add yourself to the docker group)" in out, out
