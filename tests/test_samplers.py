"""One contract, every sampler: real sockets in this process and in children."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys

import pytest

from portbell.daemon.model import Exposure, Key, Transport
from portbell.daemon.samplers import create

from conftest import LINUX, as_nobody, has_ipv6, is_root, machine_addresses, wait_for

needs_ipv6 = pytest.mark.skipif(not has_ipv6(), reason="no IPv6 on this machine")
linux_only = pytest.mark.skipif(not LINUX, reason="sock_diag is Linux only")


def find(sampler, transport, address, port):
    """The listener for a key, sampling until it shows up (a child may still be starting)."""
    key = Key(Transport(transport), address, port)
    return wait_for(lambda: sampler.sample().listeners.get(key), timeout=5, what=f"{key} in {sampler.name}")


def test_tcp_on_127_0_0_1_is_loopback_and_owned_by_this_process(sampler, sockets):
    s = sockets(address="127.0.0.1")
    li = find(sampler, "tcp", "127.0.0.1", s.getsockname()[1])
    assert li.exposure is Exposure.LOOPBACK
    assert li.family == 4
    assert os.getpid() in li.pids
    me = next(o for o in li.owners if o.pid == os.getpid())
    assert me.uid == os.getuid()
    assert me.name and me.started_at is not None and me.cmdline


def test_127_0_0_53_is_loopback(sampler, sockets):
    s = sockets(address="127.0.0.53")
    assert find(sampler, "tcp", "127.0.0.53", s.getsockname()[1]).exposure is Exposure.LOOPBACK


@needs_ipv6
def test_ipv6_loopback_is_loopback(sampler, sockets):
    s = sockets(socket.AF_INET6, address="::1")
    li = find(sampler, "tcp", "::1", s.getsockname()[1])
    assert (li.exposure, li.family, li.dual_stack) == (Exposure.LOOPBACK, 6, False)


def test_ipv4_wildcard_is_all_interfaces(sampler, sockets):
    s = sockets(address="0.0.0.0")
    li = find(sampler, "tcp", "0.0.0.0", s.getsockname()[1])
    assert (li.exposure, li.dual_stack) == (Exposure.ALL_INTERFACES, False)


@needs_ipv6
@linux_only
def test_wildcard_v6_without_v6only_also_serves_ipv4():
    with create("sockdiag") as sampler, socket.socket(socket.AF_INET6) as dual, socket.socket(socket.AF_INET6) as only:
        dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        only.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for s in (dual, only):
            s.bind(("::", 0))
            s.listen()
        a = find(sampler, "tcp", "::", dual.getsockname()[1])
        b = find(sampler, "tcp", "::", only.getsockname()[1])
        assert (a.exposure, a.dual_stack) == (Exposure.ALL_INTERFACES, True)
        assert (b.exposure, b.dual_stack) == (Exposure.ALL_INTERFACES, False)


@needs_ipv6
def test_udp_v6_wildcard_dual_stack_flag_on_udp_too(sockets):
    if not LINUX:
        pytest.skip("only sock_diag sees IPV6_V6ONLY")
    s = sockets(socket.AF_INET6, socket.SOCK_DGRAM, address="::", v6only=False)
    with create("sockdiag") as sampler:
        assert find(sampler, "udp", "::", s.getsockname()[1]).dual_stack is True


def test_machine_address_is_local_network_or_public(sampler, sockets):
    addresses = machine_addresses(socket.AF_INET)
    if not addresses:
        pytest.skip("this machine has no non-loopback IPv4 address")
    s = sockets(address=addresses[0])
    li = find(sampler, "tcp", addresses[0], s.getsockname()[1])
    import ipaddress

    expected = Exposure.PUBLIC if ipaddress.ip_address(addresses[0]).is_global else Exposure.LOCAL_NETWORK
    assert li.exposure is expected


def test_bound_udp_is_a_listener_but_connected_udp_is_not(sampler, sockets):
    bound = sockets(kind=socket.SOCK_DGRAM, address="127.0.0.1")
    connected = sockets(kind=socket.SOCK_DGRAM, address="127.0.0.1")
    connected.connect(bound.getsockname())
    li = find(sampler, "udp", "127.0.0.1", bound.getsockname()[1])
    assert li.transport is Transport.UDP and os.getpid() in li.pids
    snap = sampler.sample()
    assert Key(Transport.UDP, "127.0.0.1", connected.getsockname()[1]) not in snap.listeners


def test_established_connections_are_not_listeners(sampler, sockets):
    server = sockets(address="127.0.0.1")
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        snap = sampler.sample()
        ports = {k.port for k in snap.listeners if k.transport is Transport.TCP}
        assert server.getsockname()[1] in ports
        assert client.getsockname()[1] not in ports
    finally:
        client.close()
        accepted.close()


def test_listener_of_a_child_names_the_child(sampler, child):
    c = child(address="127.0.0.1")
    li = find(sampler, "tcp", "127.0.0.1", c.port)
    assert li.pids == (c.pid,)
    owner = li.owners[0]
    assert owner.name and owner.name.startswith("python")
    assert owner.exe and os.path.realpath(owner.exe) == os.path.realpath(sys.executable)
    assert owner.ppid == os.getpid()


def test_closed_listener_disappears(sampler, child):
    c = child(address="127.0.0.1")
    key = Key(Transport.TCP, "127.0.0.1", c.port)
    find(sampler, "tcp", "127.0.0.1", c.port)
    c.stop()
    wait_for(lambda: key not in sampler.sample().listeners, timeout=5, what="the listener to close")


def test_socket_shared_by_fork_shows_both_owners(child):
    c = child(address="127.0.0.1", fork=True)
    assert len(c.pids) == 2
    if LINUX:
        with create("sockdiag") as s:
            li = find(s, "tcp", "127.0.0.1", c.port)
            assert li.pids == tuple(c.pids)
    with create("psutil") as s:  # psutil names one holder: a documented limit
        li = find(s, "tcp", "127.0.0.1", c.port)
        assert len(li.pids) == 1 and li.pids[0] in c.pids


@linux_only
def test_holder_forking_after_first_sight_is_picked_up():
    """The sampler saw the socket with one holder; a fork later adds the child."""
    code = (
        "import os, socket, sys\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True); sys.stdin.readline()\n"
        "pid = os.fork()\n"
        "print(pid or os.getpid(), flush=True) if pid else None\n"
        "sys.stdin.read(); os._exit(0)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        with create("sockdiag") as s:
            assert find(s, "tcp", "127.0.0.1", port).pids == (proc.pid,)
            proc.stdin.write("fork\n")
            proc.stdin.flush()
            kid = int(proc.stdout.readline())
            key = Key(Transport.TCP, "127.0.0.1", port)
            wait_for(lambda: s.sample().listeners[key].pids == tuple(sorted((proc.pid, kid))), what="the forked child as a second owner")
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def test_reuseport_sockets_are_one_listener_with_every_owner(child):
    a = child(address="127.0.0.1", reuseport=True)
    b = child(address="127.0.0.1", port=a.port, reuseport=True)
    samplers = ["sockdiag", "psutil"] if LINUX else ["psutil"]
    for name in samplers:
        with create(name) as s:
            key = Key(Transport.TCP, "127.0.0.1", a.port)
            li = wait_for(lambda: (l := s.sample().listeners.get(key)) and len(l.pids) == 2 and l, what=f"two owners in {name}")
            assert li.pids == tuple(sorted((a.pid, b.pid)))


def test_processes_exiting_mid_scan_never_break_a_sample(sampler):
    """Dozens of short-lived listeners come and go while we sample."""
    code = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()"
    procs = []
    try:
        for _ in range(40):
            procs.append(subprocess.Popen([sys.executable, "-c", code]))
            snap = sampler.sample()
            assert snap.listeners is not None
            for li in snap.listeners.values():
                assert li.owners, li  # known or unknown, never empty
    finally:
        for p in procs:
            p.wait(timeout=30)


# ------------------------------------------------------------------ unprivileged view


@pytest.mark.skipif(not (LINUX and is_root()), reason="needs root to drop to another user")
def test_unprivileged_view_reports_unknown_owner_with_the_sockets_uid(sockets):
    """Sampled as nobody: root's socket has no visible pid but keeps uid 0, and the view is partial."""
    s = sockets(address="127.0.0.1")

    def sample():
        with create("sockdiag") as sampler:
            return sampler.sample().to_dict()

    doc = as_nobody(sample, drop=(s,))
    assert doc["complete"] is False
    li = next(li for li in doc["listeners"] if li["port"] == s.getsockname()[1] and li["transport"] == "tcp")
    assert li["owners"] == [{"pid": None, "name": None, "exe": None, "cmdline": None, "user": "root", "uid": 0, "ppid": None, "started_at": None, "via": None, "start": None}]


