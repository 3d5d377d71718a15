"""Units, inferred owners and forwarders, seen as an unprivileged user against real root listeners.

The cgroup tests make real cgroups (under the cgroup v2 mount found in
mountinfo), put root processes in them, and sample as nobody. They skip with a
sentence where no cgroup v2 hierarchy is writable.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from portbell.daemon.model import Event, EventKind, Listener, UnitKind
from portbell.daemon.rules import Policy, Verdict, program_of
from portbell.daemon.samplers._cgroup import cgroup2_mount
from portbell.daemon.samplers._sockdiag import SockDiagSampler
from portbell.daemon.record import Store

from conftest import LINUX, as_nobody, is_root, wait_for

NOW = datetime(2026, 11, 26, 9, tzinfo=timezone.utc)

LISTEN = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""
IDLE = "import sys; print(0, flush=True); sys.stdin.read()"


def _writable_cgroup2() -> str | None:
    if not (LINUX and is_root()):
        return None
    mount = cgroup2_mount()
    if mount is None or not os.access(mount[0], os.W_OK):
        return None
    return mount[0]


CGROUP2 = _writable_cgroup2()
needs_cgroup = pytest.mark.skipif(
    CGROUP2 is None, reason="needs root and a writable cgroup v2 hierarchy (none is mounted writable here)"
)


class Cgroup:
    """A real cgroup named like a unit; every process in it is moved out and it is removed at the end."""

    def __init__(self, suffix: str = ".service") -> None:
        self.name = f"portbell-test-{secrets.token_hex(4)}{suffix}"
        self.path = os.path.join(CGROUP2, self.name)
        os.mkdir(self.path)
        self.procs: list[subprocess.Popen] = []

    def spawn(self, code: str, *args: str, executable: str | None = None, argv0: str | None = None) -> tuple[subprocess.Popen, int]:
        """A child that joins this cgroup before it runs (so its sockets are created here); its first line."""
        procs_file = os.path.join(self.path, "cgroup.procs")

        def join() -> None:
            with open(procs_file, "w") as f:
                f.write("0")

        proc = subprocess.Popen(
            [argv0 or sys.executable, "-c", code, *args],
            executable=executable or sys.executable,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=join,
        )
        self.procs.append(proc)
        return proc, int(proc.stdout.readline())

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=10)

    def remove(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        with open(os.path.join(self.path, "cgroup.procs")) as f:
            left = f.read().split()
        for pid in left:  # anything still in it goes back to the root
            with open(os.path.join(CGROUP2, "cgroup.procs"), "w") as f:
                f.write(pid)
        wait_for(lambda: not open(os.path.join(self.path, "cgroup.procs")).read().split(), what="the cgroup to empty")
        os.rmdir(self.path)


@pytest.fixture
def cgroups():
    made: list[Cgroup] = []

    def make(suffix: str = ".service") -> Cgroup:
        made.append(Cgroup(suffix))
        return made[-1]

    yield make
    for cg in made:
        cg.remove()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sample_as_nobody(*ports: int, transport: str = "tcp") -> dict[int, dict]:
    """Sample as nobody until every port shows up; the listeners' JSON by port."""

    def work():
        with SockDiagSampler() as sampler:
            def seen():
                doc = sampler.sample().to_dict()
                found = {li["port"]: li for li in doc["listeners"] if li["transport"] == transport and li["port"] in ports}
                return found if len(found) == len(ports) else None

            return {str(k): v for k, v in wait_for(seen, timeout=10, what=f"ports {ports}").items()}

    return {int(k): v for k, v in as_nobody(work).items()}


# ------------------------------------------------------------------ a unit, and an inferred owner


@needs_cgroup
def test_listener_in_a_unit_cgroup_shows_the_unit_and_its_only_process_as_inferred_owner(cgroups):
    cg = cgroups()
    proc, port = cg.spawn(LISTEN, "127.0.0.1", "0")
    li = sample_as_nobody(port)[port]
    assert li["unit"]["kind"] == "service" and li["unit"]["name"] == cg.name
    assert li["unit"]["cgroup"] == "/" + cg.name
    (owner,) = li["owners"]
    assert (owner["pid"], owner["uid"], owner["via"]) == (proc.pid, 0, "cgroup")
    assert owner["name"].startswith("python")
    assert li["candidates"] is None


@needs_cgroup
def test_several_processes_of_the_uid_in_the_unit_are_counted_never_guessed(cgroups):
    cg = cgroups()
    _, port = cg.spawn(LISTEN, "127.0.0.1", "0")
    cg.spawn(IDLE)
    li = sample_as_nobody(port)[port]
    assert li["unit"]["name"] == cg.name
    assert li["owners"] == [{"pid": None, "name": None, "exe": None, "cmdline": None, "user": "root", "uid": 0,
                             "ppid": None, "started_at": None, "via": None, "start": None}]
    assert li["candidates"] == 2


@needs_cgroup
def test_root_sees_the_owner_from_its_descriptors_and_the_unit_too(cgroups):
    cg = cgroups(".scope")
    proc, port = cg.spawn(LISTEN, "127.0.0.1", "0")
    with SockDiagSampler() as sampler:
        li = wait_for(lambda: next((l for l in sampler.sample().listeners.values() if l.port == port and l.transport == "tcp"), None))
    assert li.unit.kind is UnitKind.SCOPE and li.unit.name == cg.name
    assert li.owners[0].pid == proc.pid and li.owners[0].via == "fd"


