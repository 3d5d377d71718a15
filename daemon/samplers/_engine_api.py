"""Containers from the Docker or Podman Engine API, when the user may reach it.

One request, `GET /containers/json` (running containers; Podman serves the same
Docker-compatible shape), over the engine's unix socket, with a short timeout.
The API is optional: without it containers are known by the id in their cgroup,
and `missing` says what is missing and why (for `portbell status`).

It is cheap by construction: `Engine.refresh(signature)` asks only when the
signature (the set of forwarder and container-shim processes, which the process
table already knows) changed, once more `SETTLE_S` after a change (a container
publishes its ports a moment after its shim starts), and every `STALE_S` while
containers exist (a rename); never on every poll, and never while no container
process exists at all.

Sockets tried, in order: $DOCKER_HOST and $CONTAINER_HOST when they are unix://
addresses, the rootless sockets under $XDG_RUNTIME_DIR (docker.sock,
podman/podman.sock), then /var/run/docker.sock and /run/podman/podman.sock.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

TYPE_CHECKING = False  # typing costs 2 ms of every `portbell who`: annotations only need it when checked
if TYPE_CHECKING:
    from typing import Any

from ..errors import EngineError
from ..model import Container, value

TIMEOUT_S = 0.5
SETTLE_S = 2.0
STALE_S = 60.0


def socket_paths(env: dict[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    out: list[str] = []
    for var in ("DOCKER_HOST", "CONTAINER_HOST"):
        value = env.get(var, "")
        if value.startswith("unix://"):
            out.append(value[len("unix://"):])
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        out += [f"{runtime}/docker.sock", f"{runtime}/podman/podman.sock"]
    out += ["/var/run/docker.sock", "/run/podman/podman.sock"]
    return list(dict.fromkeys(out))


@value
class Published:
    """One port a container publishes: host (transport, address, port) -> container (address, port)."""

    transport: str  # "tcp" | "udp"
    host_address: str  # "0.0.0.0", "::", or a specific address
    host_port: int
    container_address: str | None
    container_port: int
    container: Container


def get_json(path: str, request: str, timeout_s: float = TIMEOUT_S) -> Any:
    """GET `request` from the HTTP server on unix socket `path`; the decoded JSON body."""
    import http.client

    class _Unix(http.client.HTTPConnection):
        def connect(self) -> None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout_s)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            self.sock = sock

    conn = _Unix("localhost", timeout=timeout_s)
    try:
        conn.request("GET", request, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        body = resp.read(16 << 20)
        if resp.status != 200:
            raise EngineError(f"{path} answered {resp.status} {resp.reason} to GET {request}", path=path)
        import json  # only when an Engine API answers: most machines have none

        return json.loads(body)
    except PermissionError as err:
        raise EngineError(f"{path}: permission denied", path=path, denied=True) from err
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise EngineError(f"{path}: {err}", path=path) from err
    finally:
        conn.close()


def parse_containers(doc: Any, runtime: str) -> list[tuple[Container, list[Published]]]:
    """The Engine API's container list as (Container, its published ports). Unknown shapes are skipped."""
    out = []
    if not isinstance(doc, list):
        return out
    for item in doc:
        if not isinstance(item, dict) or not isinstance(item.get("Id"), str):
            continue
        names = item.get("Names") or []
        labels = item.get("Labels") or {}
        container = Container(
            item["Id"],
            runtime,
            name=str(names[0]).lstrip("/") if names else None,
            image=item.get("Image") if isinstance(item.get("Image"), str) else None,
            project=labels.get("com.docker.compose.project") if isinstance(labels, dict) else None,
            service=labels.get("com.docker.compose.service") if isinstance(labels, dict) else None,
        )
        address = _container_address(item)
        ports = []
        for p in item.get("Ports") or []:
            try:
                if p.get("PublicPort") is None:
                    continue
                host = p.get("IP") or "0.0.0.0"
                ports.append(Published(str(p.get("Type") or "tcp"), host, int(p["PublicPort"]), address, int(p["PrivatePort"]), container))
            except (TypeError, ValueError, KeyError, AttributeError):
                continue
        out.append((container, ports))
    return out


def _container_address(item: dict) -> str | None:
    networks = ((item.get("NetworkSettings") or {}).get("Networks") or {}) if isinstance(item.get("NetworkSettings"), dict) else {}
    for net in networks.values() if isinstance(networks, dict) else ():
        if isinstance(net, dict) and net.get("IPAddress"):
            return str(net["IPAddress"])
    return None


class Engine:
    """The containers an Engine API reports, refreshed only when the container processes change."""

    def __init__(self, paths: list[str] | None = None, *, clock: Callable[[], float] = time.monotonic,
                 timeout_s: float = TIMEOUT_S) -> None:
        self._paths = paths
        self._clock = clock
        self.timeout_s = timeout_s
        self.containers: dict[str, Container] = {}  # id -> container
        self.published: list[Published] = []
        self.missing: str | None = None  # why there is no API, when containers exist
        self.generation = 0  # bumps when what it reports changed
        self.queries = 0
        self._signature: frozenset | None = None
        self._asked_at = -1e18
        self._changed_at = -1e18
        self._settled = True

    def refresh(self, signature: frozenset) -> bool:
        """Ask the engine if `signature` changed, or a settle or stale check is due; True when asked."""
        now = self._clock()
        if signature != self._signature:
            self._signature, self._changed_at, self._settled = signature, now, False
            due = True
        elif not signature:
            due = False
        elif not self._settled and now - self._changed_at >= SETTLE_S:
            due = True
        else:
            due = now - self._asked_at >= STALE_S
        if not due:
            return False
        if not signature:  # no container process at all: nothing to ask about, nothing missing
            self._set({}, [], None)
            return False
        if now - self._changed_at >= SETTLE_S:
            self._settled = True
        self._asked_at = now
        self._ask()
        return True

    def _ask(self) -> None:
        self.queries += 1
        paths = self._paths if self._paths is not None else socket_paths()
        reasons = []
        for path in paths:
            if not os.path.exists(path):
                continue
            try:
                doc = get_json(path, "/containers/json", self.timeout_s)
            except EngineError as err:
                reasons.append(str(err) + (" (for container names, join the group that owns it)" if err.denied else ""))
                continue
            runtime = "podman" if "podman" in path else "docker"
            containers, published = {}, []
            for container, ports in parse_containers(doc, runtime):
                containers[container.id] = container
                published += ports
            self._set(containers, published, None)
            return
        if reasons:
            why = "the container engine's API could not be used: " + "; ".join(reasons)
        else:
            why = "no Docker or Podman Engine API socket was found (" + ", ".join(paths) + ")"
        self._set({}, [], why + ": containers are named by their id only, and ports published without a socket are not listed")

    def _set(self, containers: dict[str, Container], published: list[Published], missing: str | None) -> None:
        def plain(cs, ps, why):
            return ([(c.id, c.name, c.image, c.project, c.service) for c in cs.values()],
                    [(p.transport, p.host_address, p.host_port, p.container_address, p.container_port, p.container.id) for p in ps], why)

        if plain(containers, published, missing) != plain(self.containers, self.published, self.missing):
            self.generation += 1
        self.containers, self.published, self.missing = containers, published, missing
