"""`portbell doctor [HOST:]PORT`: why a connection fails, or who can reach it. Imports: the standard
library, daemon.model, daemon.classify, daemon.ports, daemon.render, daemon.errors; the samplers
facade, daemon.paths and daemon.store (read-only, for history) only inside `command()`/`examine()`.

Three layers in one module, kept apart:
- values: `Target`, `Probe`, `Firewall`, `Finding`, `Diagnosis` (frozen);
- the reasoning: `diagnose()`, a pure function over the listeners snapshot, the
  resolved target, the connection results, the port's facts, the firewall's
  facts and an optional history callable; plus the firewall text parsers and
  the `who` sentence for ephemeral ports;
- thin adapters for the I/O: `resolve()`, `is_local()`, `connect()` (a TCP
  connection with a short timeout, refused for any address this machine does
  not own), `detect_firewall()` (read-only queries); and the command line
  (`add_parser()`, `command()`).

Decisions where PRODUCT.md is silent:
- `localhost` (and `localhost.`, `*.localhost`) means both ::1 and 127.0.0.1,
  tried in that order (browsers and Node 17+ try ::1 first, older clients
  127.0.0.1), whatever this machine's hosts file says; the resolver's own
  answer is reported beside it. Any other name goes through getaddrinfo, whose
  order (RFC 6724) is the order a client tries.
- doctor answers about this machine only: it connects to addresses this
  machine owns (loopback, or an address a socket can be bound to) and to
  nothing else. A name that resolves only elsewhere is bad input (exit 2); the
  non-local part of a mixed answer is listed, never tried.
- 0.0.0.0 and :: are where a server listens, not addresses to connect to: bad
  input, with a pointer to localhost.
- History comes through one narrow seam, `last_holder(transport, port) ->
  (Listener, closed_at) | None`; the command line opens the daemon's record
  read-only for it (Store.last_holder) and says "no history" when there is none.
- Exit 0 when a connection would succeed: for TCP, at least one address
  accepted a real connection (a client that falls back through the addresses
  gets through; a family mismatch is still reported as a finding). UDP is
  never probed (a datagram would reach the service): a UDP target is
  reachable when a UDP listener serves one of its addresses.

JSON (`--json`), version 1:

    {"version": 1,
     "target": {"host": "localhost", "port": 3000, "transport": "tcp",
                "addresses": [{"address": "::1", "family": 6, "result": "refused", "detail": null},
                              {"address": "127.0.0.1", "family": 4, "result": "accepted", "detail": null}],
                "not_local": [],            # resolved, but not this machine's: not tried
                "resolver": ["127.0.0.1"]}, # this machine's resolver's answer, in its order
     "reachable": true,
     "findings": [{"code": "ipv4-only", "sentence": "...", "fix": "..."}],
     "listeners": [listener, ...]}          # every listener on that port, both transports

`result` is one of accepted, refused, timeout, error (see `detail`), not-tried (UDP).

Finding codes (stable; each finding carries a sentence and its fix):
- nothing-listens    nothing listens on the port with the asked transport, on any address
- last-listener      from the daemon's history: who last listened there, and when it stopped
- never-seen         the history has never seen a listener there
- no-history         no history is available (the daemon is not keeping one)
- ephemeral-port     the port lies in the OS's ephemeral (client) range and nothing listens
- udp-only           asked about TCP, only UDP listens on the port
- tcp-only           asked about UDP (--udp), only TCP listens on the port
- other-address      it listens on the port, but bound to other specific addresses
- ipv4-only          it serves the IPv4 addresses of the name only (127.0.0.1 but not ::1)
- ipv6-only          it serves the IPv6 addresses of the name only (::1 but not 127.0.0.1)
- connect-failed     a listener serves the address, yet the connection failed
- accepted-unseen    a connection was accepted, but no listener serving it is visible
- loopback-only      loopback only: other machines cannot reach it
- all-interfaces     bound to every interface: other machines can reach it unless a firewall stops them
- network-address    bound to a specific non-loopback address: reachable from that network
- other-user         its owner is another user (and when its process is hidden, the view is partial)
- nearby-port        nothing serves the port, but ports close to it do (3000 vs 3001)
- not-this-machine   the name also resolves to addresses of other machines, which were not tried
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Callable, Iterable, Sequence

from . import ports, words
from .addresses import parse_address, parse_endpoint, serves
from .errors import UsageError
from .model import SCHEMA_VERSION, Exposure, Listener, Transport, endpoint, order

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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class Probe:
    address: str
    outcome: Outcome
    detail: str | None = None

    @property
    def family(self) -> int:
        return parse_address(self.address).version

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "family": self.family, "result": str(self.outcome), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Firewall:
    """What can be learnt about the host firewall without changing anything."""

    tools: tuple[str, ...]  # firewall programs installed here
    filters_inbound: bool | None  # None: cannot tell without privileges
    detail: str = ""  # how we know, for the sentence


@dataclass(frozen=True, slots=True)
class Finding:
    code: Code
    sentence: str
    fix: str

    def to_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "sentence": self.sentence, "fix": self.fix}


@dataclass(frozen=True, slots=True)
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


# --------------------------------------------------------------- reasoning


def _host_for_url(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _bound(li: Listener) -> str:
    return f"{words.endpoint_phrase(li)}, by {words.owners_phrase(li)}"


def _firewall_clause(fw: Firewall | None) -> str:
    if fw is None:
        return "the firewall was not checked"
    if not fw.tools:
        return f"no firewall tool ({', '.join(FIREWALL_TOOLS)}) is installed here, so most likely nothing filters inbound traffic"
    tools = words.join(fw.tools)
    are = "are" if len(fw.tools) > 1 else "is"
    how = f" ({fw.detail})" if fw.detail else ""
    if fw.filters_inbound is True:
        return f"{tools} {are} present and inbound traffic is filtered{how}, so check that the rules admit whom you intend"
    if fw.filters_inbound is False:
        return f"{tools} {are} present but inbound traffic is not filtered{how}"
    return f"{tools} {are} present; whether inbound traffic is filtered cannot be read without privileges{how}"


def _winner(candidates: Sequence[Listener], address: str) -> Listener:
    """The listener the kernel hands a connection to: an exact bind beats a wildcard."""
    try:
        ip = parse_address(address)
        exact = [li for li in candidates if parse_address(li.address) == ip]
    except ValueError:
        exact = []
    return (exact or list(candidates))[0]


def diagnose(
    target: Target,
    listeners: Iterable[Listener],
    probes: Sequence[Probe],
    port_info: ports.PortInfo,
    *,
    complete: bool = True,
    uid: int | None = None,
    firewall: Firewall | None = None,
    last_holder: LastHolder | None = None,
    now: datetime | None = None,
    command_line: str | None = None,
) -> Diagnosis:
    """The findings for `target`, from values only. `uid` is the asking user's (None: unknown).

    `probes` has one entry per target address (TCP connection results; UDP:
    not tried). `last_holder` is the history seam; None means no history.
    `command_line` is how to re-run this check, for fixes that say "run it as root".
    """
    now = now or datetime.now(timezone.utc)
    port, asked = target.port, target.transport
    everything = sorted(listeners, key=order)
    on_port = tuple(li for li in everything if li.port == port)
    same = [li for li in on_port if li.transport is asked]
    other = [li for li in on_port if li.transport is not asked]
    outcome = {p.address: p.outcome for p in probes}
    findings: list[Finding] = []

    # Which listeners serve each address. A `::` socket whose dual-stack flag the
    # sampler cannot see (psutil) is proven dual-stack by an accepted IPv4 connection.
    serving: dict[str, list[Listener]] = {}
    for a in target.addresses:
        found = [li for li in same if serves(li, a)]
        if not found and outcome.get(a) is Outcome.ACCEPTED and parse_address(a).version == 4:
            found = [li for li in same if li.family == 6 and parse_address(li.address).is_unspecified]
        serving[a] = found
    if asked is Transport.TCP:
        ok = {a: outcome.get(a) is Outcome.ACCEPTED for a in target.addresses}
    else:
        ok = {a: bool(serving[a]) for a in target.addresses}
    reachable = any(ok.values())
    names = words.join(target.addresses, "or")
    rerun = command_line or f"portbell doctor {target.name}"

    if not same:
        if other:
            code = Code.UDP_ONLY if asked is Transport.TCP else Code.TCP_ONLY
            where = "; ".join(_bound(li) for li in other)
            if asked is Transport.TCP:
                sentence = f"Only UDP listens on port {port} ({where}); a TCP connection to it is refused."
                served_udp = [a for a in target.addresses if any(serves(li, a) for li in other)]
                to = served_udp[0] if served_udp else target.addresses[0]
                fix = (
                    f"use a UDP client (e.g. `nc -u {to} {port}`, or check with "
                    f"`portbell doctor --udp {target.name}`), or start the server in its TCP mode if it has one"
                )
            else:
                sentence = f"Only TCP listens on port {port} ({where}); nothing receives UDP datagrams there."
                fix = "use a TCP client (or leave out --udp), or start the server in its UDP mode if it has one"
            findings.append(Finding(code, sentence, fix))
        else:
            findings.append(
                Finding(
                    Code.NOTHING_LISTENS,
                    f"Nothing listens on {asked} port {port}, on any address, so a connection to {target.name} is refused.",
                    "start the server, or check which port it printed when it started (and that it did not exit with an error)",
                )
            )
            findings.append(_history(asked, port, last_holder, now))
            if port_info.ephemeral and port_info.ephemeral_range:
                low, high = port_info.ephemeral_range
                findings.append(
                    Finding(
                        Code.EPHEMERAL_PORT,
                        f"Port {port} lies in this system's ephemeral range ({low}-{high}), which the kernel hands to "
                        "client sockets: a number like this is often the client's side of a connection, not a server's port.",
                        f"use the server's own port (`portbell ls` lists them); a server should use a fixed port outside {low}-{high}",
                    )
                )
    else:
        served = [a for a in target.addresses if serving[a]]
        if not served:
            where = "; ".join(_bound(li) for li in same)
            alternatives = [li for li in same if not parse_address(li.address).is_unspecified]
            if alternatives:
                instead = alternatives[0].endpoint
            else:  # only a wildcard of the other family: its loopback is the way in
                instead = endpoint("127.0.0.1" if same[0].family == 4 else "::1", port)
            if target.loopback:
                how = "start the server with --host 127.0.0.1 (this machine only), or --host 0.0.0.0 (and open the firewall) if other machines should reach it"
            else:
                how = "start the server with --host 0.0.0.0 (and open the firewall) if other machines should reach it"
            findings.append(
                Finding(
                    Code.OTHER_ADDRESS,
                    f"It listens on port {port} only at {where}, which is not {names}: a connection to {target.name} is refused.",
                    f"connect to {instead} instead, or {how}",
                )
            )
        else:
            findings.extend(_family_mismatch(target, serving))
            for a in served:
                if asked is Transport.TCP and outcome.get(a) in (Outcome.REFUSED, Outcome.TIMEOUT, Outcome.ERROR):
                    p = next(p for p in probes if p.address == a)
                    what = {Outcome.REFUSED: "was refused", Outcome.TIMEOUT: "timed out"}.get(p.outcome, f"failed ({p.detail})")
                    w = _winner(serving[a], a)
                    findings.append(
                        Finding(
                            Code.CONNECT_FAILED,
                            f"{endpoint(a, port)} is served by {words.owners_phrase(w)} (bound to {w.endpoint}), "
                            f"yet the connection {what}: the server is not accepting "
                            "(stuck, or its backlog is full), or a firewall rule on this machine stops it.",
                            "look at the server's log or restart it; check the firewall's rules for the loopback "
                            "interface (`nft list ruleset`, `iptables -S`)",
                        )
                    )
            winners: list[Listener] = []
            for a in served:
                w = _winner(serving[a], a)
                if w not in winners:
                    winners.append(w)
            findings.extend(_exposure(target, winners, firewall))
            findings.extend(_other_user(winners, uid, complete, rerun))
    for a in target.addresses:
        if asked is Transport.TCP and ok[a] and not serving[a]:
            findings.append(
                Finding(
                    Code.ACCEPTED_UNSEEN,
                    f"A connection to {endpoint(a, port)} was accepted, but no listener serving it is visible: it may "
                    "have started a moment ago, or a rule redirects the port (a proxy, NAT, a container's port forwarding).",
                    "run the check again; if this stays, look for redirecting rules (`nft list ruleset`, `iptables -t nat -S`)",
                )
            )
    if not reachable:
        near = _nearby(everything, asked, port)
        if near:
            findings.append(near)
    if target.not_local:
        findings.append(
            Finding(
                Code.NOT_THIS_MACHINE,
                f"{target.host} also resolves to {words.join(target.not_local)}, which "
                f"{'is not an address' if len(target.not_local) == 1 else 'are not addresses'} of this machine: doctor did not try "
                f"{'it' if len(target.not_local) == 1 else 'them'}.",
                "run `portbell doctor` on the machine that has that address",
            )
        )
    return Diagnosis(target, tuple(probes), reachable, tuple(findings), on_port)


def _history(asked: Transport, port: int, last_holder: LastHolder | None, now: datetime) -> Finding:
    if last_holder is None:
        return Finding(
            Code.NO_HISTORY,
            f"There is no listener history here to say who last listened on {asked} port {port}.",
            "start `portbell daemon` to keep a history",
        )
    last = last_holder(str(asked), port)
    if last is None:
        return Finding(
            Code.NEVER_SEEN,
            f"portbell's history has never seen anything listen on {asked} port {port}.",
            "check the port in the server's configuration or start-up output",
        )
    li, closed_at = last
    owner = li.owners[0] if li.owners else None
    if owner is not None and owner.cmdline:
        fix = f"start it again: `{shlex.join(owner.cmdline)}`"
    elif owner is not None and owner.name:
        fix = f"start {owner.name} again, and look at its log for why it stopped"
    else:
        fix = "start the server again, and look at its log for why it stopped"
    return Finding(
        Code.LAST_LISTENER,
        f"The last listener on {asked} port {port} was {words.owners_phrase(li)} on {li.endpoint}; "
        f"it stopped at {words.since(closed_at, now)}.",
        fix,
    )


def _family_mismatch(target: Target, serving: dict[str, list[Listener]]) -> list[Finding]:
    """127.0.0.1 but not ::1, or the reverse, for a name that means both."""
    by_family: dict[int, list[str]] = {}
    for a in target.addresses:
        by_family.setdefault(parse_address(a).version, []).append(a)
    if len(by_family) < 2:
        return []
    served = {v for v, addrs in by_family.items() if any(serving[a] for a in addrs)}
    if len(served) != 1:
        return []
    (good,) = served
    bad = 6 if good == 4 else 4
    good_addr, bad_addr = by_family[good][0], by_family[bad][0]
    name, port = target.host, target.port
    tcp = target.transport is Transport.TCP
    url = f" (http://{_host_for_url(good_addr)}:{port}/)" if tcp else ""
    verb = "connect to" if tcp else "send to"
    fails = "gets \"connection refused\"" if tcp else "sends its datagrams where nothing receives them"
    first = parse_address(target.addresses[0]).version
    if good == 4:
        if target.localhost and tcp:
            who = "which browsers and Node 17+ try first"
        elif target.localhost:
            who = "which many clients try first"
        else:
            who = "which clients try first" if first == 6 else "which clients try when IPv4 fails"
        shown, more = good_addr, f"make the server listen on {bad_addr} as well"
    else:
        resolver = target.resolver
        if target.localhost and resolver and parse_address(resolver[0]).version == 4:
            who = f"which older clients try first, and this machine's resolver gives {resolver[0]} first (hosts file)"
        elif target.localhost:
            who = "which older clients (and many command-line tools) try first"
        else:
            who = "which clients try first" if first == 4 else "which clients try when IPv6 fails"
        shown, more = f"[{good_addr}]", f"start the server with --host {bad_addr} (or make it listen on {bad_addr} as well)"
    family = f"IPv{good}"
    sentence = (
        f"It listens on {words.join(by_family[good])} only ({family}), while `{name}` also means {words.join(by_family[bad])}, {who}: "
        f"a client that does not fall back to {family} {fails}."
    )
    fix = f"{verb} {shown} instead of {name}{url}, or {more}"
    return [Finding(Code.IPV4_ONLY if good == 4 else Code.IPV6_ONLY, sentence, fix)]


def _exposure(target: Target, winners: list[Listener], firewall: Firewall | None) -> list[Finding]:
    port = target.port
    out: list[Finding] = []
    if winners and all(li.exposure is Exposure.LOOPBACK for li in winners):
        out.append(
            Finding(
                Code.LOOPBACK_ONLY,
                f"It listens on loopback only ({words.join([li.endpoint for li in winners])}): programs on this machine "
                "can connect, other machines cannot.",
                "start the server with --host 0.0.0.0 (and open the firewall) if other machines should reach it",
            )
        )
        return out
    wide = [li for li in winners if li.exposure is Exposure.ALL_INTERFACES]
    if wide:
        bound = words.join([words.endpoint_phrase(li) for li in wide])
        out.append(
            Finding(
                Code.ALL_INTERFACES,
                f"It is bound to every interface ({bound}), so other machines can reach it on port {port} unless a "
                f"firewall stops them; {_firewall_clause(firewall)}.",
                "start the server with --host 127.0.0.1 if only this machine should reach it; otherwise let the "
                "firewall admit only the machines that need it",
            )
        )
    specific = [li for li in winners if li.exposure in (Exposure.LOCAL_NETWORK, Exposure.PUBLIC)]
    for li in specific:
        whom = "machines on that network" if li.exposure is Exposure.LOCAL_NETWORK else "machines anywhere on the internet"
        out.append(
            Finding(
                Code.NETWORK_ADDRESS,
                f"It is bound to {li.endpoint} ({li.exposure}), so {whom} can reach it unless a firewall stops them; "
                f"{_firewall_clause(firewall)}.",
                "start the server with --host 127.0.0.1 if only this machine should reach it; otherwise let the "
                "firewall admit only the machines that need it",
            )
        )
    return out


def _other_user(winners: list[Listener], uid: int | None, complete: bool, rerun: str) -> list[Finding]:
    out: list[Finding] = []
    seen: set[tuple[int | None, int | None]] = set()
    for li in winners:
        for o in li.owners:
            if uid is None or o.uid is None or o.uid == uid or (o.pid, o.uid) in seen:
                continue
            seen.add((o.pid, o.uid))
            who = f"{o.user} (uid {o.uid})" if o.user else f"uid {o.uid}"
            if o.pid is None and not complete:
                out.append(
                    Finding(
                        Code.OTHER_USER,
                        f"{li.endpoint} belongs to {who}, not to you, so this view is partial: its process is not visible.",
                        f"run `sudo {rerun}` (or the same check as {o.user or 'that user'}) to see the process",
                    )
                )
            elif o.pid is None:  # a complete view, yet no process holds it
                out.append(
                    Finding(
                        Code.OTHER_USER,
                        f"{li.endpoint} belongs to {who}, not to you, and no process in view holds it: a kernel "
                        "socket, or a process in another PID namespace or container.",
                        "look for it among the containers and services of that user (e.g. `docker ps`, `systemctl list-units`)",
                    )
                )
            else:
                out.append(
                    Finding(
                        Code.OTHER_USER,
                        f"{li.endpoint} belongs to {who}, not to you: {o.name or 'its process'} (pid {o.pid}) runs as that user.",
                        f"stop or reconfigure it as {o.user or 'that user'} (e.g. `sudo -u {o.user or o.uid} ...`)",
                    )
                )
    return out


def _nearby(listeners: Sequence[Listener], asked: Transport, port: int) -> Finding | None:
    near: dict[int, list[Listener]] = {}
    for li in listeners:
        if li.transport is asked and li.port != port and abs(li.port - port) <= NEARBY:
            near.setdefault(li.port, []).append(li)
    if not near:
        return None
    # nearest first; on a tie the higher port, since servers move up to the next free one
    closest = sorted(near, key=lambda p: (abs(p - port), -p))[:NEARBY_SHOWN]
    parts = []
    for p in closest:
        li = near[p][0]
        parts.append(f"{p} ({words.owners_phrase(li)}, on {words.join([x.address for x in near[p]])})")
    best = closest[0]
    best_li = near[best][0]
    host = "localhost" if best_li.exposure is Exposure.LOOPBACK or parse_address(best_li.address).is_unspecified else _host_for_url(best_li.address)
    return Finding(
        Code.NEARBY_PORT,
        f"Nothing serves {asked} port {port} here, but {'nearby ports do' if len(closest) > 1 else 'a nearby port does'}: {words.join(parts)}.",
        f"did you mean {host}:{best}? A dev server moves to the next free port when its usual one is taken: check its start-up output",
    )


# --------------------------------------------------------- firewall parsers


def nft_filters_inbound(ruleset: str) -> bool:
    """Whether an `nft list ruleset` has an input-hook chain that drops or rejects anything."""
    for chunk in re.split(r"\bchain\s+", ruleset)[1:]:
        body = chunk.split("}", 1)[0]
        if "hook input" not in body:
            continue
        if re.search(r"policy\s+drop", body) or re.search(r"\b(drop|reject)\b", body):
            return True
    return False


def iptables_filters_inbound(rules: str) -> bool:
    """Whether `iptables -S` (filter table) drops or rejects anything on the way in.

    Follows jumps from INPUT to user chains (ufw, firewalld and docker build
    their own), so a DROP anywhere reachable from INPUT counts.
    """
    policy: dict[str, str] = {}
    rules_of: dict[str, list[str]] = {}
    for line in rules.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "-P":
            policy[words[1]] = words[2]
        elif len(words) >= 2 and words[0] in ("-A", "-N"):
            rules_of.setdefault(words[1], [])
            if words[0] == "-A":
                rules_of[words[1]].append(line)
    if policy.get("INPUT", "ACCEPT").upper() in ("DROP", "REJECT"):
        return True
    todo, seen = ["INPUT"], set()
    while todo:
        chain = todo.pop()
        if chain in seen:
            continue
        seen.add(chain)
        for rule in rules_of.get(chain, []):
            m = re.search(r"\s-[jg]\s+(\S+)", rule)
            if not m:
                continue
            jump = m.group(1)
            if jump in ("DROP", "REJECT"):
                return True
            if jump in rules_of:
                todo.append(jump)
    return False


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


# ---------------------------------------------------------------- adapters


def _nonlocal_bind_allowed(version: int) -> bool:
    path = f"/proc/sys/net/ipv{version}/ip_nonlocal_bind"
    try:
        with open(path) as f:
            return f.read().strip() != "0"
    except OSError:
        return False


def _sockaddr(address: str, port: int) -> tuple:
    """A sockaddr for connect/bind, keeping an IPv6 zone (fe80::1%eth0) as the scope id."""
    info = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    return info[0][0], info[0][4]


def is_local(address: str) -> bool:
    """Whether `address` belongs to this machine: loopback, or an address a socket can be bound to.

    Binding (no traffic) is the portable test. Where the OS lets sockets bind
    foreign addresses (ip_nonlocal_bind), only loopback counts.
    """
    try:
        ip = parse_address(address)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if ip.is_unspecified or ip.is_multicast or _nonlocal_bind_allowed(ip.version):
        return False
    try:
        family, sockaddr = _sockaddr(address, 0)
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind(sockaddr)
        return True
    except OSError:
        return False


def connect(address: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> Probe:
    """Try one TCP connection to this machine's own address, and close it at once."""
    if not is_local(address):
        raise UsageError(f"{address} is not an address of this machine: doctor connects to this machine only")
    family, sockaddr = _sockaddr(address, port)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(sockaddr)
        except ConnectionRefusedError:
            return Probe(address, Outcome.REFUSED)
        except (socket.timeout, TimeoutError):
            return Probe(address, Outcome.TIMEOUT, f"no answer within {timeout_s:g}s")
        except OSError as err:
            return Probe(address, Outcome.ERROR, err.strerror or str(err))
    return Probe(address, Outcome.ACCEPTED)


