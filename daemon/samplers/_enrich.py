"""What the Engine API adds to a sample: container names, forward targets, ports with no socket.

Applied to the merged listeners after every rebuild (a few dict lookups, and
nothing at all while no container exists), so the cached listeners stay what
the kernel and /proc said:
- a listener whose unit is a container gets the container's name, image and
  compose labels;
- a forwarder's listener, matched to a published port by (transport, host port,
  host address or a wildcard), gets the container, and the target the API knows
  when the command line did not say (rootlessport, slirp4netns);
- a published port no socket here listens on (Docker with the userland proxy off,
  the NAT path) becomes a listener with `socket=False`, no owner, the container
  as its unit and its target as the forward.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..addresses import classify
from ..model import Forward, Key, Listener, Transport, Unit, UnitKind, replace
from ._engine_api import Engine, Published
from ._forwarders import normal_address

_WILDCARDS = ("0.0.0.0", "::")


def enrich(listeners: Mapping[Key, Listener], engine: Engine) -> Mapping[Key, Listener]:
    if not engine.containers and not engine.published:
        return listeners
    by_port: dict[tuple[str, int], list[Published]] = {}
    for p in engine.published:
        by_port.setdefault((p.transport, p.host_port), []).append(p)
    out = dict(listeners)
    for key, li in listeners.items():
        unit, forward = li.unit, li.forward
        if unit is not None and unit.container is not None:
            known = engine.containers.get(unit.container.id)
            if known is not None:
                unit = replace(unit, container=known)
        if forward is not None:
            p = _published_for(li, by_port.get((str(li.transport), li.port), ()))
            if p is not None:
                forward = replace(
                    forward,
                    address=forward.address or p.container_address,
                    port=forward.port if forward.port is not None else p.container_port,
                    container=p.container,
                )
        if unit is not li.unit or forward is not li.forward:
            out[key] = replace(li, unit=unit, forward=forward)
    for p in engine.published:
        address = normal_address(p.host_address) or p.host_address
        key = Key(Transport(p.transport), address, p.host_port)
        if key in out or (p.transport not in ("tcp", "udp")):
            continue
        out[key] = Listener(
            key.transport,
            6 if ":" in address else 4,
            address,
            p.host_port,
            classify(address),
            owners=(),
            unit=Unit(UnitKind.CONTAINER, p.container.short_id, container=p.container),
            forward=Forward(p.container.runtime or "docker", p.container_address, p.container_port, p.container),
            socket=False,
        )
    return out


def _published_for(li: Listener, ports) -> Published | None:
    exact = [p for p in ports if normal_address(p.host_address) == li.address]
    if exact:
        return exact[0]
    if li.address in _WILDCARDS:
        wild = [p for p in ports if normal_address(p.host_address) in _WILDCARDS]
        return wild[0] if wild else None
    return None
