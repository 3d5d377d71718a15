"""The fleet outputs as their consumers read them: osquery's listening_ports rows and differential
envelope (held to osquery's spec and documented examples), the JSON lines file read by a shipper
running as another user, the new options through `portbell config check`, and the Prometheus
textfile scraped by a real node_exporter (Debian's prometheus-node-exporter) on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import in_child, is_root, portbell, stop_process, wait_for
from portbell.daemon import sinks
from portbell.daemon.addresses import classify
from portbell.daemon.model import Event, EventKind, Listener, Owner, Recorded, Transport, snapshot_of
from portbell.daemon.sinks._jsonl import JsonLinesSink, calendar_time
from portbell.daemon.sinks._prometheus import PrometheusSink

LINUX = sys.platform.startswith("linux")
AT = datetime(2026, 12, 1, 7, 4, 5, tzinfo=timezone.utc)  # a one-digit day: asctime pads it with a space

# osquery's specs/listening_ports.table: every column and its type (net_namespace: LINUX's extended schema)
LISTENING_PORTS = {
    "pid": "INTEGER", "port": "INTEGER", "protocol": "INTEGER", "family": "INTEGER", "address": "TEXT",
    "fd": "BIGINT", "socket": "BIGINT", "path": "TEXT",
}  # fmt: skip
LISTENING_PORTS_LINUX = {"net_namespace": "TEXT"}
# osquery's serializer (addLegacyFieldsAndDecorations, logger_numerics=false): the envelope and its JSON types
ENVELOPE = {"name": str, "hostIdentifier": str, "calendarTime": str, "unixTime": int, "epoch": int, "counter": int,
            "numerics": bool, "decorations": dict, "columns": dict, "action": str}  # fmt: skip


def owner(pid, name="python3", uid=1000):
    return Owner(pid=pid, uid=uid, name=name, exe="/usr/bin/python3", user="ana", started_at=AT)


def listener(port=8000, address="0.0.0.0", transport="tcp", owners=(4242,), dual_stack=False):
    return Listener(
        Transport(transport), 6 if ":" in address else 4, address, port, classify(address), dual_stack=dual_stack,
        owners=tuple(owner(p) if isinstance(p, int) else p for p in owners),
    )  # fmt: skip


def recorded(id, kind="opened", li=None, previous=None, at=AT, alert=True, **flags):
    return Recorded(id, Event(EventKind(kind), at, li or listener(), previous=previous), alert, "why", **flags)


def snap(*listeners):
    return snapshot_of(listeners, AT, sampler="test")


def lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def osquery_sink(tmp_path, **kw):
    return JsonLinesSink(tmp_path / "events.jsonl", host="ana-laptop", format="osquery", **kw)


# ------------------------------------------------------------------ osquery's shape and meaning


def test_osquery_format_has_exactly_the_listening_ports_columns_with_their_types(tmp_path):
    sink = osquery_sink(tmp_path)
    sink.emit([recorded(5, li=listener(8000, "0.0.0.0")), recorded(6, li=listener(5353, "::", "udp"))], None)
    tcp, udp = lines(tmp_path / "events.jsonl")
    expected = {**LISTENING_PORTS, **(LISTENING_PORTS_LINUX if LINUX else {})}
    for row in (tcp, udp):
        assert set(row["columns"]) == set(expected)
        assert list(row["columns"]) == sorted(row["columns"])  # osquery's rows are sorted maps
        for column, kind in expected.items():
            value = row["columns"][column]
            assert isinstance(value, str), column  # numerics: false
            if kind in ("INTEGER", "BIGINT"):
                assert int(value) == int(value), column  # parses as a whole number
    cols = tcp["columns"]
    assert (cols["protocol"], cols["family"], cols["address"], cols["port"], cols["pid"]) == ("6", str(int(socket.AF_INET)), "0.0.0.0", "8000", "4242")
    assert (cols["path"], cols["fd"], cols["socket"]) == ("", "-1", "-1")
    assert (udp["columns"]["protocol"], udp["columns"]["family"], udp["columns"]["address"]) == ("17", str(int(socket.AF_INET6)), "::")
    if LINUX:
        assert (cols["family"], udp["columns"]["family"]) == ("2", "10")
        assert cols["net_namespace"] == str(os.stat("/proc/self/ns/net").st_ino)


def test_osquery_envelope_has_the_serializers_keys_and_json_types(tmp_path):
    osquery_sink(tmp_path).emit([recorded(5)], None)
    (row,) = lines(tmp_path / "events.jsonl")
    assert set(row) == set(ENVELOPE)
    for key, kind in ENVELOPE.items():
        assert type(row[key]) is kind, key
    assert (row["name"], row["hostIdentifier"], row["epoch"], row["numerics"], row["action"]) == ("portbell_listening_ports", "ana-laptop", 0, False, "added")
    assert all(isinstance(v, str) for v in row["decorations"].values()) and row["decorations"]["username"]
    assert row["unixTime"] == int(AT.timestamp())


@pytest.mark.parametrize(
    "unix_time, documented",
    [
        (1462228052, "Mon May  2 22:27:32 2016 UTC"),  # logging.md's snapshot example: the day padded with a space
        # (logging.md's older event example, 1412123850 as "Tue Sep 30 17:37:30 2014", is local time
        # from before osquery logged UTC: 7 hours off, and without the " UTC"; it cannot be held to)
        (int(AT.timestamp()), "Tue Dec  1 07:04:05 2026 UTC"),
    ],
)
def test_calendar_time_is_asctime_as_in_osquerys_documented_examples(tmp_path, unix_time, documented):
    at = datetime.fromtimestamp(unix_time, timezone.utc)
    assert calendar_time(at) == documented
    for fmt in ("portbell", "osquery"):
        path = tmp_path / f"{fmt}.jsonl"
        JsonLinesSink(path, host="h", format=fmt).emit([recorded(1, at=at)], None)
        (row,) = lines(path)
        assert (row["calendarTime"], row["unixTime"]) == (documented, unix_time)


@pytest.mark.parametrize("fmt", ["portbell", "osquery"])
def test_counter_is_zero_for_the_baseline_run_and_shared_then_growing_for_later_runs(tmp_path, fmt):
    path = tmp_path / "e.jsonl"
    sink = JsonLinesSink(path, host="h", format=fmt)
    sink.emit([recorded(1, li=listener(22), baseline=True), recorded(2, li=listener(631, "127.0.0.1"), baseline=True)], None)
    later = AT + timedelta(seconds=1)
    sink.emit([recorded(3, li=listener(8000), at=later), recorded(4, li=listener(8001), at=later)], None)
    sink.emit([recorded(5, li=listener(9000), at=later + timedelta(seconds=1))], None)
    counters = [r["counter"] for r in lines(path)]
    assert counters[:2] == [0, 0]  # osquery: "For initial query results that includes all records counter will be 0"
    assert counters[2] == counters[3] > 0  # one sample: one run
    assert counters[4] > counters[3]


def test_a_run_split_by_a_failed_write_keeps_its_counter_when_retried(tmp_path):
    (tmp_path / "blocked").write_text("a file where the directory should be")
    sink = osquery_sink(tmp_path)
    run = [recorded(7, li=listener(8000)), recorded(8, li=listener(8001))]
    sink.emit(run[:1], None)
    sink.emit(run[1:], None)  # what a retry after a partial write hands over
    assert [r["counter"] for r in lines(tmp_path / "events.jsonl")] == [7, 7]


def test_osquery_rows_are_one_per_process_and_changes_log_only_the_rows_that_differ(tmp_path):
    sink = osquery_sink(tmp_path)
    one = listener(8000, owners=(100,))
    two = listener(8000, owners=(100, 101))
    swapped = listener(8000, owners=(200,))
    later = [AT + timedelta(seconds=i) for i in range(5)]
    sink.emit([recorded(1, "opened", li=two, at=later[0])], None)
    sink.emit([recorded(2, "changed", li=one, previous=two, at=later[1])], None)  # a worker exited
    sink.emit([recorded(3, "changed", li=swapped, previous=one, at=later[2])], None)  # another program took it
    v4 = listener(8443, "::", owners=(300,))
    sink.emit([recorded(4, "changed", li=listener(8443, "::", owners=(300,), dual_stack=True), previous=v4, at=later[3])], None)
    sink.emit([recorded(5, "closed", li=swapped, at=later[4])], None)
    got = [(r["action"], r["columns"]["pid"], r["counter"]) for r in lines(tmp_path / "events.jsonl")]
    assert got == [
        ("added", "100", 1), ("added", "101", 1),
        ("removed", "101", 2),
        ("removed", "100", 3), ("added", "200", 3),
        # the IPV6_V6ONLY change: no column of listening_ports differs, so osquery would log nothing
        ("removed", "200", 5),
    ]  # fmt: skip


def test_an_owner_nobody_can_see_is_pid_minus_one_as_in_osquery(tmp_path):
    hidden = listener(25, owners=(Owner(pid=None, uid=0, user="root"),))
    nobody = listener(26, owners=())
    osquery_sink(tmp_path).emit([recorded(1, li=hidden), recorded(2, li=nobody)], None)
    assert [(r["columns"]["port"], r["columns"]["pid"]) for r in lines(tmp_path / "events.jsonl")] == [("25", "-1"), ("26", "-1")]


@pytest.mark.skipif(not LINUX, reason="sockdiag and forked holders: Linux")
def test_a_forked_server_seen_by_the_real_sampler_is_a_row_per_process(tmp_path, child):
    from portbell.daemon.samplers import create

    server = child(address="127.0.0.1", fork=True)
    sampler = create("sockdiag")
    try:
        li = wait_for(
            lambda: next((x for x in sampler.sample().listeners.values() if x.port == server.port and sorted(x.pids) == server.pids), None),
            what="both holders of the forked listener",
        )
    finally:
        sampler.close()
    osquery_sink(tmp_path).emit([recorded(1, li=li)], None)
    rows = lines(tmp_path / "events.jsonl")
    assert sorted(int(r["columns"]["pid"]) for r in rows) == server.pids
    assert {(r["columns"]["address"], r["columns"]["port"], r["columns"]["protocol"]) for r in rows} == {("127.0.0.1", str(server.port), "6")}


def test_portbell_format_stays_the_default_with_its_own_columns(tmp_path):
    (jsonl,) = sinks.build({"jsonl": {"path": str(tmp_path / "e.jsonl")}}, host="h")
    jsonl.emit([recorded(1)], None)
    (row,) = lines(tmp_path / "e.jsonl")
    assert row["name"] == "portbell_listeners" and row["columns"]["exposure"] == "all-interfaces" and "protocol" not in row["columns"]


# ------------------------------------------------------------------ file modes for shippers


@pytest.mark.parametrize("mode, expected", [("0600", 0o600), ("0640", 0o640), (0o640, 0o640)])
def test_jsonl_mode_is_set_whatever_the_umask(tmp_path, mode, expected):
    (jsonl,) = sinks.build({"jsonl": {"path": str(tmp_path / "logs" / "e.jsonl"), "mode": mode}}, host="h")
    old = os.umask(0o077)  # a umask that would take the group's bit away
    try:
        jsonl.emit([recorded(1)], None)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "logs" / "e.jsonl").stat().st_mode) == expected
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == (0o750 if expected == 0o640 else 0o700) & ~0o077


def test_jsonl_mode_applies_to_a_file_that_existed_with_another_mode(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text("")
    path.chmod(0o600)
    JsonLinesSink(path, host="h", mode=0o640).emit([recorded(1)], None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def _free_gid() -> int:
    import grp

    taken = {g.gr_gid for g in grp.getgrall()}
    return next(gid for gid in range(47000, 48000) if gid not in taken)


SHIPPER = "nobody"


def _read_as(uid: int, gid: int, groups: list[int], path: Path) -> str:
    """Fork, become uid/gid with these supplementary groups (as a shipper's service user is), read the file."""

    def read() -> str:
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        try:
            with open(path, encoding="utf-8") as f:
                return "read:" + f.read()
        except PermissionError:
            return "denied"

    return in_child(read, "reading as the shipper")


@pytest.mark.skipif(not LINUX, reason="setuid, setgid and groups: POSIX, tested on Linux")
def test_a_shipper_in_the_files_group_reads_the_0640_file_and_others_cannot():
    if not is_root():
        pytest.skip("becoming another user (a shipper's service user) needs root: run the tests as root to check mode 0640")
    import pwd

    nobody = pwd.getpwnam(SHIPPER)
    shippers = _free_gid()  # the group the shipper's user is in: a gid no one else has
    folder = Path(tempfile.mkdtemp(prefix="pb-shipper-"))
    try:
        # the README's setup: a log folder of the shippers' group, setgid so new files take its group
        os.chown(folder, 0, shippers)
        folder.chmod(0o2750)
        path = folder / "events.jsonl"
        (jsonl,) = sinks.build({"jsonl": {"path": str(path), "mode": "0640"}}, host="h")
        jsonl.emit([recorded(1)], None)
        jsonl.close()
        assert path.stat().st_gid == shippers and stat.S_IMODE(path.stat().st_mode) == 0o640
        answer = _read_as(nobody.pw_uid, nobody.pw_gid, [shippers], path)
        assert answer.startswith("read:") and json.loads(answer[5:].splitlines()[0])["columns"]["id"] == "1"
        assert _read_as(nobody.pw_uid, nobody.pw_gid, [], path) == "denied"  # not in the group: no
        path.unlink()
        (private,) = sinks.build({"jsonl": {"path": str(path)}}, host="h")  # the default, 0600
        private.emit([recorded(2)], None)
        private.close()
        assert _read_as(nobody.pw_uid, nobody.pw_gid, [shippers], path) == "denied"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ the new options through `config check`


@pytest.mark.parametrize(
    "line, expected",
    [
        ('format = "osqery"', 'sinks.jsonl.format: must be "portbell"'),
        ('mode = "0644"', 'sinks.jsonl.mode: must be "0600"'),
        ("mode = 640", '640 is a decimal number here: write "0640" or 0o640'),
        ("mode = 0o777", 'sinks.jsonl.mode: must be "0600"'),
    ],
)
def test_config_check_explains_bad_format_and_mode(tmp_path, line, expected):
    path = tmp_path / "config.toml"
    path.write_text(f'[sinks.jsonl]\npath = "{tmp_path}/e.jsonl"\n{line}\n')
    done = portbell("config", "check", "--config", str(path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{path}:3: " in done.stderr and expected in done.stderr and "Traceback" not in done.stderr


def test_config_check_accepts_the_new_options(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(f'[sinks.jsonl]\npath = "{tmp_path}/e.jsonl"\nformat = "osquery"\nmode = "0640"\n')
    done = portbell("config", "check", "--config", str(path))
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------ node_exporter scrapes the textfile


def _node_exporter() -> str | None:
    for candidate in (shutil.which("prometheus-node-exporter"), shutil.which("node_exporter"), "/usr/bin/prometheus-node-exporter"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    venv = Path(sys.prefix) / "consumers" / "usr" / "bin" / "prometheus-node-exporter"  # tests/consumers/setup.sh
    return str(venv) if os.access(venv, os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeExporter:
    """node_exporter with only its textfile collector, on 127.0.0.1, reading one folder."""

    def __init__(self, program: str, folder: Path, log: Path) -> None:
        self.program, self.folder, self.log = program, folder, log
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> NodeExporter:
        for _ in range(5):  # a free port can be taken between the probe and the bind: try another
            self.port = _free_port()
            with open(self.log, "wb") as out:
                self.proc = subprocess.Popen(
                    [self.program, f"--web.listen-address=127.0.0.1:{self.port}", "--collector.disable-defaults",
                     "--collector.textfile", f"--collector.textfile.directory={self.folder}"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                )  # fmt: skip
            try:
                wait_for(self._answers, timeout=20, what="node_exporter to answer")
                return self
            except AssertionError:
                if "address already in use" not in self.log.read_text():
                    raise AssertionError(f"node_exporter did not start: {self.log.read_text()[-2000:]}") from None
                self.stop()
        raise AssertionError("node_exporter found no free port on 127.0.0.1")

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"node_exporter exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        try:
            self.scrape()
            return True
        except OSError:
            return False

    def scrape(self) -> dict:
        """name -> [(labels, value)] as Prometheus' own parser reads node_exporter's answer."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        out: dict[str, list] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.setdefault(s.name, []).append((s.labels, s.value))
        return out

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace=10)


@pytest.fixture
def node_exporter(tmp_path):
    pytest.importorskip("prometheus_client.parser", reason="prometheus-client (the test extra) is needed")
    program = _node_exporter()
    if program is None:
        pytest.skip("node_exporter is missing: install the Debian package prometheus-node-exporter (make test does, as root)")
    folder = tmp_path / "textfile"
    folder.mkdir()
    server = NodeExporter(program, folder, tmp_path / "node_exporter.log")
    yield server
    server.stop()
    assert server.proc is None or server.proc.poll() is not None


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def mtime(metrics) -> float:
    """node_textfile_mtime_seconds of portbell's file (its label is the name or the path, by version)."""
    (found,) = [v for labels, v in metrics["node_textfile_mtime_seconds"] if labels["file"].endswith("portbell.prom")]
    return found


def value(metrics, name, **labels):
    found = [v for got, v in metrics.get(name, []) if all(got.get(k) == str(w) for k, w in labels.items())]
    assert len(found) == 1, (name, labels, metrics.get(name))
    return found[0]


def test_node_exporter_serves_the_freshness_metrics_and_sees_the_file_rewritten_at_each_heartbeat(node_exporter):
    node_exporter.start()
    prom = node_exporter.folder / "portbell.prom"
    clock = Clock()
    sink = PrometheusSink(prom, clock=clock, heartbeat_s=15.0, started_at=1_796_000_000)
    sink.emit([recorded(1)], snap(listener()))
    first = node_exporter.scrape()
    assert value(first, "node_textfile_scrape_error") == 0
    assert value(first, "portbell_up") == 1
    assert value(first, "portbell_last_sample_timestamp_seconds") == AT.timestamp()
    assert value(first, "portbell_view_complete") == 1 and value(first, "portbell_sampler_info", sampler="test") == 1
    assert value(first, "portbell_events_total", kind="opened") == 1
    aged = time.time() - 600
    os.utime(prom, (aged, aged))  # as if written 10 minutes ago: node_exporter's mtime must move on
    assert mtime(node_exporter.scrape()) == pytest.approx(aged, abs=1)

    clock.now = 10.0
    sink.emit([], snapshot_of([listener()], AT + timedelta(seconds=10), sampler="test"))  # same counts, no heartbeat due
    assert mtime(node_exporter.scrape()) == pytest.approx(aged, abs=1)  # left alone
    clock.now = 15.0
    newer = snapshot_of([listener()], AT + timedelta(seconds=15), sampler="test")
    sink.emit([], newer)  # nothing changed, but the heartbeat is due: rewritten
    second = node_exporter.scrape()
    assert mtime(second) > aged + 500
    assert value(second, "portbell_last_sample_timestamp_seconds") == newer.taken_at.timestamp()

    sink.close()  # a clean stop says so
    stopped = node_exporter.scrape()
    assert value(stopped, "portbell_up") == 0 and value(stopped, "node_textfile_scrape_error") == 0


def test_node_exporter_sees_counters_continue_across_a_restart_and_a_reload(node_exporter):
    node_exporter.start()
    prom = node_exporter.folder / "portbell.prom"
    first = PrometheusSink(prom)
    first.emit([recorded(1), recorded(2, "closed", alert=False)], snap(listener()))
    first.close()  # the daemon stops
    again = PrometheusSink(prom)  # and starts: the counts go on
    later = AT + timedelta(seconds=5)
    # record 2 handed over again after a crash is not counted twice; record 3 is new
    again.emit([recorded(2, "closed", alert=False), recorded(3, at=later)], snap(listener()))
    got = node_exporter.scrape()
    assert (value(got, "portbell_events_total", kind="opened"), value(got, "portbell_events_total", kind="closed")) == (2, 1)
    assert value(got, "portbell_alerts_total") == 2 and value(got, "portbell_up") == 1

    dispatcher = sinks.Dispatcher([again])
    dispatcher.close(stopping=False)  # a reload: the textfile is handed over, still up
    assert value(node_exporter.scrape(), "portbell_up") == 1
    reloaded = PrometheusSink(prom)
    reloaded.emit([recorded(4, at=later + timedelta(seconds=1))], snap(listener()))
    got = node_exporter.scrape()
    assert value(got, "portbell_events_total", kind="opened") == 3 and value(got, "portbell_alerts_total") == 3


def test_a_new_record_after_a_reset_store_is_counted_although_its_ids_start_again(tmp_path):
    prom = tmp_path / "portbell.prom"
    old = PrometheusSink(prom)
    old.emit([recorded(50)], snap(listener()))
    old.close()
    fresh = PrometheusSink(prom)  # the store was moved aside: ids start at 1 again, at a later time
    fresh.emit([recorded(1, at=AT + timedelta(hours=1))], snap(listener()))
    assert 'portbell_events_total{kind="opened"} 2' in prom.read_text()


# ------------------------------------------------------------------ the real daemon: restart and reload


def _metrics(path: Path) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    if not path.exists():
        return {}
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _opened(path: Path) -> float:
    got = _metrics(path)
    return value(got, "portbell_events_total", kind="opened") if "portbell_events_total" in got else 0


def test_the_daemons_counters_survive_a_restart_and_a_reload(home):
    pytest.importorskip("prometheus_client.parser", reason="prometheus-client (the test extra) is needed")
    folder = home / "textfile"
    folder.mkdir()
    prom = folder / "portbell.prom"
    config = home / "config.toml"
    config.write_text(f'[sinks.prometheus]\npath = "{prom}"\n')
    log = home / "daemon.log"

    def start():
        with open(log, "a") as out:
            return subprocess.Popen([sys.executable, "-m", "portbell.daemon", "daemon", "--quiet", "--interval", "0.2", "--config", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=out)  # fmt: skip

    def stop(proc):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    def closed():
        return value(_metrics(prom), "portbell_events_total", kind="closed")

    proc = start()
    try:
        wait_for(lambda: _opened(prom) >= 1 and value(_metrics(prom), "portbell_up") == 1, timeout=30, what="the baseline counted")
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            a.listen()
            before = _opened(prom)
            wait_for(lambda: _opened(prom) >= before + 1, timeout=30, what="the new listener counted")
        counted = _opened(prom)
    finally:
        stop(proc)
    assert value(_metrics(prom), "portbell_up") == 0, log.read_text()  # a clean stop says so
    assert _opened(prom) >= counted  # the last write keeps the counts

    proc = start()
    try:
        wait_for(lambda: value(_metrics(prom), "portbell_up") == 1, timeout=30, what="the restarted daemon's textfile")
        assert _opened(prom) >= counted  # not reset by the restart
        with socket.socket() as b:
            b.bind(("127.0.0.1", 0))
            b.listen()
            wait_for(lambda: _opened(prom) >= counted + 1, timeout=30, what="a listener counted after the restart")
            counted, was_closed = _opened(prom), closed()
            config.write_text(f'[sinks.prometheus]\npath = "{prom}"\n\n[sinks.jsonl]\npath = "{home}/e.jsonl"\n')
            proc.send_signal(signal.SIGHUP)  # the sinks are rebuilt
            wait_for(lambda: "configuration reloaded" in log.read_text(), timeout=30, what="the reload")
        # Other programs on a busy machine open and close listeners too: the counters only grow.
        wait_for(lambda: closed() >= was_closed + 1, timeout=30, what="the close counted after the reload")
        assert _opened(prom) >= counted  # not reset by the reload (a reset starts again below the baseline's count)
        assert value(_metrics(prom), "portbell_up") == 1
    finally:
        stop(proc)
