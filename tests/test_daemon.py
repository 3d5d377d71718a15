"""The daemon for real: child processes, real SQLite, signals, kill -9."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import LINUX, wait_for


class DaemonProc:
    """`portbell daemon` as a child; its output goes to files, so a chatty daemon never blocks on a full pipe."""

    count = 0

    def __init__(self, *args, env=None, folder: Path):
        DaemonProc.count += 1
        self.out_path = folder / f"daemon-{DaemonProc.count}.out"
        self.err_path = folder / f"daemon-{DaemonProc.count}.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "portbell.daemon", "daemon", *args],
                stdout=out,
                stderr=err,
                text=True,
                env={**os.environ, **(env or {})},
            )
        self.pid = self.proc.pid

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(timeout=20)
        return self.proc.returncode, self.out_path.read_text(), self.err_path.read_text()


@pytest.fixture
def daemon(home):
    made: list[DaemonProc] = []

    def start(*args, **kw):
        d = DaemonProc(*args, folder=home, **kw)
        made.append(d)
        return d

    yield start
    for d in made:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(timeout=10)


def db(home) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{home / 'state' / 'portbell.db'}?mode=ro", uri=True)


def events(home, where="1=1", args=()):
    try:
        with db(home) as conn:
            return conn.execute(f"SELECT kind, port, alert, reason, baseline, found_at_start FROM events WHERE {where} ORDER BY id", args).fetchall()
    except sqlite3.OperationalError:
        return []


def recorded(home, port):
    return events(home, "port = ?", (port,))


def sampled_once(home):
    return wait_for(lambda: events(home, "baseline = 1") or None, timeout=15, what="the daemon's baseline")


def listen(address="127.0.0.1"):
    s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    s.bind((address, 0))
    s.listen()
    return s


# ------------------------------------------------------------------ lifecycle


def test_first_start_records_a_silent_baseline_then_alerts_on_news(daemon, home):
    before = listen("127.0.0.1")
    d = daemon("--interval", "0.2", "--json")
    sampled_once(home)
    (row,) = recorded(home, before.getsockname()[1])
    assert row == ("opened", before.getsockname()[1], 0, "baseline: listening when portbell first started", 1, 0)
    after = listen("0.0.0.0")
    port = after.getsockname()[1]
    kind, _, alert, reason, baseline, found = wait_for(lambda: recorded(home, port) and recorded(home, port)[0])
    assert (kind, alert, baseline, found) == ("opened", 1, 0, 0) and "all-interfaces" in reason
    after.close()
    wait_for(lambda: len(recorded(home, port)) == 2)
    assert recorded(home, port)[1][:3] == ("closed", port, 0)
    code, out, err = d.stop()
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert any(e["listener"]["port"] == port and e["kind"] == "opened" and e["alert"] for e in lines)
    before.close()


def test_restart_reports_what_changed_while_it_was_down(daemon, home):
    stays, goes = listen(), listen()
    d = daemon("--interval", "0.2")
    sampled_once(home)
    d.stop()
    goes_port = goes.getsockname()[1]
    goes.close()
    new = listen("0.0.0.0")
    d = daemon("--interval", "0.2")
    new_port = new.getsockname()[1]
    wait_for(lambda: len(recorded(home, new_port)) == 1 and len(recorded(home, goes_port)) == 2, what="the restart diff")
    assert recorded(home, new_port)[0][0] == "opened" and recorded(home, new_port)[0][5] == 1  # found_at_start
    assert recorded(home, goes_port)[1][0] == "closed"
    assert len(recorded(home, stays.getsockname()[1])) == 1  # unchanged: nothing new
    d.stop()
    stays.close()
    new.close()


def test_second_instance_exits_non_zero_naming_the_pid(daemon, home):
    first = daemon("--interval", "0.5")
    sampled_once(home)
    second = subprocess.run([sys.executable, "-m", "portbell.daemon", "daemon"], capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert f"already running (pid {first.pid}" in second.stderr
    first.stop()


def test_sigterm_stops_cleanly_and_status_tells(daemon, home):
    d = daemon("--interval", "30")
    sampled_once(home)
    status = subprocess.run([sys.executable, "-m", "portbell.daemon", "status", "--json"], capture_output=True, text=True)
    doc = json.loads(status.stdout)
    assert status.returncode == 0 and doc["running"] is True and doc["pid"] == d.pid
    from portbell.daemon.samplers import create

    here = create(doc["daemon"]["sampler"])  # the same sampler, as the same user, on the same machine
    try:
        assert doc["daemon"]["complete"] is here.sample().complete
    finally:
        here.close()
    started = time.monotonic()
    code, _, err = d.stop(signal.SIGTERM)
    assert code == 0 and time.monotonic() - started < 10 and "Traceback" not in err
    status = subprocess.run([sys.executable, "-m", "portbell.daemon", "status"], capture_output=True, text=True)
    assert status.returncode == 1 and "not running" in status.stdout


def test_the_daemon_never_holds_an_inet_socket(daemon, home):
    d = daemon("--interval", "0.2")
    sampled_once(home)
    proc = psutil.Process(d.pid)
    assert proc.net_connections(kind="inet") == []
    kinds = {c.family for c in proc.net_connections(kind="all")}
    assert not kinds & {socket.AF_INET, socket.AF_INET6}
    d.stop()


@pytest.mark.skipif(not LINUX, reason="sd_notify is systemd's")
def test_readiness_and_watchdog_go_to_notify_socket(daemon, home):
    path = str(home / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(15)
        # a long interval: the watchdog must still be fed every half period while the daemon waits
        d = daemon("--interval", "30", env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        got = []
        while not ("READY=1" in got and got.count("WATCHDOG=1") >= 3):
            got.append(sock.recv(256).decode())
        d.stop()
        sock.settimeout(0)
        rest = []
        while True:
            try:
                rest.append(sock.recv(256).decode())
            except BlockingIOError:
                break
        assert rest[-1] == "STOPPING=1"


def test_sighup_reloads_and_a_bad_config_keeps_the_old_one(daemon, home):
    config = home / "config.toml"
    config.write_text('[notify]\nloopback = "always"\n')
    d = daemon("--interval", "0.2")
    sampled_once(home)
    a = listen()
    wait_for(lambda: recorded(home, a.getsockname()[1]))
    assert recorded(home, a.getsockname()[1])[0][2] == 1  # always
    config.write_text('[notify]\nloopback = "sometimes"\n')  # invalid
    d.proc.send_signal(signal.SIGHUP)
    b = listen()
    wait_for(lambda: recorded(home, b.getsockname()[1]))
    assert recorded(home, b.getsockname()[1])[0][2] == 1  # the old config still rules
    config.write_text('[notify]\nloopback = "never"\n')
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while True:  # the reload lands within a poll or two
        c = listen()
        row = wait_for(lambda: recorded(home, c.getsockname()[1]))
        if row[0][2] == 0:
            break
        assert time.monotonic() < deadline, "the valid config was never applied"
    code, _, err = d.stop()
    assert "invalid; keeping the previous one" in err and "loopback" in err
    for s in (a, b, c):
        s.close()


def test_trust_from_the_command_line_silences_the_daemon(daemon, home):
    d = daemon("--interval", "0.2")
    sampled_once(home)
    probe = listen("0.0.0.0")
    port = probe.getsockname()[1]
    wait_for(lambda: recorded(home, port))
    probe.close()
    out = subprocess.run([sys.executable, "-m", "portbell.daemon", "trust", str(port + 1)], capture_output=True, text=True)
    assert out.returncode == 0 and "forget" in out.stdout
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", port + 1))
    except OSError:
        pytest.skip("the neighbouring port is taken")
    s.listen()
    (row,) = wait_for(lambda: recorded(home, port + 1))
    assert row[2] == 0 and row[3].startswith("trusted by rule 1")
    s.close()
    d.stop()


# ------------------------------------------------------------------ kill -9


BURST = """
import socket, sys, time
socks = []
for i in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1); socks.append(s)
    if i % 50 == 49:
        time.sleep(0.05)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
