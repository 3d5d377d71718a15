"""Sinks against the real things: files, a real rsyslogd on a private socket, real hook processes,
Prometheus' own parser. Fakes only at the Dispatcher's seam (a sink that records, one that raises)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

from portbell.daemon import sinks
from portbell.daemon.addresses import classify
from portbell.daemon.model import Event, EventKind, Listener, Owner, Recorded, Transport, snapshot_of
from portbell.daemon.sinks import Dispatcher, SinkError
from portbell.daemon.sinks._common import sentence
from portbell.daemon.sinks._hook import HookSink
from portbell.daemon.sinks._jsonl import JsonLinesSink
from portbell.daemon.sinks._prometheus import PrometheusSink
from portbell.daemon.sinks._syslog import SyslogSink, sd_escape, structured_data

from conftest import is_root, stop_process, wait_for

AT = datetime(2026, 11, 26, 9, 0, 5, tzinfo=timezone.utc)


# ------------------------------------------------------------------ building records from the model


def owner(pid=4242, name="python3", uid=1000, user="ana", cmdline=("python3", "app.py"), exe="/usr/bin/python3"):
    return Owner(pid=pid, uid=uid, name=name, exe=exe, cmdline=cmdline, user=user, started_at=AT)


def listener(port=8000, address="0.0.0.0", transport="tcp", owners=None, dual_stack=False):
    return Listener(
        Transport(transport),
        6 if ":" in address else 4,
        address,
        port,
        classify(address),
        dual_stack=dual_stack,
        owners=(owner(),) if owners is None else tuple(owners),
    )


def recorded(id, kind="opened", li=None, previous=None, alert=True, reason="not trusted", at=AT, **flags):
    event = Event(EventKind(kind), at, li or listener(), previous=previous)
    return Recorded(id, event, alert, reason, **flags)


def snap(*listeners, complete=True):
    return snapshot_of(listeners, AT, complete=complete, sampler="test")


@pytest.fixture
def short_dir():
    """A directory with a short path: AF_UNIX socket paths are limited to about 100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="pb-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ JSON lines


def read_lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def ids(path):
    """The record ids of the lines, in order (`counter` is the run's, `columns.id` the record's)."""
    return [int(r["columns"]["id"]) if "columns" in r else None for r in read_lines(path)]


def test_jsonl_writes_one_osquery_row_per_record_with_string_columns(tmp_path):
    sink = JsonLinesSink(tmp_path / "events.jsonl", host="ana-laptop")
    sink.emit([recorded(7, "opened"), recorded(8, "closed", li=listener(53, "127.0.0.1", "udp"), alert=False, reason="closed")], snap())
    sink.close()
    added, removed = read_lines(tmp_path / "events.jsonl")
    assert set(added) == {"name", "hostIdentifier", "calendarTime", "unixTime", "epoch", "counter", "numerics", "decorations", "action", "columns"}
    assert (added["name"], added["hostIdentifier"], added["epoch"], added["numerics"]) == ("portbell_listeners", "ana-laptop", 0, False)
    assert (added["action"], added["counter"], added["unixTime"]) == ("added", 7, int(AT.timestamp()))
    assert added["calendarTime"] == "Thu Nov 26 09:00:05 2026 UTC"
    cols = added["columns"]
    assert all(isinstance(v, str) for v in cols.values())
    assert cols["transport"] == "tcp" and cols["address"] == "0.0.0.0" and cols["port"] == "8000"
    assert cols["exposure"] == "all-interfaces" and cols["family"] == "4" and cols["dual_stack"] == "0"
    assert cols["pid"] == "4242" and cols["name"] == "python3" and cols["cmdline"] == "python3 app.py"
    assert cols["user"] == "ana" and cols["uid"] == "1000" and cols["kind"] == "opened"
    assert cols["alert"] == "1" and cols["reason"] == "not trusted"
    assert (removed["action"], removed["columns"]["id"]) == ("removed", "8")
    assert removed["counter"] == 7  # one sample (the same event time): one run, one counter
    assert removed["columns"]["transport"] == "udp" and removed["columns"]["exposure"] == "loopback"
    assert removed["columns"]["alert"] == "0"


def test_jsonl_change_is_a_removed_row_of_the_previous_state_then_an_added_row(tmp_path):
    before = listener(owners=[owner(pid=100, name="old")])
    after = listener(owners=[owner(pid=200, name="new"), owner(pid=201, name="new")])
    sink = JsonLinesSink(tmp_path / "e.jsonl", host="h")
    sink.emit([recorded(3, "changed", li=after, previous=before)], snap(after))
    rows = read_lines(tmp_path / "e.jsonl")
    assert [(r["action"], r["columns"]["pid"], r["columns"]["name"]) for r in rows] == [("removed", "100", "old"), ("added", "200", "new")]
    assert rows[1]["columns"]["pids"] == "200,201" and rows[1]["columns"]["owners"] == "2"
    assert {r["counter"] for r in rows} == {3} and {r["columns"]["kind"] for r in rows} == {"changed"}


def test_jsonl_unknown_owner_fields_are_empty_strings_and_odd_names_stay_one_line(tmp_path):
    odd = listener(owners=[Owner(pid=None, uid=0, user="root")])
    weird = listener(9000, owners=[owner(name="evil\nname", cmdline=("a b", '"q"'))])
    sink = JsonLinesSink(tmp_path / "e.jsonl", host="h")
    sink.emit([recorded(1, li=odd), recorded(2, li=weird)], snap())
    first, second = read_lines(tmp_path / "e.jsonl")  # exactly two lines: the newline in the name was escaped
    assert first["columns"]["pid"] == "" and first["columns"]["name"] == "" and first["columns"]["uid"] == "0"
    assert second["columns"]["name"] == "evil\nname"


