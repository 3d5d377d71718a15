"""The readable forms: a diagnosis as text, and `who`'s lines for an ephemeral port."""

from __future__ import annotations

from typing import Any, Sequence

from .. import ports, words
from ..model import Transport, endpoint
from .values import Diagnosis, Outcome


# ------------------------------------------------------------ who's sentence


def ephemeral_lines(info: ports.PortInfo, connections: Sequence[Any] | None) -> list[str]:
    """For `who` on a port nobody listens on: likely a client port, and the connections using it.

    `connections` holds samplers.connections_on() values (None: could not list them).
    """
    if not info.ephemeral or info.ephemeral_range is None:
        return []
    low, high = info.ephemeral_range
    lines = [
        f"Port {info.port} lies in this system's ephemeral range ({low}-{high}): it was most likely assigned "
        "automatically to a client socket (the local end of an outgoing connection), not chosen by a server."
    ]
    if connections is None:
        lines.append("The connections using it could not be listed (run as root to see them).")
    elif not connections:
        lines.append("No connection uses it now.")
    else:
        lines.append("Connections using it:")
        rows = []
        for c in connections:
            who = f"{c.name or '?'} ({c.pid})" if c.pid is not None else "?"
            rows.append([c.transport, endpoint(c.local_address, c.local_port), "->", endpoint(c.remote_address, c.remote_port), c.status, who])
        lines.extend("  " + line for line in words.table(rows, ["PROTO", "LOCAL", "", "REMOTE", "STATE", "PROCESS"]).splitlines())
    return lines


def report(d: Diagnosis) -> str:
    """The readable form of a diagnosis."""
    t = d.target
    lines = []
    if t.localhost:
        head = f"{t.name} ({t.transport}); {t.host} means {words.join(t.addresses)}, whatever the hosts file says"
        if t.resolver:
            head += f" (this machine's resolver: {', '.join(t.resolver)})"
        lines.append(head + ":")
    else:
        lines.append(f"{t.name} ({t.transport}):")
    width = max(len(p.address) for p in d.probes)
    for p in d.probes:
        result = "not tried (UDP is compared with the listeners, never sent)" if p.outcome is Outcome.NOT_TRIED else str(p.outcome)
        if p.detail and p.outcome is not Outcome.NOT_TRIED:
            result += f" ({p.detail})"
        lines.append(f"  {p.address.ljust(width)}  {result}")
    if t.transport is Transport.TCP:
        lines.append("A connection would succeed." if d.reachable else "A connection would fail.")
    else:
        lines.append("A UDP listener would receive datagrams." if d.reachable else "No UDP listener would receive datagrams.")
    for f in d.findings:
        lines.append("")
        lines.append(f"* {f.sentence}")
        lines.append(f"  fix: {f.fix}")
    if d.listeners:
        lines.append("")
        lines.append(f"Listening on port {t.port}:")
        lines.extend("  " + line for line in words.listeners_table(d.listeners).splitlines())
    return "\n".join(lines)