sys.stdin.read()
"""


def test_kill_9_during_a_burst_loses_nothing_and_repeats_nothing(daemon, home):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1100:
        pytest.skip("the file descriptor limit is too low for 1,000 listeners")
    d = daemon("--interval", "0.1", "--quiet")
    sampled_once(home)
    burst = subprocess.Popen(
        [sys.executable, "-c", f"import resource; resource.setrlimit(resource.RLIMIT_NOFILE, ({min(hard, 4096)}, {hard}))\n" + BURST, "1000"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        for round_ in range(3):  # pull the plug at several points of the burst, restart each time
            wait_for(lambda: len(events(home, "baseline = 0 AND kind = 'opened'")) > 100 * (round_ + 1), timeout=30, what="the burst under way")
            d.proc.kill()
            d.proc.wait()
            d = daemon("--interval", "0.1", "--quiet")
        ports = [int(p) for p in burst.stdout.readline().split()]
        assert len(ports) == 1000
        wanted = set(ports)

        def all_recorded():  # the burst's own listeners: other processes may come and go meanwhile
            with db(home) as conn:
                rows = conn.execute(
                    # `changed`: a port another process (other tests on this machine) let go of
                    # and the burst took within one poll is the same key with a new owner
                    "SELECT port FROM events WHERE kind IN ('opened', 'changed') AND transport = 'tcp' AND address = '127.0.0.1'"
                    " AND json_extract(listener, '$.owners[0].pid') = ?",
                    (burst.pid,),
                ).fetchall()
            got = [p for (p,) in rows]
            return len(set(got)) == len(wanted) and got

        got = wait_for(all_recorded, timeout=60, interval=0.2, what="every listener of the burst")
        assert sorted(got) == sorted(ports)  # exactly once each
        d.stop()
    finally:
        burst.stdin.close()
        burst.wait(timeout=30)


# ------------------------------------------------------------------ the record from the command line


def cli(*args):
    return subprocess.run([sys.executable, "-m", "portbell.daemon", *args], capture_output=True, text=True, timeout=60)


def test_events_history_and_decisions_from_the_command_line(daemon, home):
    d = daemon("--interval", "0.2")
    sampled_once(home)
    s = listen("0.0.0.0")
    port = s.getsockname()[1]
    wait_for(lambda: recorded(home, port))
    s.close()
    wait_for(lambda: len(recorded(home, port)) == 2)

    out = cli("events", "--since", "1h", "--port", str(port), "--json")
    kinds = [json.loads(line)["kind"] for line in out.stdout.splitlines()]
    assert out.returncode == 0 and kinds == ["opened", "closed"]
    first = json.loads(out.stdout.splitlines()[0])
    assert {"version", "kind", "at", "listener", "previous", "alert", "reason", "baseline", "found_at_start", "id"} <= set(first)
    assert cli("events", "--since", "yesterday-ish").returncode == 2

    out = cli("history", str(port))
    assert out.returncode == 0 and f"0.0.0.0:{port}" in out.stdout and "python" in out.stdout
    assert cli("history", "1").returncode == 1

    muted = cli("mute", "node", "--for", "8h")
    assert muted.returncode == 0
    assert muted.stdout.startswith("muted: rule 1 (mute program node, until ") and "Undo with `portbell forget 1`." in muted.stdout
    listed = cli("trust").stdout
    assert "mute program node" in listed and "[cli]" in listed
    assert cli("forget", "1").returncode == 0 and cli("forget", "1").returncode == 1
    assert cli("mute", "--for", "8 parsecs", "node").returncode == 2
    d.stop()


def test_events_follow_prints_what_the_daemon_commits(daemon, home):
    d = daemon("--interval", "0.2")
    sampled_once(home)
    follower = subprocess.Popen([sys.executable, "-m", "portbell.daemon", "events", "--follow", "--json"], stdout=subprocess.PIPE, text=True)
    try:
        s = listen("0.0.0.0")
        port = s.getsockname()[1]
        from test_cli import Lines

        lines = Lines(follower)
        while True:
            ev = json.loads(lines.next(10))
            if ev["listener"]["port"] == port:
                break
        assert ev["kind"] == "opened" and isinstance(ev["alert"], bool) and ev["reason"]
        s.close()
    finally:
        follower.terminate()
        follower.wait(timeout=10)
    d.stop()


def test_events_follow_goes_on_in_the_new_record_when_a_damaged_one_was_moved_aside(daemon, home):
    d = daemon("--interval", "0.2")
    sampled_once(home)
    follower = subprocess.Popen([sys.executable, "-m", "portbell.daemon", "events", "--follow", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        from test_cli import Lines

        lines = Lines(follower)
        time.sleep(0.5)  # the follower is past its first query, on the first record
        assert d.stop()[0] == 0
        record = home / "state" / "portbell.db"
        with open(record, "r+b") as f:  # bad luck: the first page is gone; the next start moves it aside
            f.write(b"\xff" * 4096)
        d = daemon("--interval", "0.2")
        wait_for(lambda: list(record.parent.glob("portbell.db.broken-*")), what="the damaged record moved aside")
        s = listen("0.0.0.0")
        port = s.getsockname()[1]
        while True:
            ev = json.loads(lines.next(15))
            if ev["listener"]["port"] == port:
                break
        assert ev["kind"] == "opened"
        s.close()
        assert d.stop()[0] == 0
    finally:
        follower.terminate()
        follower.wait(timeout=10)
    assert follower.returncode in (0, -signal.SIGTERM)
    err = follower.stderr.read()
    assert "replaced by a new one" in err and "Traceback" not in err, err


def test_jsonl_sink_is_written_while_the_daemon_runs(daemon, home):
    target = home / "out" / "events.jsonl"
    (home / "config.toml").write_text(f'[sinks.jsonl]\npath = "{target}"\n')
    d = daemon("--interval", "0.2")
    sampled_once(home)
    wait_for(lambda: target.exists() and target.read_text().count("\n") >= 1, what="the baseline in the JSON lines file")
    seen = target.read_text().count("\n")
    s = listen("0.0.0.0")
    port = s.getsockname()[1]

    def line_for_port():
        with open(target) as f:
            f.seek(0)
            rows = [json.loads(line) for line in f.read().splitlines()[seen:]]
        return [r for r in rows if r["columns"]["port"] == str(port)]

    (row,) = wait_for(line_for_port, what="the new listener in the JSON lines file")
    assert row["action"] == "added" and row["name"] == "portbell_listeners" and row["columns"]["exposure"] == "all-interfaces"
    s.close()
    d.stop()


def test_portbell_alone_runs_the_daemon_or_follows_the_running_one(home, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)  # with a desktop it would be the tray
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    first = subprocess.Popen([sys.executable, "-m", "portbell.daemon"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "portbell daemon (pid" in first.stderr.readline()  # no daemon yet: it is the daemon
        sampled_once(home)
        second = subprocess.Popen([sys.executable, "-m", "portbell.daemon"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert "following the daemon's record" in second.stderr.readline()
        finally:
            second.terminate()
            assert second.wait(timeout=10) == 0
    finally:
        first.terminate()
        assert first.wait(timeout=10) == 0


def test_records_a_crash_kept_from_the_sinks_reach_them_at_the_next_start(daemon, home):
    blocker = home / "out"
    blocker.write_text("a file where the sink wants a folder: every write fails")
    target = blocker / "events.jsonl"
    (home / "config.toml").write_text(f'[sinks.jsonl]\npath = "{target}"\n')
    d = daemon("--interval", "0.2")
    sampled_once(home)
    s = listen("0.0.0.0")
    port = s.getsockname()[1]
    wait_for(lambda: recorded(home, port), what="the listener in the record")
    d.proc.kill()  # the sink still owes it; no chance to say goodbye
    d.proc.wait()
    blocker.unlink()
    blocker.mkdir()
    d = daemon("--interval", "0.2")

    def delivered():
        if not target.exists():
            return None
        rows = [json.loads(line) for line in target.read_text().splitlines()]
        return [r for r in rows if r["columns"]["port"] == str(port) and r["action"] == "added"]

    assert len(wait_for(delivered, what="the owed record in the JSON lines file")) == 1
    s.close()
    d.stop()