def _is_localhost_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def _system_order(host: str) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return ()
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        a = str(sockaddr[0])
        try:
            a = str(parse_address(a)) if "%" not in a else a
        except ValueError:
            pass
        if a not in out:
            out.append(a)
    return tuple(out)


def resolve(host: str, port: int, transport: Transport, *, local: Callable[[str], bool] = is_local) -> Target:
    """The target's addresses in the order a client tries them, split into this machine's and others'."""
    if _is_localhost_name(host):
        return Target(host, port, transport, LOCALHOST, (), _system_order("localhost"), localhost=True)
    try:
        ip = parse_address(host)
        literal = True
    except ValueError:
        literal = False
    if literal:
        if ip.is_unspecified:
            raise UsageError(
                f"{host} is where a server listens (every interface), not an address to connect to: "
                f"ask about localhost:{port} or 127.0.0.1:{port}"
            )
        addresses: tuple[str, ...] = (host if "%" in host else str(ip),)
    else:
        addresses = _system_order(host)
        if not addresses:
            raise UsageError(f"cannot resolve {host!r}: give a name this machine can resolve, or an address")
    mine = tuple(a for a in addresses if local(a))
    others = tuple(a for a in addresses if a not in mine)
    if not mine:
        raise UsageError(
            f"{host} {'is' if literal else 'resolves to ' + ', '.join(addresses) + ', which is'} not an address of "
            "this machine: portbell doctor answers about this machine only (run it on the machine that has it)"
        )
    return Target(host, port, transport, mine, others, addresses)


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3, check=False)
    except (OSError, subprocess.SubprocessError):
        return -1, ""
    return done.returncode, done.stdout + done.stderr