def test_jsonl_file_is_created_private_whatever_the_umask(tmp_path):
    path = tmp_path / "state" / "portbell" / "events.jsonl"
    old = os.umask(0)
    try:
        JsonLinesSink(path, host="h").emit([recorded(1)], snap())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_jsonl_appends_and_reopens_a_new_file_after_logrotate_moves_it_away(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"earlier": true}\n')
    sink = JsonLinesSink(path, host="h")
    sink.emit([recorded(1)], snap())
    path.rename(tmp_path / "events.jsonl.1")  # what logrotate does (without copytruncate)
    sink.emit([recorded(2)], snap())
    assert ids(tmp_path / "events.jsonl.1") == [None, 1]
    assert ids(path) == [2]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()  # removed outright: a new file again
    sink.emit([recorded(3)], snap())
    assert ids(path) == [3]
    path.rename(tmp_path / "events.jsonl.2")  # logrotate's `create`: a new empty file takes the name at once
    path.write_text("")
    sink.emit([recorded(4)], snap())
    assert ids(path) == [4]
    assert ids(tmp_path / "events.jsonl.2") == [3]
    sink.close()


def test_jsonl_poll_without_records_touches_nothing(tmp_path):
    JsonLinesSink(tmp_path / "e.jsonl", host="h").emit([], snap(listener()))
    assert not (tmp_path / "e.jsonl").exists()


def test_jsonl_unwritable_path_raises_sink_error(tmp_path):
    (tmp_path / "blocker").write_text("a file where the directory should be")
    sink = JsonLinesSink(tmp_path / "blocker" / "events.jsonl", host="h")
    with pytest.raises(SinkError) as info:
        sink.emit([recorded(1)], snap())
    assert info.value.sink == "jsonl" and info.value.delivered == 0 and "blocker" in str(info.value)


