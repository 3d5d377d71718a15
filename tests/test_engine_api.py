"""The Engine API seam: a small local server speaking /containers/json on a unix socket."""

from __future__ import annotations

import json
import os
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from portbell.daemon.model import Transport, UnitKind
from portbell.daemon.samplers._engine_api import SETTLE_S, STALE_S, Engine, parse_containers
from portbell.daemon.samplers._sockdiag import SockDiagSampler

from conftest import LINUX, wait_for

ID = "4f1c" + "0" * 60


def containers(host_port: int, nat_port: int) -> list[dict]:
    """The documented shape (GET /containers/json), trimmed to what portbell reads."""
    return [
        {
            "Id": ID,
            "Names": ["/shop-web-1"],
            "Image": "nginx:1.25",
            "Labels": {"com.docker.compose.project": "shop", "com.docker.compose.service": "web"},
            "State": "running",
            "Ports": [
                {"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": host_port, "Type": "tcp"},
                {"IP": "127.0.0.1", "PrivatePort": 443, "PublicPort": nat_port, "Type": "tcp"},
                {"PrivatePort": 9000, "Type": "tcp"},  # exposed, not published
            ],
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "172.17.0.2"}}},
        }
    ]


class FakeEngine:
    """GET /containers/json on a unix socket; counts the requests."""

    def __init__(self, path: str, doc) -> None:
        self.path, self.doc, self.requests = path, doc, 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                fake.requests += 1
                if self.path.split("?")[0] != "/containers/json":
                    self.send_error(404)
                    return
                body = json.dumps(fake.doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def get_request(self):
                conn, _ = super().get_request()
                return conn, ("local", 0)

        self.server = Server(path, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def engine_socket(tmp_path):
    made = []

    def start(doc):
        made.append(FakeEngine(str(tmp_path / "docker.sock"), doc))
        return made[-1]

    yield start
    for f in made:
        f.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_containers_are_parsed_from_the_documented_shape():
    ((c, ports),) = parse_containers(containers(8080, 8443), "docker")
    assert (c.id, c.name, c.image, c.project, c.service, c.runtime) == (ID, "shop-web-1", "nginx:1.25", "shop", "web", "docker")
    assert [(p.host_address, p.host_port, p.container_address, p.container_port) for p in ports] == [
        ("127.0.0.1", 8080, "172.17.0.2", 80),
        ("127.0.0.1", 8443, "172.17.0.2", 443),
    ]


def test_the_engine_is_asked_only_when_container_processes_change(engine_socket):
    fake = engine_socket(containers(8080, 8443))
    clock = Clock()
    engine = Engine([fake.path], clock=clock)
    assert not engine.refresh(frozenset())  # no container process: nothing to ask
    assert fake.requests == 0 and engine.missing is None
    assert engine.refresh(frozenset({(10, 1)}))
    assert fake.requests == 1 and engine.containers[ID].name == "shop-web-1"
    for _ in range(50):  # steady: never asked on a poll
        assert not engine.refresh(frozenset({(10, 1)}))
    assert fake.requests == 1
    clock.now += SETTLE_S
    assert engine.refresh(frozenset({(10, 1)}))  # once more, after the change settled
    clock.now += 1
    assert not engine.refresh(frozenset({(10, 1)}))
    assert engine.refresh(frozenset({(10, 1), (11, 1)}))  # a new container process
    clock.now += STALE_S + SETTLE_S
    engine.refresh(frozenset({(10, 1), (11, 1)}))
    assert fake.requests == 4
    clock.now += 1
    assert not engine.refresh(frozenset({(10, 1), (11, 1)}))
    clock.now += STALE_S
    assert engine.refresh(frozenset({(10, 1), (11, 1)}))  # a rename is picked up, slowly
    assert fake.requests == 5


def test_without_the_api_the_engine_says_what_is_missing_and_why(tmp_path):
    engine = Engine([str(tmp_path / "nothing.sock")], clock=Clock())
    engine.refresh(frozenset({(10, 1)}))
    assert engine.missing.startswith("no Docker or Podman Engine API socket was found")
    assert "named by their id only" in engine.missing and engine.containers == {}
    broken = tmp_path / "broken.sock"
    broken.write_text("not a socket")
    engine = Engine([str(broken)], clock=Clock())
    engine.refresh(frozenset({(10, 1)}))
    assert engine.missing.startswith("the container engine's API could not be used")


def test_a_slow_engine_costs_at_most_the_timeout(tmp_path):
    import socket
    import time

    path = str(tmp_path / "slow.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()  # accepts into the backlog, never answers
        engine = Engine([path], clock=Clock(), timeout_s=0.2)
        started = time.monotonic()
        engine.refresh(frozenset({(10, 1)}))
        assert time.monotonic() - started < 2
        assert engine.missing and "could not be used" in engine.missing


@pytest.mark.skipif(not LINUX, reason="sock_diag is Linux only")
def test_sampler_names_the_forwarded_container_and_lists_ports_published_without_a_socket(engine_socket, tmp_path):
    import subprocess

    link = tmp_path / "docker-proxy"
    link.symlink_to(sys.executable)
    import socket as _s

    with _s.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host_port = probe.getsockname()[1]
    with _s.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nat_port = probe.getsockname()[1]  # published by the engine, no socket here
    fake = engine_socket(containers(host_port, nat_port))
    code = (
        "import socket, sys\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {host_port})); s.listen(); print(1, flush=True); sys.stdin.read()\n"
    )
    args = ["-proto", "tcp", "-host-ip", "127.0.0.1", "-host-port", str(host_port), "-container-ip", "172.17.0.2", "-container-port", "80"]
    proc = subprocess.Popen([str(link), "-c", code, *args], executable=str(link), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        with SockDiagSampler(engine=Engine([fake.path])) as sampler:
            def both():
                ls = sampler.sample().listeners
                got = {li.port: li for li in ls.values() if li.transport is Transport.TCP and li.port in (host_port, nat_port)}
                fwd = got.get(host_port)
                return got if len(got) == 2 and fwd.forward and fwd.forward.container else None

            got = wait_for(both, timeout=10, what="the forwarded port and the published one")
            proxied, nat = got[host_port], got[nat_port]
            assert proxied.socket and proxied.owners[0].pid == proc.pid
            assert (proxied.forward.address, proxied.forward.port) == ("172.17.0.2", 80)
            assert proxied.forward.container.name == "shop-web-1" and proxied.forward.container.service == "web"
            assert nat.socket is False and nat.owners == ()
            assert nat.unit.kind is UnitKind.CONTAINER and nat.unit.container.image == "nginx:1.25"
            assert (nat.forward.address, nat.forward.port) == ("172.17.0.2", 443)
            assert nat.to_dict()["socket"] is False
            asked = fake.requests
            for _ in range(20):
                sampler.sample()
            assert fake.requests - asked <= 1  # a settle re-check at most, never once a poll
            assert sampler.notes == []
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert os.path.exists(fake.path)