def detect_firewall(
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[[list[str]], tuple[int, str]] = _run,
) -> Firewall:
    """Which firewall tools exist and, where their read-only status is readable, whether they filter inbound."""
    if sys.platform == "darwin":
        return _detect_macos(which, run)
    if sys.platform == "win32":
        code, out = run(["netsh", "advfirewall", "show", "allprofiles", "state"])
        if code != 0:
            return Firewall(("Windows Defender Firewall",), None, "netsh did not answer")
        on = re.search(r"State\s+ON", out, re.I) is not None
        return Firewall(("Windows Defender Firewall",), on, "netsh advfirewall")
    tools = tuple(t for t in FIREWALL_TOOLS if which(t))
    verdicts: list[bool | None] = []
    details: list[str] = []
    for tool in tools:
        verdict: bool | None
        if tool == "ufw":
            code, out = run(["ufw", "status"])
            verdict = True if "Status: active" in out else False if "Status: inactive" in out else None
            details.append(f"ufw {'active' if verdict else 'inactive' if verdict is False else 'status unreadable'}")
        elif tool == "firewall-cmd":
            code, out = run(["firewall-cmd", "--state"])
            verdict = True if out.strip() == "running" else False if "not running" in out else None
            details.append(f"firewalld {'running' if verdict else 'not running' if verdict is False else 'state unreadable'}")
        elif tool == "nft":
            code, out = run(["nft", "list", "ruleset"])
            verdict = nft_filters_inbound(out) if code == 0 else None
            details.append("nft ruleset " + ("unreadable" if verdict is None else "has input filtering" if verdict else "has no input filtering"))
        else:
            code, out = run(["iptables", "-S"])
            verdict = iptables_filters_inbound(out) if code == 0 else None
            details.append("iptables " + ("unreadable" if verdict is None else "filters INPUT" if verdict else "accepts all INPUT"))
        verdicts.append(verdict)
    if any(v is True for v in verdicts):
        filters: bool | None = True
    elif verdicts and all(v is False for v in verdicts):
        filters = False
    else:
        filters = None
    return Firewall(tools, filters, "; ".join(details))