# ------------------------------------------------------------------ agreement


def _ss_listeners() -> dict[Key, set[int]]:
    """`ss -tulnp` as key -> pids. `*` is a wildcard dual-stack socket, shown by us as `::`."""
    out = subprocess.run(["ss", "-H", "-tulnp"], capture_output=True, text=True, check=True).stdout
    result: dict[Key, set[int]] = {}
    for line in out.splitlines():
        fields = line.split()
        netid, local = fields[0], fields[4]
        host, _, port = local.rpartition(":")
        host = host.strip("[]").split("%")[0]
        if host == "*":
            host = "::"
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        result[Key(Transport(netid), host, int(port))] = pids
    return result


def _ours(snap) -> dict[Key, set[int]]:
    return {Key(k.transport, k.address.split("%")[0], k.port): set(li.pids) for k, li in snap.listeners.items()}


@linux_only
@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed")
def test_samplers_agree_with_each_other_and_with_ss(child, sockets):
    sockets(address="127.0.0.1")
    sockets(kind=socket.SOCK_DGRAM, address="127.0.0.1")
    if has_ipv6():
        sockets(socket.AF_INET6, address="::", v6only=False)
        sockets(socket.AF_INET6, socket.SOCK_DGRAM, address="::1")
    child(address="0.0.0.0")
    child(address="127.0.0.1", fork=True)
    child(address="127.0.0.1", transport="udp")

    def agree():
        with create("sockdiag") as a, create("psutil") as b:
            ss, diag, ps = _ss_listeners(), _ours(a.sample()), _ours(b.sample())
        if not (ss.keys() == diag.keys() == ps.keys()):
            return None
        return ss, diag, ps

    ss, diag, ps = wait_for(agree, timeout=10, what="the same keys from ss, sockdiag and psutil")
    for key in ss:
        assert diag[key] == ss[key], key  # every holder, like ss
        assert ps[key] <= diag[key] and (len(ps[key]) == 1 or not diag[key]), key  # psutil names one
