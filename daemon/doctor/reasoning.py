"""Why a connection fails, or who can reach it: a pure function over the facts the probes gathered."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Sequence

from .. import ports, words
from ..addresses import parse_address, serves
from ..model import Exposure, Listener, Transport, endpoint, order
from .values import FIREWALL_TOOLS, NEARBY, NEARBY_SHOWN, Code, Diagnosis, Finding, Firewall, LastHolder, Outcome, Probe, Target


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
                    f"It listens on port {port} at {where}, which does not serve {names}: a connection to {target.name} is refused.",
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
    if not reachable and not same:  # the port itself listens (elsewhere): "nothing serves it" would be false
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
        fix = f"start it again: `{words.command_line(owner.cmdline)}`"
    elif owner is not None and owner.name:
        fix = f"start {words.printable(owner.name)} again, and look at its log for why it stopped"
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
    # Say what is bound, as the kernel has it: a wildcard is every address of its family, never "only" one.
    bound = sorted({li.address for a in by_family[good] for li in serving[a]})
    wildcard = [b for b in bound if parse_address(b).is_unspecified]
    if wildcard:
        at = f"every {family} address ({words.join(wildcard)}) but on no IPv{bad} address"
    else:
        at = f"{words.join(by_family[good])} only ({family})"
    sentence = (
        f"It listens on {at}, while `{name}` also means {words.join(by_family[bad])}, {who}: "
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