def _detect_macos(which, run) -> Firewall:
    fw = "/usr/libexec/ApplicationFirewall/socketfilterfw"
    if not os.path.exists(fw):
        return Firewall((), None, "")
    code, out = run([fw, "--getglobalstate"])
    if code != 0:
        return Firewall(("Application Firewall",), None, "state unreadable")
    on = "enabled" in out.lower()
    return Firewall(("Application Firewall",), on, "enabled" if on else "disabled")


# ------------------------------------------------------------ command line


def parse_target(text: str) -> tuple[str, int]:
    """`3000`, `localhost:3000`, `[::1]:3000`, `host:3000`, `http://localhost:3000/x` -> (host, port);
    no host means localhost."""
    try:
        host, port = parse_endpoint(text, urls=True)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return host or "localhost", port


def add_parser(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="why a connection to [HOST:]PORT fails, or who can reach it",
        description="Tries a TCP connection to every address HOST (default localhost, meaning ::1 and 127.0.0.1) "
        "maps to on this machine, compares with the listeners, and explains each finding with its fix. "
        "Exit 0 when a connection would succeed, 1 when it would not, 2 for bad input.",
    )
    p.add_argument("target", metavar="[HOST:]PORT")
    p.add_argument("--json", action="store_true", help="one JSON document (version 1)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--tcp", action="store_true", help="ask about TCP (the default)")
    group.add_argument("--udp", action="store_true", help="ask about UDP (compared with listeners, never sent)")
    p.add_argument("--sampler", choices=("sockdiag", "psutil"), help="force a sampler (default: the best that works here)")
    p.set_defaults(func=command)


