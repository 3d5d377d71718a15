"""`portbell doctor` and `who` on a client port, with real sockets on this machine.

Every connection goes to loopback only. Listeners bind on port 0 (127.0.0.1,
::1, 0.0.0.0, ::); "nothing listens" and "nearby port" bind a neighbour and ask
about a port proven free. The real sock_diag sampler reads them; the command
line runs as a subprocess for exit codes and --json. Pure tests cover what one
machine cannot stage (firewall rule sets, another user's visible process).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import pytest

from portbell.daemon import doctor, ports
from portbell.daemon.errors import UsageError
from portbell.daemon.model import Exposure, Listener, Owner, Transport
from portbell.daemon.samplers import create

from conftest import NOBODY, as_nobody

# ----------------------------------------------------------------- helpers


def _ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback_works(), reason="this machine has no IPv6 loopback")
needs_root = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to run a check as another user")


@pytest.fixture(autouse=True)
def no_record(tmp_path, monkeypatch):
    """Every check runs against an empty state directory: this machine's own record stays out."""
    monkeypatch.setenv("PORTBELL_STATE_DIR", str(tmp_path / "empty-state"))


@pytest.fixture
def stack():
    with ExitStack() as s:
        yield s


def listen(stack: ExitStack, address: str, port: int = 0, *, v6only: bool = True, udp: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM))
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    s.bind((address, port))
    if not udp:
        s.listen()
    return s


def port_is_free(port: int) -> bool:
    """Nothing holds `port` on any address, TCP or UDP, IPv4 or IPv6 (binds the wildcards, then lets go)."""
    tries = [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")] if _ipv6_loopback_works() else [(socket.AF_INET, "0.0.0.0")]
    for family, wildcard in tries:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(family, kind) as s:
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s.bind((wildcard, port))
                except OSError:
                    return False
    return True


def _free_elsewhere(port: int, family: int, udp: bool) -> bool:
    """Nothing else holds `port` in the other family, nor in the other transport of this family."""
    checks = [(socket.AF_INET if family == socket.AF_INET6 else socket.AF_INET6, kind) for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM)]
    checks.append((family, socket.SOCK_STREAM if udp else socket.SOCK_DGRAM))
    for fam, kind in checks:
        if fam == socket.AF_INET6 and not _ipv6_loopback_works():
            continue
        with socket.socket(fam, kind) as s:
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", port))
            except OSError:
                return False
    return True


def _free_at(address: str, port: int, udp: bool) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
            return True
        except OSError:
            return False


def listen_alone(
    stack: ExitStack, address: str, *, v6only: bool = True, udp: bool = False, free_at: tuple[str, ...] = ()
) -> socket.socket:
    """A listener on a port-0 port that nothing else holds, in either family or transport,
    nor on the addresses in `free_at` (same family and transport).

    A port-0 bind is unique only within its family and transport; other suites
    running on this machine may hold the same number elsewhere.
    """
    for _ in range(100):
        with ExitStack() as attempt:
            sock = listen(attempt, address, v6only=v6only, udp=udp)
            port = sock.getsockname()[1]
            if _free_elsewhere(port, sock.family, udp) and all(_free_at(a, port, udp) for a in free_at):
                stack.enter_context(attempt.pop_all())
                return sock
    pytest.fail(f"no port on {address} free in the other family and transport in 100 tries")


def free_port_with_listening_neighbour(stack: ExitStack) -> tuple[int, int]:
    """(P, P+1): P and P-1 are free on every address and transport, P+1 listens on 127.0.0.1."""
    for _ in range(100):
        with ExitStack() as attempt:
            neighbour = listen(attempt, "127.0.0.1")
            port = neighbour.getsockname()[1] - 1
            if port >= 1024 and port_is_free(port) and port_is_free(port - 1):
                stack.enter_context(attempt.pop_all())
                return port, port + 1
    pytest.fail("found no free port next to a listening one in 100 tries")


