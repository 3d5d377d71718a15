"""`portbell doctor [HOST:]PORT`: why a connection fails, or who can reach it. The facade: `examine()`.

Four modules, kept apart:
- values.py: `Target`, `Probe`, `Firewall`, `Finding`, `Diagnosis` (frozen);
- reasoning.py: `diagnose()`, a pure function over the listeners snapshot, the
  resolved target, the connection results, the port's facts, the firewall's
  facts and an optional history callable;
- probes.py: thin adapters for the I/O: `resolve()`, `is_local()`, `connect()`
  (a TCP connection with a short timeout, refused for any address this machine
  does not own), `detect_firewall()` (read-only queries) and the firewall text parsers;
- report.py: the readable forms, and the `who` sentence for ephemeral ports.
The command line (options, the record as history) is daemon/cli/doctor.py.

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

from .. import ports
from ..addresses import parse_endpoint
from ..errors import UsageError
from ..model import Transport
from .probes import connect, detect_firewall, iptables_filters_inbound, is_local, nft_filters_inbound, resolve
from .reasoning import diagnose
from .report import ephemeral_lines, report
from .values import LOCALHOST, Code, Diagnosis, Finding, Firewall, LastHolder, Outcome, Probe, Target

__all__ = [
    "LOCALHOST", "Code", "Diagnosis", "Finding", "Firewall", "LastHolder", "Outcome", "Probe", "Target",
    "connect", "detect_firewall", "diagnose", "ephemeral_lines", "examine", "iptables_filters_inbound",
    "is_local", "nft_filters_inbound", "parse_target", "report", "resolve",
]


# ------------------------------------------------------------ command line


def parse_target(text: str) -> tuple[str, int]:
    """`3000`, `localhost:3000`, `[::1]:3000`, `host:3000`, `http://localhost:3000/x` -> (host, port);
    no host means localhost."""
    try:
        host, port = parse_endpoint(text, urls=True)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return host or "localhost", port


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
        from .. import samplers

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