def examine(
    text: str,
    transport: Transport = Transport.TCP,
    *,
    sampler=None,
    last_holder: LastHolder | None = None,
    command_line: str | None = None,
) -> Diagnosis:
    """Compose the check: resolve, connect, sample, detect the firewall, reason.

    `sampler` is any object with sample() (it is not closed here); None opens
    the best one and closes it.
    """
    host, port = parse_target(text)
    target = resolve(host, port, transport)
    if transport is Transport.TCP:
        probes = [connect(a, port) for a in target.addresses]
    else:
        probes = [Probe(a, Outcome.NOT_TRIED) for a in target.addresses]
    if sampler is None:
        from . import samplers

        own, _skipped = samplers.open_sampler(None)
        try:
            snap = own.sample()
        finally:
            own.close()
    else:
        snap = sampler.sample()
    listeners = list(snap.listeners.values())
    firewall = detect_firewall() if any(li.port == port and li.exposure.exposed for li in listeners) else None
    return diagnose(
        target,
        listeners,
        probes,
        ports.info(port, str(transport)),
        complete=snap.complete,
        uid=os.geteuid() if hasattr(os, "geteuid") else None,
        firewall=firewall,
        last_holder=last_holder,
        command_line=command_line,
    )


def _recorded_history() -> tuple[LastHolder | None, Any]:
    """The daemon's record, opened read-only, as the history seam: (last_holder, store to close).

    (None, None) when there is no usable record (no daemon has kept one).
    """
    from . import paths
    from .store import Store, StoreError

    try:
        store = Store.open(paths.database(), readonly=True)
    except StoreError:
        return None, None
    return store.last_holder, store


def command(args, last_holder: LastHolder | None = None) -> int:
    """`portbell doctor`: 0 when a connection would succeed, 1 when not (UsageError -> 2 in cli.main).

    `last_holder` None: use the daemon's record when there is one.
    """
    from . import samplers

    transport = Transport.UDP if getattr(args, "udp", False) else Transport.TCP
    parse_target(args.target)  # bad input fails before any sampler opens
    store = None
    if last_holder is None:
        last_holder, store = _recorded_history()
    sampler, _skipped = samplers.open_sampler(getattr(args, "sampler", None))
    try:
        diagnosis = examine(
            args.target,
            transport,
            sampler=sampler,
            last_holder=last_holder,
            command_line=f"portbell doctor{' --udp' if transport is Transport.UDP else ''} {args.target}",
        )
    finally:
        sampler.close()
        if store is not None:
            store.close()
    if getattr(args, "json", False):
        import json

        print(json.dumps(diagnosis.to_dict()), flush=True)
    else:
        print(report(diagnosis), flush=True)
    return 0 if diagnosis.reachable else 1


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
