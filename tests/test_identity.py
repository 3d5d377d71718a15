"""Names from cgroup paths and command lines, the JSON round trip, unit rules, the process table
keeping up with uid changes and start-up, and Windows services at the psutil seam."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from portbell.daemon.config import load
from portbell.daemon.model import Container, Exposure, Forward, Listener, Owner, Transport, Unit, UnitKind
from portbell.daemon.rules import Rule, program_of
from portbell.daemon.words import unit_label
from portbell.daemon.samplers import _procfs
from portbell.daemon.samplers._cgroup import unit_of
from portbell.daemon.samplers._forwarders import claims, forward_of, forwarder_name
from portbell.daemon.samplers._psutil import PsutilSampler

from conftest import LINUX, NOBODY, is_root, wait_for

NOW = datetime(2026, 11, 26, 9, tzinfo=timezone.utc)
CID = "ab" * 32


@pytest.mark.parametrize(
    "path, kind, name",
    [
        ("/system.slice/cups.service", "service", "cups.service"),
        ("/system.slice/systemd-resolved.service", "service", "systemd-resolved.service"),
        ("/init.scope", "scope", "init.scope"),
        ("/user.slice/user-1000.slice/session-2.scope", "session", "session-2.scope"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope", "app", "firefox"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-org.gnome.Terminal-5678.scope", "app", "org.gnome.Terminal"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-org.kde.konsole@a1b2.service", "app", "org.kde.konsole"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-my\\x2dtool-42.scope", "app", "my-tool"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-flatpak-org.mozilla.firefox-99.scope", "flatpak", "org.mozilla.firefox"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/snap.spotify.spotify-0a1b2c3d-aaaa-bbbb.scope", "snap", "spotify"),
        ("/system.slice/snap.lxd.daemon.service", "snap", "lxd"),
        ("/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service", "user-service", "pipewire.service"),
        ("/user.slice/user-1000.slice/user@1000.service/init.scope", "user-service", "user@1000.service"),
        (f"/system.slice/docker-{CID}.scope", "container", CID[:12]),
        (f"/docker/{CID}", "container", CID[:12]),
        (f"/machine.slice/libpod-{CID}.scope/container", "container", CID[:12]),
        (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-{CID}.scope", "container", CID[:12]),
        (f"/kubepods/burstable/pod1234/{CID}", "container", CID[:12]),
        ("/user.slice", "slice", "user.slice"),
        ("/process_api/70a3", "cgroup", "/process_api/70a3"),
    ],
)
def test_a_cgroup_path_names_its_unit(path, kind, name):
    unit = unit_of(path)
    assert (str(unit.kind), unit.name, unit.cgroup) == (kind, name, path)


def test_container_runtimes_and_user_units_are_told_apart():
    assert unit_of(f"/machine.slice/libpod-{CID}.scope").container.runtime == "podman"
    assert unit_of(f"/system.slice/docker-{CID}.scope").container == Container(CID, "docker")
    assert unit_of(f"/kubepods/burstable/pod1/{CID}").container.runtime == "kubernetes"
    assert unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service").uid == 1000
    assert unit_of("/") is None


def test_forwarders_are_read_from_their_command_line():
    proxy = ["/usr/bin/docker-proxy", "-proto", "udp", "-host-ip", "::", "-host-port", "5353", "-container-ip", "fd00::2", "-container-port", "53", "-use-listen-fd"]
    assert forwarder_name("docker-proxy", proxy) == "docker-proxy"
    assert claims("docker-proxy", proxy) == [(Transport.UDP, "::", 5353)]
    assert forward_of("docker-proxy", proxy, Transport.UDP, "::", 5353) == Forward("docker-proxy", "fd00::2", 53)
    pasta = ["pasta", "--config-net", "-t", "127.0.0.1/8080:80,9000-9001:7000", "-u", "5353", "--netns", "/run/user/1000/netns/x"]
    assert forwarder_name("pasta.avx2", pasta) == "pasta"
    assert set(claims("pasta", pasta)) == {(Transport.TCP, "127.0.0.1", 8080), (Transport.TCP, None, 9000), (Transport.TCP, None, 9001), (Transport.UDP, None, 5353)}
    assert forward_of("pasta", pasta, Transport.TCP, "0.0.0.0", 9001).port == 7001
    assert forward_of("rootlessport", ["rootlessport"], Transport.TCP, "0.0.0.0", 8080) == Forward("rootlessport")
    assert forwarder_name("python3", ["python3", "app.py"]) is None


# ------------------------------------------------------------------ the JSON


def full_listener() -> Listener:
    c = Container(CID, "docker", name="shop-web-1", image="nginx:1.25", project="shop", service="web")
    return Listener(
        Transport.TCP, 4, "0.0.0.0", 8080, Exposure.ALL_INTERFACES,
        owners=(Owner(pid=812, uid=0, name="docker-proxy", started_at=NOW, user="root", via="cgroup"),),
        unit=Unit(UnitKind.SERVICE, "docker.service", "/system.slice/docker.service"),
        forward=Forward("docker-proxy", "172.17.0.2", 80, c),
        candidates=None,
    )


def test_a_listener_round_trips_through_its_json_with_unit_forward_and_via():
    li = full_listener()
    doc = json.loads(json.dumps(li.to_dict()))
    assert doc["unit"] == {"kind": "service", "name": "docker.service", "cgroup": "/system.slice/docker.service"}
    assert doc["forward"]["container"]["compose_service"] == "web" and doc["owners"][0]["via"] == "cgroup"
    back = Listener.from_dict(doc)
    assert back == li and back.forward.container.image == "nginx:1.25" and back.owners[0].via == "cgroup"
    published = Listener(Transport.TCP, 4, "0.0.0.0", 8443, Exposure.ALL_INTERFACES, unit=Unit(UnitKind.CONTAINER, CID[:12], container=Container(CID)), socket=False, candidates=3)
    again = Listener.from_dict(json.loads(json.dumps(published.to_dict())))
    assert again == published and again.socket is False and again.candidates == 3


def test_a_record_from_before_units_still_loads():
    old = {"transport": "tcp", "family": 4, "address": "127.0.0.1", "port": 631, "exposure": "loopback", "dual_stack": False,
           "owners": [{"pid": 812, "name": "cupsd", "exe": "/usr/sbin/cupsd", "cmdline": ["cupsd"], "user": "root", "uid": 0, "ppid": 1, "started_at": "2026-11-26T09:00:00Z"}]}
    li = Listener.from_dict(old)
    assert li.unit is None and li.forward is None and li.socket is True and li.owners[0].via == "fd"


def test_units_label_in_plain_words():
    assert unit_label(Unit(UnitKind.SERVICE, "cups.service")) == "cups.service"
    assert unit_label(Unit(UnitKind.APP, "firefox")) == "firefox (app)"
    assert unit_label(Unit(UnitKind.USER_SERVICE, "pipewire.service", uid=1000)) == "pipewire.service (user 1000)"
    assert full_listener().forward.container and unit_label(Unit(UnitKind.CONTAINER, CID[:12], container=full_listener().forward.container)) == "shop-web-1 (container, nginx:1.25)"


# ------------------------------------------------------------------ rules


def test_program_identity_goes_exe_name_unit_uid():
    li = full_listener()
    assert program_of(li) == "docker-proxy"
    unseen = Listener(li.transport, 4, li.address, li.port, li.exposure, owners=(Owner(pid=None, uid=0),), unit=li.unit)
    assert program_of(unseen) == "unit:service:docker.service uid:0"
    other_unit = Listener(li.transport, 4, li.address, li.port, li.exposure, owners=(Owner(pid=None, uid=0),), unit=Unit(UnitKind.SERVICE, "cups.service"))
    assert program_of(other_unit) != program_of(unseen)
    assert program_of(Listener(li.transport, 4, li.address, li.port, li.exposure, owners=(Owner(pid=None, uid=0),))) == "uid:0"


def test_a_rule_matches_a_unit_glob_and_a_container_name():
    li = full_listener()
    assert Rule("trust", unit="docker.service").matches(li, NOW)
    assert Rule("trust", unit="shop-*").matches(li, NOW)  # the container it forwards to
    assert Rule("trust", unit="shop/web").matches(li, NOW)
    assert not Rule("trust", unit="cups.service").matches(li, NOW)
    assert "unit cups.service" in Rule("mute", unit="cups.service").describe()


def test_config_reads_the_unit_of_a_rule(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[[rule]]\naction = "trust"\nunit = "cups.service"\n')
    (rule,) = load(path).rules
    assert rule.unit == "cups.service"
    path.write_text('[[rule]]\naction = "trust"\nunit = 3\n')
    with pytest.raises(Exception) as err:
        load(path)
    assert "unit" in str(err.value)


# ------------------------------------------------------------------ the process table


UID_CHANGER = """
import os, sys
os.read(int(sys.argv[1]), 1)  # wait until the sampler has seen us as root
os.setgroups([]); os.setgid(%d); os.setuid(%d)
code = "import socket, sys; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1], flush=True); sys.stdin.read()"
for python in sys.argv[2:]:  # the first interpreter nobody may run
    try:
        os.execv(python, [python, "-c", code])
    except OSError:
        continue