# ------------------------------------------------------------------ forwarders


@needs_cgroup
def test_docker_proxy_by_its_command_line_shows_the_container_address(cgroups, tmp_path):
    link = tmp_path / "docker-proxy"
    link.symlink_to(sys.executable)
    os.chmod(tmp_path, 0o755)
    cg = cgroups()
    cg.spawn(IDLE)  # dockerd's cgroup holds dockerd and every proxy: the command line tells them apart
    host_port = free_port()
    args = ["-proto", "tcp", "-host-ip", "127.0.0.1", "-host-port", str(host_port), "-container-ip", "172.17.0.2", "-container-port", "80"]
    code = LISTEN.replace("sys.argv[1]", "'127.0.0.1'").replace("int(sys.argv[2])", "int(sys.argv[sys.argv.index('-host-port') + 1])")
    proc, port = cg.spawn(code, *args, executable=str(link), argv0=str(link))
    assert port == host_port
    li = sample_as_nobody(port)[port]
    assert li["forward"] == {"by": "docker-proxy", "address": "172.17.0.2", "port": 80, "container": None}
    (owner,) = li["owners"]
    assert (owner["pid"], owner["name"], owner["via"]) == (proc.pid, "docker-proxy", "cmdline")


# ------------------------------------------------------------------ the policy, with a real memory


@pytest.fixture
def memory(tmp_path):
    s = Store.open(tmp_path / "db")
    yield s
    s.close()


def opened(doc: dict) -> Event:
    return Event(EventKind.OPENED, NOW, Listener.from_dict(doc))


def remember(store, event: Event) -> None:
    from portbell.daemon.model import snapshot_of

    store.record(snapshot_of([event.listener], NOW), [(event, Verdict(True, "x"))])


@needs_cgroup
def test_another_root_program_on_a_reused_wildcard_port_alerts(cgroups, memory):
    a, b = cgroups(), cgroups()
    a.spawn(IDLE)
    b.spawn(IDLE)  # two root processes in each: nobody can name the owner, only the unit
    port = free_port()
    first, _ = a.spawn(LISTEN, "0.0.0.0", str(port))
    was = opened(sample_as_nobody(port)[port])
    assert program_of(was.listener) == f"unit:service:{a.name} uid:0"
    remember(memory, was)
    a.stop(first)
    b.spawn(LISTEN, "0.0.0.0", str(port))
    now = opened(sample_as_nobody(port)[port])
    assert now.listener.unit.name == b.name
    verdict = Policy().decide(now, memory, NOW)
    assert verdict.alert, verdict.reason


@needs_cgroup
def test_a_program_reopening_its_own_port_stays_quiet(cgroups, memory):
    a = cgroups()
    a.spawn(IDLE)
    port = free_port()
    first, _ = a.spawn(LISTEN, "0.0.0.0", str(port))
    remember(memory, opened(sample_as_nobody(port)[port]))
    a.stop(first)
    a.spawn(LISTEN, "0.0.0.0", str(port))
    verdict = Policy().decide(opened(sample_as_nobody(port)[port]), memory, NOW)
    assert not verdict.alert and "before" in verdict.reason


@needs_cgroup
def test_a_first_root_loopback_program_alerts_after_another_one_was_seen(cgroups, memory):
    a, b = cgroups(), cgroups()
    a.spawn(IDLE)
    b.spawn(IDLE)
    _, pa = a.spawn(LISTEN, "127.0.0.1", "0")
    remember(memory, opened(sample_as_nobody(pa)[pa]))
    _, pb = b.spawn(LISTEN, "127.0.0.1", "0")
    policy = Policy(loopback="first-seen")
    _, pa2 = a.spawn(LISTEN, "127.0.0.1", "0")
    docs = sample_as_nobody(pb, pa2)
    assert policy.decide(opened(docs[pb]), memory, NOW).alert  # another unit: another program
    assert not policy.decide(opened(docs[pa2]), memory, NOW).alert  # the same unit again: seen


@pytest.mark.skipif(not (LINUX and is_root()), reason="needs root to drop to another user")
def test_a_root_listener_nobody_can_name_alerts_exposed_every_time_and_on_loopback_once_per_key(memory):
    """In the root cgroup (no unit) an owner is a uid alone: exposed, it alerts every time it opens;
    on loopback, the same uid on the same key again is seen."""
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        port = s.getsockname()[1]

        def work():
            with SockDiagSampler() as sampler:
                return next(li for li in sampler.sample().to_dict()["listeners"] if li["port"] == port and li["transport"] == "tcp")

        doc = as_nobody(work, drop=(s,))
    ev = opened(doc)
    if ev.listener.unit is not None:
        pytest.skip("this test process does not run in the root cgroup")
    assert program_of(ev.listener) == "uid:0"
    remember(memory, ev)
    assert Policy().decide(ev, memory, NOW).alert
    lo = opened({**doc, "address": "127.0.0.1", "exposure": "loopback", "port": 20001})
    assert Policy().decide(lo, memory, NOW).alert  # a fixed port root never held on loopback
    remember(memory, lo)
    verdict = Policy().decide(lo, memory, NOW)
    assert not verdict.alert, verdict.reason