def run_doctor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "portbell.daemon", "doctor", *args], capture_output=True, text=True, timeout=60
    )


def doctor_json(*args: str) -> tuple[int, dict]:
    done = run_doctor(*args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def codes(data: dict) -> list[str]:
    return [f["code"] for f in data["findings"]]


def finding(data: dict, code: str) -> dict:
    found = [f for f in data["findings"] if f["code"] == code]
    assert found, f"no {code} finding in {codes(data)}"
    return found[0]


def results(data: dict) -> dict[str, str]:
    return {a["address"]: a["result"] for a in data["target"]["addresses"]}


def examine(text: str, transport: Transport = Transport.TCP, **kw) -> doctor.Diagnosis:
    sampler = create("sockdiag")
    try:
        return doctor.examine(text, transport, sampler=sampler, **kw)
    finally:
        sampler.close()


# ---------------------------------------------------- localhost, two families


@needs_ipv6
def test_ipv4_only_listener_behind_localhost_says_connect_to_127_0_0_1(stack):
    port = listen_alone(stack, "127.0.0.1").getsockname()[1]

    code, data = doctor_json(f"localhost:{port}")

    assert code == 0
    assert data["target"]["host"] == "localhost"
    assert [a["address"] for a in data["target"]["addresses"]] == ["::1", "127.0.0.1"]
    assert results(data) == {"::1": "refused", "127.0.0.1": "accepted"}
    mismatch = finding(data, "ipv4-only")
    assert "Node 17+" in mismatch["sentence"]
    assert "connect to 127.0.0.1 instead of localhost" in mismatch["fix"]
    assert "ipv6-only" not in codes(data)


@needs_ipv6
def test_ipv6_only_listener_is_checked_whatever_the_hosts_file_says(stack):
    # This machine's resolver may map localhost to 127.0.0.1 only; doctor still tries ::1.
    port = listen_alone(stack, "::1", v6only=True).getsockname()[1]

    code, data = doctor_json(f"localhost:{port}")

    assert code == 0
    assert results(data) == {"::1": "accepted", "127.0.0.1": "refused"}
    mismatch = finding(data, "ipv6-only")
    assert "connect to [::1] instead of localhost" in mismatch["fix"]
    assert "--host 127.0.0.1" in mismatch["fix"]
    assert "ipv4-only" not in codes(data)


# ------------------------------------------------------------- TCP vs UDP


def test_udp_only_port_says_tcp_is_refused_and_exits_1(stack):
    port = listen_alone(stack, "127.0.0.1", udp=True).getsockname()[1]

    code, data = doctor_json(f"localhost:{port}")

    assert code == 1
    assert data["reachable"] is False
    udp = finding(data, "udp-only")
    assert "Only UDP listens" in udp["sentence"]
    assert f"nc -u 127.0.0.1 {port}" in udp["fix"]
    assert "nothing-listens" not in codes(data)
    assert [li["transport"] for li in data["listeners"]] == ["udp"]

    code, data = doctor_json(f"localhost:{port}", "--udp")
    assert code == 0
    assert "udp-only" not in codes(data)
    assert all(a["result"] == "not-tried" for a in data["target"]["addresses"])


def test_tcp_only_port_asked_about_udp_exits_1(stack):
    port = listen_alone(stack, "127.0.0.1").getsockname()[1]

    code, data = doctor_json(f"127.0.0.1:{port}", "--udp")

    assert code == 1
    assert "tcp-only" in codes(data)
    assert data["target"]["transport"] == "udp"


# ---------------------------------------------------------------- exposure


@needs_ipv6
def test_loopback_only_listener_tells_how_to_bind_for_other_machines(stack):
    v4 = listen_alone(stack, "127.0.0.1")
    port = v4.getsockname()[1]
    listen(stack, "::1", port)  # free: listen_alone proved it

    code, data = doctor_json(f"localhost:{port}")

    assert code == 0
    assert results(data) == {"::1": "accepted", "127.0.0.1": "accepted"}
    loop = finding(data, "loopback-only")
    assert "other machines cannot" in loop["sentence"]
    assert "start the server with --host 0.0.0.0 (and open the firewall) if other machines should reach it" in loop["fix"]
    assert not {"ipv4-only", "ipv6-only", "all-interfaces"} & set(codes(data))


@needs_ipv6
def test_dual_stack_wildcard_listener_says_other_machines_can_reach_it(stack):
    port = listen(stack, "::", v6only=False).getsockname()[1]

    code, data = doctor_json(f"localhost:{port}")

    assert code == 0
    assert results(data) == {"::1": "accepted", "127.0.0.1": "accepted"}
    wide = finding(data, "all-interfaces")
    assert "other machines can reach it" in wide["sentence"]
    assert "also serves IPv4" in wide["sentence"]
    assert "firewall" in wide["sentence"]
    assert "--host 127.0.0.1" in wide["fix"]
    assert not {"loopback-only", "ipv4-only", "ipv6-only"} & set(codes(data))


def test_ipv4_wildcard_listener_is_exposed_and_checked_against_the_firewall(stack):
    port = listen_alone(stack, "0.0.0.0").getsockname()[1]

    diagnosis = examine(f"127.0.0.1:{port}")

    assert diagnosis.reachable
    wide = diagnosis.finding(doctor.Code.ALL_INTERFACES)
    assert wide is not None
    assert f"0.0.0.0:{port}" in wide.sentence
    # whichever firewall this machine has, the sentence says what was found
    assert "firewall" in wide.sentence and "was not checked" not in wide.sentence
    assert diagnosis.finding(doctor.Code.LOOPBACK_ONLY) is None


def test_listener_bound_to_another_address_names_it(stack):
    try:
        port = listen_alone(stack, "127.0.0.2", free_at=("127.0.0.1",)).getsockname()[1]
    except OSError:
        pytest.skip("127.0.0.2 cannot be bound here")

    code, data = doctor_json(f"127.0.0.1:{port}")

    assert code == 1
    other = finding(data, "other-address")
    assert f"127.0.0.2:{port}" in other["sentence"]
    assert f"connect to 127.0.0.2:{port} instead" in other["fix"]


# ------------------------------------------------- nothing listens, history


def test_nothing_listening_names_the_last_holder_from_history(stack):
    port, _neighbour = free_port_with_listening_neighbour(stack)
    closed_at = datetime.now(timezone.utc) - timedelta(minutes=5)
    was = Listener(
        Transport.TCP, 4, "127.0.0.1", port, Exposure.LOOPBACK,
        owners=(Owner(pid=4242, uid=1000, name="node", cmdline=("node", "server.js"), user="ana"),),
    )
    asked: list[tuple[str, int]] = []

    def last_holder(transport: str, p: int):
        asked.append((transport, p))
        return (was, closed_at) if p == port else None

    diagnosis = examine(f"localhost:{port}", last_holder=last_holder)

    assert not diagnosis.reachable
    assert asked == [("tcp", port)]
    assert diagnosis.finding(doctor.Code.NOTHING_LISTENS) is not None
    last = diagnosis.finding(doctor.Code.LAST_LISTENER)
    assert last is not None
    assert "node (pid 4242)" in last.sentence and f"127.0.0.1:{port}" in last.sentence
    assert "5m" in last.sentence
    assert last.fix == "start it again: `node server.js`"
    assert diagnosis.finding(doctor.Code.NO_HISTORY) is None


def test_nothing_listening_without_history_says_start_the_daemon(stack):
    port, _neighbour = free_port_with_listening_neighbour(stack)

    code, data = doctor_json(f"localhost:{port}")

    assert code == 1
    assert data["reachable"] is False
    assert results(data) == {"::1": "refused", "127.0.0.1": "refused"}
    assert "nothing-listens" in codes(data)
    assert "start `portbell daemon` to keep a history" in finding(data, "no-history")["fix"]
    assert data["listeners"] == []


def test_the_command_line_reads_the_last_holder_from_the_daemons_record(stack, tmp_path):
    from portbell.daemon.model import Event, EventKind, snapshot_of
    from portbell.daemon.rules import Verdict
    from portbell.daemon.record import Store

    port, _neighbour = free_port_with_listening_neighbour(stack)
    closed_at = datetime.now(timezone.utc) - timedelta(hours=2)
    was = Listener(
        Transport.TCP, 4, "127.0.0.1", port, Exposure.LOOPBACK,
        owners=(Owner(pid=31337, uid=0, name="vite", cmdline=("npx", "vite", "--port", str(port)), user="root"),),
    )
    store = Store.open(tmp_path / "portbell.db")
    try:
        store.record(snapshot_of([], closed_at), [(Event(EventKind.CLOSED, closed_at, was), Verdict(False, "test"))])
    finally:
        store.close()

    done = subprocess.run(
        [sys.executable, "-m", "portbell.daemon", "doctor", f"localhost:{port}", "--json"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PORTBELL_STATE_DIR": str(tmp_path)},
    )

    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    last = finding(data, "last-listener")
    assert "vite (pid 31337)" in last["sentence"] and "2h" in last["sentence"]
    assert last["fix"] == f"start it again: `npx vite --port {port}`"
    assert "no-history" not in codes(data)


def test_history_that_never_saw_the_port_says_so(stack):
    port, _neighbour = free_port_with_listening_neighbour(stack)

    diagnosis = examine(f"localhost:{port}", last_holder=lambda transport, p: None)

    assert diagnosis.codes[:2] == ["nothing-listens", "never-seen"]


def test_a_nearby_port_that_listens_is_suggested(stack):
    port, neighbour = free_port_with_listening_neighbour(stack)

    done = run_doctor(f"localhost:{port}")

    assert done.returncode == 1, done.stderr
    assert "A connection would fail." in done.stdout
    assert f"did you mean localhost:{neighbour}?" in done.stdout
    code, data = doctor_json(f"localhost:{port}")
    near = finding(data, "nearby-port")
    assert f"{neighbour} (" in near["sentence"]


def test_a_listening_port_does_not_suggest_neighbours(stack):
    port, neighbour = free_port_with_listening_neighbour(stack)
    listen(stack, "127.0.0.1", port)

    diagnosis = examine(f"127.0.0.1:{port}")

    assert diagnosis.reachable
    assert diagnosis.finding(doctor.Code.NEARBY_PORT) is None


@pytest.mark.parametrize("dual_stack, reachable_v4", [(True, True), (False, False)])
def test_udp_wildcard_v6_serves_ipv4_only_when_dual_stack(dual_stack, reachable_v4):
    # UDP is never probed, so the dual-stack flag alone decides whether 127.0.0.1 is served
    li = Listener(Transport.UDP, 6, "::", 5353, Exposure.ALL_INTERFACES, dual_stack=dual_stack)
    target = doctor.Target("localhost", 5353, Transport.UDP, doctor.LOCALHOST, localhost=True)
    probes = [doctor.Probe(a, doctor.Outcome.NOT_TRIED) for a in doctor.LOCALHOST]

    d = doctor.diagnose(target, [li], probes, ports.info(5353, "udp"))

    assert d.reachable
    assert (d.finding(doctor.Code.IPV6_ONLY) is None) is reachable_v4
    assert d.finding(doctor.Code.ALL_INTERFACES) is not None


def test_a_listener_that_does_not_accept_is_reported_with_its_owner():
    li = Listener(Transport.TCP, 4, "127.0.0.1", 8000, Exposure.LOOPBACK, owners=(Owner(pid=9, uid=0, name="gunicorn"),))
    target = doctor.Target("127.0.0.1", 8000, Transport.TCP, ("127.0.0.1",))

    d = doctor.diagnose(target, [li], [doctor.Probe("127.0.0.1", doctor.Outcome.TIMEOUT, "no answer within 1s")], ports.info(8000))

    assert not d.reachable
    failed = d.finding(doctor.Code.CONNECT_FAILED)
    assert failed is not None
    assert failed.sentence.startswith("127.0.0.1:8000 is served by gunicorn (pid 9)") and "timed out" in failed.sentence


def test_a_wildcard_of_the_other_family_points_to_its_loopback():
    li = Listener(Transport.TCP, 4, "0.0.0.0", 8000, Exposure.ALL_INTERFACES)
    target = doctor.Target("::1", 8000, Transport.TCP, ("::1",))

    d = doctor.diagnose(target, [li], [doctor.Probe("::1", doctor.Outcome.REFUSED)], ports.info(8000))

    other = d.finding(doctor.Code.OTHER_ADDRESS)
    assert other is not None and other.fix.startswith("connect to 127.0.0.1:8000 instead")


def test_nearby_ports_are_nearest_first_and_the_higher_one_wins_a_tie():
    def tcp(port: int) -> Listener:
        return Listener(Transport.TCP, 4, "127.0.0.1", port, Exposure.LOOPBACK, owners=(Owner(pid=port, uid=0, name="node"),))

    target = doctor.Target("localhost", 3000, Transport.TCP, ("127.0.0.1",))
    probes = [doctor.Probe("127.0.0.1", doctor.Outcome.REFUSED)]
    near = doctor.diagnose(target, [tcp(2999), tcp(3001), tcp(3005), tcp(3011), tcp(8080)], probes, ports.info(3000))

    found = near.finding(doctor.Code.NEARBY_PORT)
    assert found is not None
    assert "did you mean localhost:3001?" in found.fix
    assert found.sentence.index("3001 (") < found.sentence.index("2999 (") < found.sentence.index("3005 (")
    assert "3011" not in found.sentence and "8080" not in found.sentence


# ------------------------------------------------------- another user's port


@needs_root
def test_a_root_socket_seen_by_another_user_is_a_partial_view(stack):
    sock = listen_alone(stack, "127.0.0.1")
    port = sock.getsockname()[1]

    data = as_nobody(
        lambda: examine(f"127.0.0.1:{port}", command_line=f"portbell doctor 127.0.0.1:{port}").to_dict(), drop=(sock,)
    )

    assert data["reachable"] is True
    partial = finding(data, "other-user")
    assert "uid 0" in partial["sentence"] and "partial" in partial["sentence"]
    assert f"sudo portbell doctor 127.0.0.1:{port}" in partial["fix"]
    assert data["listeners"][0]["owners"][0]["pid"] is None


@needs_root
def test_a_listener_of_another_user_is_named_with_its_process(stack):
    # the listener belongs to nobody; root's view is complete, so it is named, not "partial"
    read_end, write_end = os.pipe()
    release_r, release_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.close(release_w)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                s.listen()
                os.write(write_end, str(s.getsockname()[1]).encode())
                os.read(release_r, 1)  # hold the socket until the parent closes its end
        finally:
            os._exit(0)
    os.close(write_end)
    os.close(release_r)
    try:
        port = int(os.read(read_end, 16) or b"0")
        assert port, "the child as nobody could not listen"
        diagnosis = examine(f"127.0.0.1:{port}")
    finally:
        os.close(release_w)  # EOF: the child lets go
        os.waitpid(pid, 0)
        os.close(read_end)

    other = diagnosis.finding(doctor.Code.OTHER_USER)
    assert other is not None
    assert f"(uid {NOBODY})" in other.sentence and f"(pid {pid})" in other.sentence
    assert "partial" not in other.sentence


def test_a_visible_process_of_another_user_is_named():
    li = Listener(
        Transport.TCP, 4, "127.0.0.1", 5432, Exposure.LOOPBACK,
        owners=(Owner(pid=77, uid=113, name="postgres", user="postgres"),),
    )
    target = doctor.Target("localhost", 5432, Transport.TCP, ("127.0.0.1",))
    probes = [doctor.Probe("127.0.0.1", doctor.Outcome.ACCEPTED)]

    mine = doctor.diagnose(target, [li], probes, ports.info(5432), uid=113)
    theirs = doctor.diagnose(target, [li], probes, ports.info(5432), uid=1000, complete=False)

    assert mine.finding(doctor.Code.OTHER_USER) is None
    other = theirs.finding(doctor.Code.OTHER_USER)
    assert other is not None and "postgres (uid 113)" in other.sentence and "(pid 77)" in other.sentence
    # a partial snapshot does not make a process it does show invisible
    assert "partial" not in other.sentence


def test_a_hidden_owner_is_partial_only_when_the_view_is():
    li = Listener(Transport.TCP, 4, "127.0.0.1", 631, Exposure.LOOPBACK, owners=(Owner(pid=None, uid=0, user="root"),))
    target = doctor.Target("127.0.0.1", 631, Transport.TCP, ("127.0.0.1",))
    probes = [doctor.Probe("127.0.0.1", doctor.Outcome.ACCEPTED)]

    partial = doctor.diagnose(target, [li], probes, ports.info(631), uid=1000, complete=False)
    complete = doctor.diagnose(target, [li], probes, ports.info(631), uid=1000, complete=True)

    assert "partial" in partial.finding(doctor.Code.OTHER_USER).sentence
    assert "sudo portbell doctor 127.0.0.1:631" in partial.finding(doctor.Code.OTHER_USER).fix
    assert "another PID namespace" in complete.finding(doctor.Code.OTHER_USER).sentence


# ------------------------------------------------- this machine only, input


def test_an_address_of_another_machine_is_refused_without_connecting():
    done = run_doctor("203.0.113.7:80")

    assert done.returncode == 2
    assert "this machine only" in done.stderr
    assert done.stdout == ""


def test_connect_refuses_an_address_this_machine_does_not_own():
    with pytest.raises(UsageError, match="not an address of this machine"):
        doctor.connect("203.0.113.7", 80)
    assert doctor.is_local("127.0.0.1") and not doctor.is_local("203.0.113.7")


def test_a_name_resolving_partly_elsewhere_keeps_only_local_addresses():
    def local(a: str) -> bool:
        return a.startswith("127.")

    target = doctor.resolve("127.0.0.1", 80, Transport.TCP, local=local)
    assert target.addresses == ("127.0.0.1",)
    with pytest.raises(UsageError, match="this machine only"):
        doctor.resolve("127.0.0.1", 80, Transport.TCP, local=lambda a: False)


def test_localhost_means_both_loopbacks_whatever_the_resolver_says():
    target = doctor.resolve("localhost", 3000, Transport.TCP)
    assert target.addresses == ("::1", "127.0.0.1")
    assert target.localhost


@pytest.mark.parametrize("text", ["::1:80", "abc", "0", "70000", "localhost:", "0.0.0.0:80", "[::1]80"])
def test_bad_input_exits_2(text):
    done = run_doctor(text)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.startswith("portbell: ")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3000", ("localhost", 3000)),
        ("localhost:3000", ("localhost", 3000)),
        ("[::1]:8080", ("::1", 8080)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("http://localhost:5173/app", ("localhost", 5173)),
        ("https://localhost/", ("localhost", 443)),
    ],
)
def test_targets_parse(text, expected):
    assert doctor.parse_target(text) == expected


# ------------------------------------------------------------- JSON shape


def test_json_shape_is_versioned_and_every_finding_has_code_sentence_fix(stack):
    port = listen_alone(stack, "127.0.0.1").getsockname()[1]

    code, data = doctor_json(f"localhost:{port}")

    assert set(data) == {"version", "target", "reachable", "findings", "listeners"}
    assert data["version"] == 1
    assert set(data["target"]) == {"host", "port", "transport", "addresses", "not_local", "resolver"}
    assert data["target"]["port"] == port and data["target"]["transport"] == "tcp"
    assert data["reachable"] is True and code == 0
    for f in data["findings"]:
        assert set(f) == {"code", "sentence", "fix"}
        assert f["code"] in {c.value for c in doctor.Code}
        assert f["sentence"].endswith(".") and f["fix"]
    (li,) = data["listeners"]
    assert li["address"] == "127.0.0.1" and li["port"] == port and li["owners"][0]["pid"] == os.getpid()


# ------------------------------------------------------------ firewall facts


NFT_DROPPING = """
table inet filter {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iif "lo" accept
		tcp dport 22 accept
	}
	chain output {
		type filter hook output priority filter; policy accept;
	}
}
"""

NFT_OPEN = """
table inet filter {
	chain input {
		type filter hook input priority filter; policy accept;
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
	}
}
"""

IPTABLES_UFW = """-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N ufw-before-input
-N ufw-user-input
-A INPUT -j ufw-before-input
-A ufw-before-input -i lo -j ACCEPT
-A ufw-before-input -j ufw-user-input
-A ufw-user-input -p tcp --dport 8000 -j REJECT --reject-with icmp-port-unreachable
"""

IPTABLES_OPEN = """-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER
-A FORWARD -j DOCKER
-A DOCKER -j DROP
"""


def test_firewall_rule_sets_are_read_for_inbound_filtering():
    assert doctor.nft_filters_inbound(NFT_DROPPING)
    assert not doctor.nft_filters_inbound(NFT_OPEN)
    assert doctor.iptables_filters_inbound(IPTABLES_UFW)
    assert not doctor.iptables_filters_inbound(IPTABLES_OPEN)
    assert doctor.iptables_filters_inbound("-P INPUT DROP\n")


def test_firewall_detection_uses_only_read_only_queries_and_says_what_it_found():
    ran: list[list[str]] = []

    def run(argv):
        ran.append(argv)
        return {"nft": (0, NFT_DROPPING), "iptables": (4, "Permission denied (you must be root)")}[argv[0]]

    if sys.platform in ("darwin", "win32"):
        pytest.skip("the Linux tools are checked here")
    fw = doctor.detect_firewall(which=lambda t: t if t in ("nft", "iptables") else None, run=run)

    assert ran == [["nft", "list", "ruleset"], ["iptables", "-S"]]
    assert fw.tools == ("nft", "iptables") and fw.filters_inbound is True
    li = Listener(Transport.TCP, 4, "0.0.0.0", 8000, Exposure.ALL_INTERFACES)
    target = doctor.Target("localhost", 8000, Transport.TCP, ("127.0.0.1",))
    d = doctor.diagnose(target, [li], [doctor.Probe("127.0.0.1", doctor.Outcome.ACCEPTED)], ports.info(8000), firewall=fw)
    assert "nft and iptables are present and inbound traffic is filtered" in d.finding(doctor.Code.ALL_INTERFACES).sentence

    none = doctor.detect_firewall(which=lambda t: None, run=run)
    assert none.tools == () and len(ran) == 2


# ------------------------------------------------- who on an ephemeral port


def test_who_on_a_client_port_says_it_was_assigned_automatically(stack):
    server = listen(stack, "127.0.0.1")
    client = stack.enter_context(socket.create_connection(server.getsockname(), timeout=5))
    client_port = client.getsockname()[1]
    if not ports.info(client_port).ephemeral:
        pytest.skip("the client port is outside the ephemeral range on this machine")

    done = subprocess.run(
        [sys.executable, "-m", "portbell.daemon", "who", str(client_port)], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 1
    assert "most likely assigned automatically to a client socket" in done.stdout
    assert f"127.0.0.1:{client_port}" in done.stdout
    assert "ESTABLISHED" in done.stdout
    assert f"127.0.0.1:{server.getsockname()[1]}" in done.stdout