print("none", flush=True)
""" % (NOBODY, NOBODY)


@pytest.mark.skipif(not (LINUX and is_root()), reason="needs root to drop to another user")
def test_the_process_table_keeps_up_with_a_process_that_changes_uid():
    """A root process the sampler already knows execs a program as nobody; the sampler, as nobody, names it."""
    from portbell.daemon.samplers._sockdiag import SockDiagSampler

    go_r, go_w = os.pipe()
    pythons = [os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"]
    proc = subprocess.Popen([sys.executable, "-c", UID_CHANGER, str(go_r), *pythons], pass_fds=(go_r,), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    os.close(go_r)
    out_fd = proc.stdout.fileno()
    warm = [True]

    def work():
        if warm[0]:  # as_nobody's first run, as root: only load the modules
            warm[0] = False
            with SockDiagSampler() as s:
                s.sample()
            return None
        with SockDiagSampler() as sampler:
            sampler.sample()
            assert sampler._attributor.table.procs[proc.pid].uid == 0
            os.write(go_w, b"x")
            line = os.read(out_fd, 64).split()
            if line == [b"none"]:
                return "no interpreter"
            port = int(line[0])

            def named():
                li = next((l for l in sampler.sample().listeners.values() if l.port == port and l.transport == "tcp"), None)
                return li is not None and li.pids and li.to_dict()

            return wait_for(named, timeout=10, what="the listener named by its pid")

    from conftest import as_nobody

    try:
        doc = as_nobody(work)
        if doc == "no interpreter":
            pytest.skip("no Python interpreter here may be run by nobody")
        assert [o["pid"] for o in doc["owners"]] == [proc.pid]
        assert doc["owners"][0]["uid"] == NOBODY and doc["owners"][0]["via"] == "fd"
    finally:
        os.close(go_w)
        proc.stdin.close()
        proc.wait(timeout=10)


@pytest.mark.skipif(not LINUX, reason="/proc is Linux only")
def test_processes_found_at_start_are_not_newborn(monkeypatch):
    """A retry for a socket nobody holds trusts the fd counts of the processes that were
    already there, instead of re-reading every descriptor of every process."""
    reads = []
    real = _procfs.socket_inodes
    monkeypatch.setattr(_procfs, "socket_inodes", lambda root, pid: (reads.append(pid), real(root, pid))[1])
    a = _procfs.Attributor()
    try:
        a.attribute({})  # the first sample lists the processes
        def fds(pid):
            try:
                return os.stat(f"/proc/{pid}/fd").st_size
            except OSError:
                return 0

        # processes with descriptors (a kernel thread's empty fd table is always listed: it costs nothing)
        readable = {p for p in a.table.procs if fds(p) > 0}
        nobody_holds = 2**40 + 7
        a.attribute({nobody_holds: os.geteuid()})  # the first search reads everyone once
        reads.clear()
        a.attribute({nobody_holds: os.geteuid()})  # the retry, one sample later
        assert len(readable) > 3
        reread = [p for p in reads if p in readable]
        assert len(reread) < len(readable) / 2, (len(reread), len(readable))
    finally:
        a.close()


# ------------------------------------------------------------------ Windows services (at the seam)


def test_windows_services_fill_the_unit_by_pid_and_are_asked_only_when_pids_change():
    calls = []

    def services():
        calls.append(1)
        return [("LanmanServer", os.getpid()), ("Dnscache", os.getpid()), ("Spooler", None), ("Other", 1)]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        sampler = PsutilSampler(services=services)
        li = wait_for(lambda: next((l for l in sampler.sample().listeners.values() if l.port == port and l.transport == "tcp"), None))
        assert li.unit == Unit(UnitKind.WINDOWS_SERVICE, "Dnscache")
        assert li.unit.services == ("Dnscache", "LanmanServer")
        assert li.to_dict()["unit"]["kind"] == "windows-service"
        n = len(calls)
        sampler.sample()
        sampler.sample()
        assert len(calls) == n  # the same listening pids: not asked again
