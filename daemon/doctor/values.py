"""What doctor works with: the asked target, the probes, the firewall's facts, findings, the diagnosis."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Callable

from ..addresses import parse_address
from ..model import SCHEMA_VERSION, Listener, Transport, endpoint, value


LOCALHOST = ("::1", "127.0.0.1")  # the order browsers and Node 17+ try
NEARBY = 10  # how far "nearby" reaches, in ports
NEARBY_SHOWN = 3
CONNECT_TIMEOUT_S = 1.0
FIREWALL_TOOLS = ("ufw", "firewall-cmd", "nft", "iptables")

# The history seam: the last listener seen on (transport, port), and when it closed.
LastHolder = Callable[[str, int], "tuple[Listener, datetime] | None"]


# ------------------------------------------------------------------ values


class Code(StrEnum):
    NOTHING_LISTENS = "nothing-listens"
    LAST_LISTENER = "last-listener"
    NEVER_SEEN = "never-seen"
    NO_HISTORY = "no-history"
    EPHEMERAL_PORT = "ephemeral-port"
    UDP_ONLY = "udp-only"
    TCP_ONLY = "tcp-only"
    OTHER_ADDRESS = "other-address"
    IPV4_ONLY = "ipv4-only"
    IPV6_ONLY = "ipv6-only"
    CONNECT_FAILED = "connect-failed"
    ACCEPTED_UNSEEN = "accepted-unseen"
    LOOPBACK_ONLY = "loopback-only"
    ALL_INTERFACES = "all-interfaces"
    NETWORK_ADDRESS = "network-address"
    OTHER_USER = "other-user"
    NEARBY_PORT = "nearby-port"
    NOT_THIS_MACHINE = "not-this-machine"


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    ERROR = "error"
    NOT_TRIED = "not-tried"


@value
class Target:
    """What was asked: a host's local addresses, in the order a client tries them."""

    host: str
    port: int
    transport: Transport
    addresses: tuple[str, ...]
    not_local: tuple[str, ...] = ()  # resolved, but not this machine's: never tried
    resolver: tuple[str, ...] = ()  # this machine's resolver's answer (differs for localhost)
    localhost: bool = False  # the name means ::1 and 127.0.0.1, whatever the hosts file says

    @property
    def name(self) -> str:
        return endpoint(self.host, self.port) if self.host else str(self.port)

    @property
    def loopback(self) -> bool:
        return all(parse_address(a).is_loopback for a in self.addresses)


@value
class Probe:
    address: str
    outcome: Outcome
    detail: str | None = None

    @property
    def family(self) -> int:
        return parse_address(self.address).version

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "family": self.family, "result": str(self.outcome), "detail": self.detail}


@value
class Firewall:
    """What can be learnt about the host firewall without changing anything."""

    tools: tuple[str, ...]  # firewall programs installed here
    filters_inbound: bool | None  # None: cannot tell without privileges
    detail: str = ""  # how we know, for the sentence


@value
class Finding:
    code: Code
    sentence: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "sentence": self.sentence, "fix": self.fix}


@value
class Diagnosis:
    target: Target
    probes: tuple[Probe, ...]
    reachable: bool
    findings: tuple[Finding, ...]
    listeners: tuple[Listener, ...]  # every listener on the port, both transports

    @property
    def codes(self) -> list[str]:
        return [str(f.code) for f in self.findings]

    def finding(self, code: Code | str) -> Finding | None:
        return next((f for f in self.findings if f.code == code), None)

    def to_dict(self) -> dict[str, Any]:
        t = self.target
        return {
            "version": SCHEMA_VERSION,
            "target": {
                "host": t.host,
                "port": t.port,
                "transport": str(t.transport),
                "addresses": [p.to_dict() for p in self.probes],
                "not_local": list(t.not_local),
                "resolver": list(t.resolver),
            },
            "reachable": self.reachable,
            "findings": [f.to_dict() for f in self.findings],
            "listeners": [li.to_dict() for li in self.listeners],
        }
