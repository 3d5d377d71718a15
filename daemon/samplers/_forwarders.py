"""Forwarders: processes that listen on the host for a container. Pure.

docker-proxy, rootlessport, slirp4netns and pasta are recognised by their
name, and their command line (which /proc shows to everyone) says, where it
can, what they listen on and where they send it:

- docker-proxy: `-proto tcp -host-ip 0.0.0.0 -host-port 8080 -container-ip 172.17.0.2
  -container-port 80` (one process per published port and family);
- pasta: `-t [ADDR/]PORT[-PORT][:TARGET[-TARGET]]` for TCP, `-u ...` for UDP (also
  `--tcp-ports`, `--udp-ports`), forwarding into the container's namespace: the
  target port is known, its address is the container's own;
- rootlessport and slirp4netns take their port map through a pipe or an API
  socket: they are forwarders with an unknown target (the Engine API can fill it).

`claims(cmdline)` lists the (transport, host address or None, host port) a
forwarder says it listens on: a socket the view cannot attribute is given to
the forwarder whose command line names exactly its key (marked `via="cmdline"`).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence

from ..model import Forward, Transport

# names as the kernel's comm shows them (15 bytes at most) and as argv[0] does
NAMES = ("docker-proxy", "rootlessport", "slirp4netns", "pasta", "passt")
# processes that come and go with containers: when this set changes, the Engine API is asked again
WATCHED = NAMES + ("containerd-shim", "conmon")


def forwarder_name(name: str | None, cmdline: Sequence[str] | None = None) -> str | None:
    """The forwarder a process is, from its name or its argv[0]; None for any other process."""
    candidates = [name or ""]
    if cmdline:
        candidates.append(os.path.basename(cmdline[0]))
    for c in candidates:
        for known in NAMES:
            if c == known or c.startswith(known + ".") or (c.startswith(known) and known == "rootlessport"):
                return "pasta" if known == "passt" else known
    return None


def is_watched(comm: str) -> bool:
    return any(comm == w or comm.startswith(w) for w in WATCHED)


def _flag(args: Sequence[str], name: str) -> str | None:
    """The value of `-name V`, `--name V`, `-name=V` or `--name=V`."""
    for i, arg in enumerate(args):
        bare = arg.lstrip("-")
        if arg.startswith("-") and bare == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("-") and bare.startswith(name + "="):
            return bare[len(name) + 1 :]
    return None


def normal_address(text: str | None) -> str | None:
    """An address as sock_diag spells it (`::` not `0:0::0`); None for empty or unparsable."""
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return None


def _port(text: str | None) -> int | None:
    try:
        port = int(text) if text is not None else None
    except ValueError:
        return None
    return port if port is not None and 0 <= port <= 65535 else None


def forward_of(name: str, cmdline: Sequence[str] | None, transport: Transport, address: str, port: int) -> Forward | None:
    """What forwarder `name` sends the socket (transport, address, port) to, from its command line."""
    args = list(cmdline or ())[1:]
    if name == "docker-proxy":
        target_port = _port(_flag(args, "container-port"))
        return Forward(name, normal_address(_flag(args, "container-ip")), target_port)
    if name == "pasta":
        for proto, host, low, high, target in _pasta_specs(args):
            if proto is transport and low <= port <= high and (host is None or host == address):
                return Forward(name, None, target + (port - low) if target is not None else port)
        return Forward(name)
    return Forward(name)


def forward_for(owners, transport: Transport, address: str, port: int) -> Forward | None:
    """Where the first owner that is a forwarder sends this socket's traffic, or None."""
    for owner in owners:
        name = forwarder_name(owner.name, owner.cmdline)
        if name:
            return forward_of(name, owner.cmdline, transport, address, port)
    return None


def claims(name: str, cmdline: Sequence[str] | None) -> list[tuple[Transport, str | None, int]]:
    """The sockets a forwarder's command line says it holds: (transport, host address or None
    for any, port). Empty when the command line does not say (rootlessport, slirp4netns)."""
    args = list(cmdline or ())[1:]
    if name == "docker-proxy":
        proto = _flag(args, "proto") or "tcp"
        port = _port(_flag(args, "host-port"))
        if proto not in ("tcp", "udp") or port is None:
            return []
        return [(Transport(proto), normal_address(_flag(args, "host-ip")) or "0.0.0.0", port)]
    if name == "pasta":
        out = []
        for proto, host, low, high, _target in _pasta_specs(args):
            if high - low <= 1024:  # a whole range ("all") is not a claim on one socket
                out.extend((proto, host, p) for p in range(low, high + 1))
        return out
    return []


def _pasta_specs(args: Sequence[str]):
    """(transport, host address or None, first port, last port, first target or None) per -t/-u spec."""
    for i, arg in enumerate(args):
        if arg in ("-t", "--tcp-ports"):
            proto = Transport.TCP
        elif arg in ("-u", "--udp-ports"):
            proto = Transport.UDP
        else:
            continue
        if i + 1 >= len(args):
            continue
        for spec in args[i + 1].split(","):
            host = None
            if "/" in spec:
                host_text, _, spec = spec.rpartition("/")
                host = normal_address(host_text)
            ports, _, target = spec.partition(":")
            low_text, _, high_text = ports.partition("-")
            low, high = _port(low_text), _port(high_text or low_text)
            if low is None or high is None or high < low:
                continue
            tlow = _port(target.partition("-")[0]) if target else None
            yield proto, host, low, high, tlow