TORN_WRITE = textwrap.dedent(
    """
    import resource, signal, sys
    from datetime import datetime, timezone
    from portbell.daemon.model import Event, EventKind, Listener, Exposure, Owner, Recorded, Transport
    from portbell.daemon.sinks import SinkError
    from portbell.daemon.sinks._jsonl import JsonLinesSink

    path, limit = sys.argv[1], int(sys.argv[2])
    at = datetime(2026, 11, 26, tzinfo=timezone.utc)
    li = Listener(Transport.TCP, 4, "0.0.0.0", 8000, Exposure.ALL_INTERFACES, owners=(Owner(pid=1, uid=0),))
    records = [Recorded(i, Event(EventKind.OPENED, at, li), True, "x") for i in (1, 2, 3)]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the kernel then fails the write with EFBIG instead
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    sink = JsonLinesSink(path, host="h")
    delivered = None
    try:
        sink.emit(records, None)
    except SinkError as err:
        delivered = err.delivered
    print(delivered)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    sink.emit(records[delivered or 0:], None)  # what the Dispatcher retries
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ behave this way on Linux")
def test_jsonl_write_cut_short_reports_what_got_through_and_never_merges_lines(tmp_path):
    path = tmp_path / "e.jsonl"
    JsonLinesSink(tmp_path / "probe.jsonl", host="h").emit([recorded(1)], None)
    line = len((tmp_path / "probe.jsonl").read_bytes())  # about one line's length
    # a child process, so the file size limit binds nothing of pytest's
    done = subprocess.run([sys.executable, "-c", TORN_WRITE, str(path), str(line + line // 2)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1"]  # the first record got through, the second was cut
    lines = path.read_text().splitlines()
    parsed = []
    for text in lines:
        try:
            parsed.append(int(json.loads(text)["columns"]["id"]))
        except json.JSONDecodeError:
            parsed.append("torn")
    assert parsed == [1, "torn", 2, 3]


# ------------------------------------------------------------------ syslog: a real rsyslogd on a private socket


def _find_rsyslogd() -> str | None:
    found = shutil.which("rsyslogd")
    if found:
        return found
    return next((p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.access(p, os.X_OK)), None)


@pytest.fixture(scope="session")
def rsyslogd():
    """The rsyslogd program; installed with apt-get when missing and we are root, else the tests skip."""
    found = _find_rsyslogd()
    if found:
        return found
    if not is_root() or not shutil.which("apt-get"):
        pytest.skip("rsyslogd is not installed: install the Debian package 'rsyslog' (apt-get install rsyslog)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "rsyslog"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"apt-get install rsyslog failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    found = _find_rsyslogd()
    assert found, "the rsyslog package is installed but rsyslogd is not on the usual paths"
    return found


RSYSLOG_CONF = """\
global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" UseSpecialParser="off" ParseHostname="on" CreatePath="on")
template(name="fields" type="list" option.jsonf="on") {{
  property(outname="raw" name="rawmsg" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="facility" name="syslogfacility" format="jsonf")
  property(outname="severity" name="syslogseverity" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="appname" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="sd" name="structured-data" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
}}
action(type="omfile" file="{out}" template="fields")
"""


class Rsyslog:
    """rsyslogd in the foreground with a private config, pid file, socket and output file."""

    def __init__(self, program: str, folder: Path, conf: str = RSYSLOG_CONF, **options: str) -> None:
        self.program = program
        self.folder = folder
        self.socket = str(folder / "log.sock")
        self.out = folder / "out.jsonl"
        self.conf = folder / "rsyslog.conf"
        (folder / "work").mkdir(exist_ok=True)
        self.conf.write_text(conf.format(work=folder / "work", socket=self.socket, out=self.out, **options))
        self.proc: subprocess.Popen | None = None

    def start(self) -> Rsyslog:
        log = open(self.folder / "rsyslogd.log", "wb")
        self.proc = subprocess.Popen(
            [self.program, "-n", "-f", str(self.conf), "-i", str(self.folder / "rsyslogd.pid")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"rsyslogd exited with {self.proc.returncode}: {(self.folder / 'rsyslogd.log').read_text()}")
            return os.path.exists(self.socket)

        wait_for(ready, what="rsyslogd's socket")
        return self

    def messages(self) -> list[dict]:
        """Our messages as rsyslog parsed them (its own start-up notes left out)."""
        if not self.out.exists():
            return []
        rows = [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]
        return [r for r in rows if "portbell@32473" in r["raw"]]

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)


@pytest.fixture
def rsyslog(rsyslogd, short_dir):
    """An rsyslogd not yet started (call .start()); always stopped and waited for at teardown."""
    server = Rsyslog(rsyslogd, short_dir)
    yield server
    server.stop()
    assert server.proc is None or server.proc.poll() is not None


def test_syslog_rfc5424_message_with_structured_data_reaches_rsyslog(rsyslog):
    rsyslog.start()
    weird = listener(8080, owners=[owner(pid=4343, name='we"ird]na\\me')])
    alert = recorded(11, "opened", li=weird, alert=True, reason="exposed to all interfaces")
    closed = recorded(12, "closed", li=listener(631, "127.0.0.1"), alert=False, reason="closed events never alert")
    sink = SyslogSink(rsyslog.socket, facility="local3", host="ana-laptop")
    sink.emit([alert, closed], snap())
    sink.close()

    first, second = wait_for(lambda: rsyslog.messages() if len(rsyslog.messages()) == 2 else None, what="two messages in rsyslog")
    assert first["version"] == "1" and first["appname"] == "portbell" and first["procid"] == str(os.getpid())
    assert first["hostname"] == "ana-laptop" and first["msgid"] == "opened"
    assert (first["facility"], first["severity"]) == ("19", "4")  # local3, warning: the policy alerts
    assert (second["facility"], second["severity"], second["msgid"]) == ("19", "6", "closed")  # info
    assert first["raw"].startswith("<156>1 2026-11-26T09:00:05.000000Z ana-laptop portbell ")
    # rsyslog found the end of the structured data where we put it: the escapes held
    assert first["sd"] == structured_data(alert)
    assert 'name="we\\"ird\\]na\\\\me"' in first["sd"]
    assert first["sd"].startswith('[portbell@32473 id="11" kind="opened" at="2026-11-26T09:00:05.000000Z" transport="tcp" address="0.0.0.0" port="8080"')
    assert 'exposure="all-interfaces"' in first["sd"] and 'pid="4343"' in first["sd"]
    assert first["msg"].strip() == sentence(alert)
    assert 'we"ird]na\\me (4343) is now listening on tcp 0.0.0.0:8080' in first["msg"]
    assert second["msg"].strip() == sentence(closed)


# mmpstrucdata parses the structured data into $!rfc5424-sd (SD-IDs and names lowercased); the
# input's timestamp options are the ones the README names. One line per message: the time rsyslog
# kept as reported, a tab, the parsed tree as JSON.
RSYSLOG_SD_CONF = """\
global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
module(load="mmpstrucdata")
input(type="imuxsock" Socket="{socket}" UseSpecialParser="off" ParseHostname="on" CreatePath="on" {timestamps})
template(name="parsed" type="string" string="%timereported:::date-rfc3339%\t%$!%\t%rawmsg%\n")
action(type="mmpstrucdata")
action(type="omfile" file="{out}" template="parsed")
"""


def _parsed(server: Rsyslog) -> list[tuple[datetime, dict]]:
    if not server.out.exists():
        return []
    out = []
    for line in server.out.read_text().splitlines():
        reported, tree, raw = line.split("\t", 2)
        if "portbell@32473" in raw:
            out.append((datetime.fromisoformat(reported), json.loads(tree)))
    return out


@pytest.mark.parametrize("timestamps, keeps_header", [("", False), ('IgnoreTimestamp="off" UseSysTimeStamp="off"', True)])
def test_syslog_event_time_reaches_rsyslog_as_structured_data_whatever_the_header_becomes(rsyslogd, short_dir, timestamps, keeps_header):
    server = Rsyslog(rsyslogd, short_dir, RSYSLOG_SD_CONF, timestamps=timestamps).start()
    try:
        late = datetime(2026, 11, 20, 3, 4, 5, 678901, tzinfo=timezone.utc)  # an event handed over days later
        records = [recorded(i, at=late, li=listener(8000 + i)) for i in range(1, 10)]
        sink = SyslogSink(server.socket, host="h")
        sink.emit(records, snap())
        sink.close()
        got = wait_for(lambda: _parsed(server) if len(_parsed(server)) == 9 else None, what="nine parsed messages")
    finally:
        server.stop()
    for reported, tree in got:  # 9 of 9 parsed as RFC 5424 with structured data
        params = tree["rfc5424-sd"]["portbell@32473"]
        assert params["at"] == "2026-11-20T03:04:05.678901Z"
        assert datetime.fromisoformat(params["at"].replace("Z", "+00:00")) == late
        if keeps_header:
            assert reported == late  # with both options off rsyslog keeps the header's time
        else:
            assert abs((reported - late).total_seconds()) > 3600  # the default: the time it arrived
    assert sorted(int(tree["rfc5424-sd"]["portbell@32473"]["id"]) for _, tree in got) == list(range(1, 10))


def test_syslog_without_a_socket_raises_and_the_dispatcher_delivers_once_rsyslog_is_up(rsyslog, caplog):
    clock = Clock()
    sink = SyslogSink(rsyslog.socket, host="h")
    dispatcher = Dispatcher([sink], clock=clock)
    with pytest.raises(SinkError):
        sink.emit([recorded(1)], snap())
    with caplog.at_level(logging.WARNING, logger="portbell.sinks"):
        dispatcher.dispatch([recorded(1)], snap())  # no syslog daemon yet: held, never raised
    assert "sink syslog failed" in caplog.text and rsyslog.socket in caplog.text
    rsyslog.start()
    clock.now += sinks.BACKOFF_MIN_S
    dispatcher.dispatch([recorded(2)], snap())
    got = wait_for(lambda: rsyslog.messages() if len(rsyslog.messages()) == 2 else None, what="both messages")
    assert [m["sd"].split('"')[1] for m in got] == ["1", "2"]  # held first, in order
    assert dispatcher.status()[0]["ok"]
    dispatcher.close()


def test_syslog_reconnects_when_rsyslog_restarts(rsyslog):
    rsyslog.start()
    sink = SyslogSink(rsyslog.socket, host="h")
    sink.emit([recorded(1)], snap())
    wait_for(lambda: len(rsyslog.messages()) == 1, what="the first message")
    rsyslog.stop()
    rsyslog.start()  # a new socket at the same path: the old connection is dead
    sink.emit([recorded(2)], snap())  # no error: it reconnects at once
    sink.close()
    got = wait_for(lambda: rsyslog.messages() if len(rsyslog.messages()) == 2 else None, what="the message after the restart")
    assert [m["sd"].split('"')[1] for m in got] == ["1", "2"]


def test_syslog_falls_back_to_a_stream_socket_with_octet_counting(short_dir):
    path = str(short_dir / "stream.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    received = bytearray()

    def serve():
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    sink = SyslogSink(path, facility="daemon", host="h")
    sink.emit([recorded(5), recorded(6, "closed", alert=False)], snap())
    sink.close()
    thread.join(timeout=10)
    server.close()
    assert not thread.is_alive()
    frames, data = [], bytes(received)
    while data:
        length, space, rest = data.partition(b" ")
        assert space and length.isdigit(), data[:40]
        frames.append(rest[: int(length)])
        data = rest[int(length) :]
    assert len(frames) == 2
    assert frames[0].startswith(b"<28>1 ") and b' id="5" ' in frames[0]  # daemon(3)*8 + warning(4)
    assert frames[1].startswith(b"<30>1 ") and b' id="6" ' in frames[1]  # daemon(3)*8 + info(6)


def test_sd_param_values_escape_quote_backslash_and_bracket():
    assert sd_escape('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert sd_escape("line\nbreak") == "line\\\\nbreak"  # shown as the two characters \n, then escaped


# ------------------------------------------------------------------ exec hook: real child processes

RECORD_STDIN = textwrap.dedent(
    """
    import json, os, sys
    folder, event = sys.argv[1], os.environ["PORTBELL_EVENT_ID"]
    data = {"stdin": sys.stdin.read(), "argv": sys.argv[2:],
            "env": {k: v for k, v in os.environ.items() if k.startswith("PORTBELL_")}}
    with open(os.path.join(folder, event + ".tmp"), "w") as out:
        json.dump(data, out)
    os.replace(os.path.join(folder, event + ".tmp"), os.path.join(folder, event + ".json"))
    """
)


def test_hook_program_gets_the_record_json_on_stdin_and_its_facts_in_the_environment(tmp_path):
    hook = HookSink([sys.executable, "-c", RECORD_STDIN, str(tmp_path)])
    record = recorded(21, "opened", li=listener(8443, "::", dual_stack=True))
    hook.emit([record], snap())
    out = wait_for(lambda: (tmp_path / "21.json").exists() and json.loads((tmp_path / "21.json").read_text()), what="the hook's output")
    hook.close()
    assert json.loads(out["stdin"]) == record.to_dict()
    assert out["stdin"].endswith("\n")
    assert out["env"]["PORTBELL_EVENT_KIND"] == "opened" and out["env"]["PORTBELL_PORT"] == "8443"
    assert out["env"]["PORTBELL_EXPOSURE"] == "all-interfaces" and out["env"]["PORTBELL_PID"] == "4242"
    assert hook.succeeded == 1 and hook.failed == 0


def test_hook_argv_is_never_given_to_a_shell(tmp_path):
    trap = [f"$(touch {tmp_path}/pwned)", f"; touch {tmp_path}/pwned2", "*"]
    hook = HookSink([sys.executable, "-c", RECORD_STDIN, str(tmp_path), *trap])
    hook.emit([recorded(1)], snap())
    out = wait_for(lambda: (tmp_path / "1.json").exists() and json.loads((tmp_path / "1.json").read_text()), what="the hook's output")
    hook.close()
    assert out["argv"] == trap
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()


def test_hook_runs_only_for_alerts_by_default(tmp_path):
    hook = HookSink([sys.executable, "-c", RECORD_STDIN, str(tmp_path)], max_concurrent=1)
    hook.emit([recorded(1, alert=False, reason="loopback, program seen before"), recorded(2, alert=True)], snap())
    wait_for(lambda: (tmp_path / "2.json").exists(), what="the alert's hook")
    hook.close()
    # one worker runs in order: had the quiet record been queued, its output would be there first
    assert not (tmp_path / "1.json").exists() and hook.started == 1

    everything = HookSink([sys.executable, "-c", RECORD_STDIN, str(tmp_path)], only_alerts=False)
    everything.emit([recorded(3, alert=False)], snap())
    wait_for(lambda: (tmp_path / "3.json").exists(), what="the quiet record's hook with only_alerts off")
    everything.close()


SLEEPER = textwrap.dedent(
    """
    import os, subprocess, sys, time
    folder = sys.argv[1]
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(os.path.join(folder, "pids.tmp"), "w") as out:
        out.write(f"{os.getpid()} {grandchild.pid}")
    os.replace(os.path.join(folder, "pids.tmp"), os.path.join(folder, "pids"))
    time.sleep(120)
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_hook_past_its_timeout_is_killed_with_its_children_and_logged(tmp_path, caplog):
    hook = HookSink([sys.executable, "-c", SLEEPER, str(tmp_path)], timeout_s=0.5)
    with caplog.at_level(logging.WARNING, logger="portbell.sinks"):
        hook.emit([recorded(31)], snap())
        pids = wait_for(lambda: (tmp_path / "pids").exists() and [int(p) for p in (tmp_path / "pids").read_text().split()], what="the hook's pids")
        wait_for(lambda: all(_gone(p) for p in pids), what="the hook and its child to be killed")
        wait_for(lambda: hook.timeouts == 1 and hook.running == 0, what="the sink to count the timeout")
    hook.close()
    assert "timeout" in caplog.text and "event 31" in caplog.text


CONCURRENT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    folder, event = Path(sys.argv[1]), os.environ["PORTBELL_EVENT_ID"]
    (folder / f"start-{event}").touch()
    running = len(list(folder.glob("start-*"))) - len(list(folder.glob("done-*")))
    (folder / f"seen-{event}").write_text(str(running))
    deadline = time.monotonic() + 30
    while not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    (folder / f"done-{event}").touch()
    """
)


def test_hook_never_runs_more_than_max_concurrent_at_once(tmp_path):
    hook = HookSink([sys.executable, "-c", CONCURRENT, str(tmp_path)], max_concurrent=2)
    hook.emit([recorded(i) for i in range(1, 7)], snap())
    wait_for(lambda: len(list(tmp_path.glob("start-*"))) == 2, what="two hooks to start")
    assert hook.running == 2 and hook.queued == 4  # the loop was not held: the rest wait in the sink
    assert len(list(tmp_path.glob("start-*"))) == 2
    (tmp_path / "release").touch()
    wait_for(lambda: len(list(tmp_path.glob("done-*"))) == 6 and hook.running == 0 and hook.queued == 0, what="all six runs")
    hook.close()
    seen = [int(p.read_text()) for p in tmp_path.glob("seen-*")]
    assert len(seen) == 6 and max(seen) == 2


def test_hook_queue_is_bounded_and_the_rest_waits_in_the_record_not_dropped(tmp_path):
    record = [recorded(i) for i in range(1, 7)]
    hook = HookSink([sys.executable, "-c", CONCURRENT, str(tmp_path)], max_concurrent=1, max_queued=2)
    dispatcher = Dispatcher([hook], source=lambda after, limit: [r for r in record if r.id > after][:limit])
    dispatcher.dispatch(record, snap())
    wait_for(lambda: (tmp_path / "start-1").exists(), what="the first run")
    assert hook.queued <= 2 and dispatcher.cursors() == {"hook": 0}  # nothing finished yet
    (tmp_path / "release").touch()

    def all_done():
        dispatcher.dispatch([], snap())  # each poll hands the hook what it has room for
        return len(list(tmp_path.glob("done-*"))) == 6 and dispatcher.cursors() == {"hook": 6}

    wait_for(all_done, what="all six runs, none dropped")
    dispatcher.close()
    assert sorted(p.name for p in tmp_path.glob("done-*")) == [f"done-{i}" for i in range(1, 7)]


def test_hook_failures_are_logged_once_per_streak(tmp_path, caplog):
    fail = [sys.executable, "-c", "import sys; sys.stdin.read(); sys.stderr.write('boom'); sys.exit(3)"]
    hook = HookSink(fail, max_concurrent=1)
    with caplog.at_level(logging.WARNING, logger="portbell.sinks"):
        hook.emit([recorded(1), recorded(2), recorded(3)], snap())
        wait_for(lambda: hook.failed == 3, what="three failed runs")
    hook.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "status 3: boom" in warnings[0].getMessage()


def test_hook_close_keeps_waiting_runs_owed_and_kills_the_running_ones(tmp_path, caplog):
    hook = HookSink([sys.executable, "-c", SLEEPER, str(tmp_path)], timeout_s=120, max_concurrent=1)
    hook.emit([recorded(1), recorded(2)], snap())
    pids = wait_for(lambda: (tmp_path / "pids").exists() and [int(p) for p in (tmp_path / "pids").read_text().split()], what="the hook's pids")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="portbell.sinks"):
        hook.close()  # waits a moment, then kills: a daemon stopping must not wait out a hook's timeout
    assert time.monotonic() - started < 30
    # SIGKILL is sent by close(); the kernel ends and the reaper collects them a moment later
    wait_for(lambda: all(_gone(p) for p in pids), what="the killed hook and its child to be gone")
    assert hook.running == 0 and hook.started == 1
    assert "1 runs still waiting at shutdown stay in the record" in caplog.text and "killed 1 runs" in caplog.text
    assert hook.done_through(2) == 0  # neither finished: both are owed at the next start
    with pytest.raises(SinkError):
        hook.emit([recorded(3)], snap())


def test_hook_missing_program_raises_so_the_dispatcher_holds_the_records(tmp_path):
    hook = HookSink([str(tmp_path / "not-installed")])
    with pytest.raises(SinkError, match="not found"):
        hook.emit([recorded(1)], snap())
    hook.emit([recorded(2, alert=False)], snap())  # nothing to run: nothing to complain about
    hook.close()


# ------------------------------------------------------------------ Prometheus textfile


def families(path):
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus-client (the test extra) is needed")
    return {f.name: f for f in parser.text_string_to_metric_families(Path(path).read_text())}


def test_prometheus_textfile_has_every_exposure_and_transport_and_event_counters(tmp_path):
    prom = tmp_path / "portbell.prom"
    current = snap(
        listener(22, "0.0.0.0"),
        listener(5353, "0.0.0.0", "udp"),
        listener(631, "127.0.0.1"),
        listener(6379, "::1"),
        listener(8080, "192.168.1.20"),
        listener(443, "8.8.8.8"),
    )
    sink = PrometheusSink(prom, started_at=1_795_683_600)
    sink.emit([recorded(1), recorded(2, alert=False), recorded(3, "closed", alert=False), recorded(4, "changed", previous=listener())], current)
    got = families(prom)
    gauges = {(s.labels["exposure"], s.labels["transport"]): s.value for s in got["portbell_listeners"].samples}
    assert got["portbell_listeners"].type == "gauge"
    assert len(gauges) == 8  # 4 exposures x 2 transports, zeros included
    assert gauges == {
        ("loopback", "tcp"): 2, ("loopback", "udp"): 0,
        ("local-network", "tcp"): 1, ("local-network", "udp"): 0,
        ("all-interfaces", "tcp"): 1, ("all-interfaces", "udp"): 1,
        ("public", "tcp"): 1, ("public", "udp"): 0,
    }  # fmt: skip
    assert got["portbell_events"].type == "counter"
    assert {s.labels["kind"]: s.value for s in got["portbell_events"].samples if s.name == "portbell_events_total"} == {
        "opened": 2, "closed": 1, "changed": 1,
    }  # fmt: skip
    assert [s.value for s in got["portbell_alerts"].samples if s.name == "portbell_alerts_total"] == [2]
    assert [s.value for s in got["portbell_view_complete"].samples] == [1]
    assert [s.value for s in got["portbell_start_time_seconds"].samples] == [1_795_683_600]
    labels = {name for f in got.values() for s in f.samples for name in s.labels}
    assert labels <= {"exposure", "transport", "kind", "sampler"}  # no pid, program or per-listener labels
    assert [(s.labels, s.value) for s in got["portbell_sampler_info"].samples] == [({"sampler": "test"}, 1)]
    assert [s.value for s in got["portbell_up"].samples] == [1]
    assert [s.value for s in got["portbell_last_sample_timestamp_seconds"].samples] == [AT.timestamp()]
    assert "# HELP portbell_listeners " in prom.read_text()


def test_prometheus_file_is_rewritten_only_when_something_changed(tmp_path):
    prom = tmp_path / "portbell.prom"
    sink = PrometheusSink(prom)
    sink.emit([], snap(listener(22)))
    prom.write_text("# left alone\n")  # stands for "the last write": a rewrite would replace it
    sink.emit([], snap(listener(22)))  # a new poll, same counts
    sink.emit([], snap(listener(23)))  # another listener, but the same exposure and transport counts
    assert prom.read_text() == "# left alone\n"
    sink.emit([], snap(listener(22), listener(23, "127.0.0.1")))
    gauges = {(s.labels["exposure"], s.labels["transport"]): s.value for s in families(prom)["portbell_listeners"].samples}
    assert gauges[("loopback", "tcp")] == 1 and gauges[("all-interfaces", "tcp")] == 1
    prom.write_text("# left alone\n")
    sink.emit([recorded(9, "closed", alert=False)], snap(listener(22), listener(23, "127.0.0.1")))  # a counter moved
    assert "portbell_events_total" in prom.read_text()


def test_prometheus_write_is_atomic_readable_and_waits_for_its_directory(tmp_path):
    folder = tmp_path / "textfile"
    sink = PrometheusSink(folder / "portbell.prom")
    with pytest.raises(SinkError, match="textfile"):
        sink.emit([recorded(1)], snap(listener()))
    folder.mkdir()
    # retried, as the Dispatcher does: the record is not counted twice
    sink.emit([recorded(1)], snap(listener()))
    assert [p.name for p in folder.iterdir()] == ["portbell.prom"]  # no temporary file left behind
    assert stat.S_IMODE((folder / "portbell.prom").stat().st_mode) == 0o644  # node_exporter's user reads it
    events = families(folder / "portbell.prom")["portbell_events"]
    assert {s.labels["kind"]: s.value for s in events.samples if s.name == "portbell_events_total"}["opened"] == 1


def test_prometheus_keeps_the_last_counts_when_a_sample_failed(tmp_path):
    prom = tmp_path / "portbell.prom"
    sink = PrometheusSink(prom)
    sink.emit([], snap(listener(22), listener(53, "127.0.0.1", "udp")))
    sink.emit([], None)
    gauges = {(s.labels["exposure"], s.labels["transport"]): s.value for s in families(prom)["portbell_listeners"].samples}
    assert gauges[("all-interfaces", "tcp")] == 1 and gauges[("loopback", "udp")] == 1


# ------------------------------------------------------------------ Dispatcher


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Recording:
    """A sink that keeps what it was given."""

    def __init__(self, name="recording"):
        self.name = name
        self.batches: list[list[Recorded]] = []
        self.snapshots = []
        self.closed = False

    def emit(self, records, snapshot):
        self.batches.append(list(records))
        self.snapshots.append(snapshot)

    @property
    def ids(self):
        return [r.id for batch in self.batches for r in batch]

    def close(self):
        self.closed = True


class Broken(Recording):
    """Raises while `broken`; `delivered` lets it take part of a batch first."""

    def __init__(self, name="broken", error=None):
        super().__init__(name)
        self.broken = True
        self.calls = 0
        self.delivered = 0
        self.error = error

    def emit(self, records, snapshot):
        self.calls += 1
        if self.broken:
            if self.delivered:
                super().emit(list(records)[: self.delivered], snapshot)
            raise self.error or SinkError("socket gone", sink=self.name, delivered=self.delivered)
        super().emit(records, snapshot)

    def close(self):
        super().close()
        raise RuntimeError("close failed too")


def test_a_raising_sink_does_not_keep_records_from_the_others(tmp_path):
    broken = Broken(error=RuntimeError("bug in a sink"))
    after = Recording()
    jsonl = JsonLinesSink(tmp_path / "e.jsonl", host="h")
    dispatcher = Dispatcher([broken, after, jsonl])
    dispatcher.dispatch([recorded(1), recorded(2)], snap())
    dispatcher.dispatch([recorded(3)], snap())
    assert after.ids == [1, 2, 3]
    assert ids(tmp_path / "e.jsonl") == [1, 2, 3]
    status = {s["name"]: s for s in dispatcher.status()}
    assert not status["broken"]["ok"] and status["broken"]["pending"] == 3 and status["broken"]["error"] == "bug in a sink"
    assert status["recording"]["ok"] and status["jsonl"]["ok"]


def test_held_records_are_retried_with_backoff_and_delivered_in_order_on_recovery(caplog):
    clock = Clock()
    sink = Broken()
    dispatcher = Dispatcher([sink], clock=clock)
    with caplog.at_level(logging.DEBUG, logger="portbell.sinks"):
        dispatcher.dispatch([recorded(1)], snap())  # fails: retry after 1 s
        clock.now = 0.5
        dispatcher.dispatch([recorded(2)], snap())
        assert sink.calls == 1  # backing off: not even tried
        clock.now = 1.0
        dispatcher.dispatch([], snap())  # tried with both held records, fails: retry after 2 s more
        assert sink.calls == 2
        clock.now = 2.5
        dispatcher.dispatch([recorded(3)], snap())
        assert sink.calls == 2
        sink.broken = False
        clock.now = 3.0
        dispatcher.dispatch([recorded(4)], snap())
    assert sink.ids == [1, 2, 3, 4] and sink.calls == 3
    dispatcher.dispatch([recorded(5)], snap())  # healthy again: straight through
    assert sink.ids == [1, 2, 3, 4, 5]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # once when the streak began, once when it ended
    assert "sink broken failed: socket gone" in warnings[0]
    assert "works again" in warnings[1] and "delivered 4 held records" in warnings[1]


def test_a_new_failure_streak_is_logged_again(caplog):
    clock = Clock()
    sink = Broken()
    dispatcher = Dispatcher([sink], clock=clock)
    with caplog.at_level(logging.WARNING, logger="portbell.sinks"):
        dispatcher.dispatch([recorded(1)], snap())
        sink.broken = False
        clock.now = 10
        dispatcher.dispatch([], snap())
        sink.broken = True
        dispatcher.dispatch([recorded(2)], snap())
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 2


def test_held_queue_is_bounded_and_drops_the_oldest(caplog):
    clock = Clock()
    sink = Broken()
    dispatcher = Dispatcher([sink], clock=clock, max_pending=3)
    with caplog.at_level(logging.WARNING, logger="portbell.sinks"):
        for i in range(1, 7):
            dispatcher.dispatch([recorded(i)], snap())
    assert dispatcher.status()[0]["pending"] == 3 and dispatcher.status()[0]["dropped"] == 3
    assert sum("dropping the oldest" in r.getMessage() for r in caplog.records) == 1
    sink.broken = False
    clock.now = 1000
    dispatcher.dispatch([], snap())
    assert sink.ids == [4, 5, 6]


def test_what_a_sink_delivered_before_failing_is_not_sent_again():
    clock = Clock()
    sink = Broken()
    sink.delivered = 1
    dispatcher = Dispatcher([sink], clock=clock)
    dispatcher.dispatch([recorded(1), recorded(2), recorded(3)], snap())  # takes 1, fails on 2
    assert dispatcher.status()[0]["pending"] == 2
    clock.now = 1
    dispatcher.dispatch([], snap())  # takes 2, fails on 3
    sink.broken = False
    clock.now = 10
    dispatcher.dispatch([recorded(4)], snap())
    assert sink.ids == [1, 2, 3, 4]


def test_every_poll_reaches_the_sinks_with_its_snapshot_even_without_records(tmp_path):
    recording = Recording()
    prom = tmp_path / "portbell.prom"
    dispatcher = Dispatcher([recording, PrometheusSink(prom)])
    dispatcher.dispatch([], snap(listener(22)))
    dispatcher.dispatch([], snap(listener(22), listener(80)))
    assert [len(s.listeners) for s in recording.snapshots] == [1, 2]
    gauges = {(s.labels["exposure"], s.labels["transport"]): s.value for s in families(prom)["portbell_listeners"].samples}
    assert gauges[("all-interfaces", "tcp")] == 2


def test_close_tries_held_records_once_more_and_closes_every_sink(caplog):
    clock = Clock()
    flaky, healthy = Broken("flaky"), Recording()
    dispatcher = Dispatcher([flaky, healthy], clock=clock)
    dispatcher.dispatch([recorded(1)], snap())
    flaky.broken = False  # recovered, but its backoff has not run out
    with caplog.at_level(logging.WARNING, logger="portbell.sinks"):
        dispatcher.close()  # and flaky.close() raises: logged, the others still closed
    assert flaky.ids == [1] and flaky.closed and healthy.closed
    assert "error while closing" in caplog.text


def test_dispatcher_with_a_failing_hook_and_a_raising_sink_still_feeds_jsonl(tmp_path):
    jsonl = JsonLinesSink(tmp_path / "e.jsonl", host="h")
    hook = HookSink([sys.executable, "-c", "import sys; sys.exit(1)"])
    dispatcher = Dispatcher([Broken(), hook, jsonl])
    dispatcher.dispatch([recorded(1)], snap())
    wait_for(lambda: hook.failed == 1, what="the hook to fail")
    dispatcher.dispatch([recorded(2)], snap())
    dispatcher.close()
    assert ids(tmp_path / "e.jsonl") == [1, 2]


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    "tables, expected",
    [
        ({"hook": {"argv": "notify-send 'port open'"}}, "sinks.hook.argv: must be a non-empty list of strings, not one string"),
        ({"hook": {"argv": []}}, "sinks.hook.argv: must be a non-empty list of strings"),
        ({"hook": {"argv": ["x", 3]}}, "sinks.hook.argv: must be a non-empty list of strings"),
        ({"hook": {}}, "sinks.hook.argv: required when sinks.hook is enabled"),
        ({"hook": {"argv": ["x"], "timeout_s": 0}}, "sinks.hook.timeout_s: must be a number of seconds greater than 0"),
        ({"hook": {"argv": ["x"], "max_concurrent": True}}, "sinks.hook.max_concurrent: must be a whole number of at least 1"),
        ({"hook": {"argv": ["x"], "only_alerts": "yes"}}, "sinks.hook.only_alerts: must be true or false"),
        ({"jsonl": {"pth": "/tmp/x"}}, "sinks.jsonl.pth: unknown key (allowed: enabled, format, fsync, mode, path); did you mean 'path'?"),
        ({"jsonl": {"path": "events.jsonl"}}, "sinks.jsonl.path: must be an absolute path"),
        ({"syslog": {"facility": "local9"}}, "sinks.syslog.facility: must be one of kern, user"),
        ({"syslog": "on"}, "sinks.syslog: must be a table"),
        ({"prometheus": {}}, "sinks.prometheus.path: required when sinks.prometheus is enabled"),
        ({"prometheus": {"path": "/var/lib/node_exporter/portbell.txt"}}, "sinks.prometheus.path: must end in .prom"),
        ({"splunk": {}}, "sinks.splunk: unknown sink (allowed: hook, jsonl, prometheus, syslog)"),
    ],
)
def test_validate_names_the_key_and_what_is_allowed(tables, expected):
    problems = sinks.validate(tables)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_validate_accepts_a_full_configuration_and_build_makes_only_enabled_sinks(tmp_path):
    tables = {
        "jsonl": {"path": str(tmp_path / "e.jsonl"), "fsync": False},
        "syslog": {"socket": "/dev/log", "facility": "daemon", "enabled": False},
        "hook": {"argv": ["/bin/true"], "timeout_s": 2.5, "max_concurrent": 1, "only_alerts": False, "max_queued": 5},
        "prometheus": {"path": str(tmp_path / "portbell.prom")},
    }
    assert sinks.validate(tables) == []
    built = sinks.build(tables, host="ana-laptop")
    assert [s.name for s in built] == ["jsonl", "hook", "prometheus"]
    jsonl, hook, _ = built
    assert jsonl.path == tmp_path / "e.jsonl" and jsonl.host == "ana-laptop" and jsonl.fsync is False
    assert (hook.argv, hook.timeout_s, hook.max_concurrent, hook.only_alerts, hook.max_queued) == (("/bin/true",), 2.5, 1, False, 5)
    assert sinks.validate({"hook": {"enabled": False}}) == []  # a disabled hook needs no argv
    with pytest.raises(ValueError):
        sinks.build({"hook": {"argv": "a string"}})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG_STATE_HOME places the state directory on Linux")
def test_build_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    jsonl, syslog, hook = sinks.build({"jsonl": {}, "syslog": {}, "hook": {"argv": ["x"]}})
    assert jsonl.path == tmp_path / "state" / "portbell" / "events.jsonl" and jsonl.fsync is True
    assert syslog.socket_path == "/dev/log" and syslog.facility == 1  # user
    assert (hook.timeout_s, hook.max_concurrent, hook.only_alerts) == (10.0, 4, True)
    assert sinks.build({}) == []
