"""`portbell ls`, `who` and `watch`: the listeners now, who owns a port, events as they happen."""

from __future__ import annotations

import sys

from .. import ports, words
from ..addresses import parse_address, parse_endpoint, serves
from ..errors import SampleError, UsageError
from ..model import SCHEMA_VERSION, Transport
from ._args import (
    colour, filter_options, is_root, listener_filter, open_sampler, print_json, sample, sampler_option, seconds,
    stop_on_signals, transport_filter, transport_options,
)

FILTERS = ("port", "process", "user", "exposure", "unit", "tcp", "udp")


def cmd_ls(args) -> int:
    snap = sample(args)
    wanted = listener_filter(args)
    listeners = [li for li in snap.sorted() if wanted(li)]
    if args.json:
        print_json({"version": SCHEMA_VERSION, "complete": snap.complete, "listeners": [li.to_dict() for li in listeners]})
        return 0
    if listeners:
        print(words.listeners_table(listeners, colour=colour(args)))
    elif any(getattr(args, f, None) for f in FILTERS):
        print("Nothing listens" + (" on the network" if args.exposed else "") + " that matches.")
    else:
        print("Nothing listens" + (" on the network." if args.exposed else "."))
    if not snap.complete:
        print(f"note: partial view: {words.partial_view(is_root())}", file=sys.stderr)
    return 0


def parse_target(text: str) -> tuple[frozenset[str] | None, int]:
    """`8000`, `127.0.0.1:8000`, `[::1]:8000`, `localhost:8000` -> (addresses or None, port)."""
    try:
        host, port = parse_endpoint(text)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if host is None:
        return None, port
    if host.lower() == "localhost":
        return frozenset({"127.0.0.1", "::1"}), port
    try:
        return frozenset({str(parse_address(host))}), port
    except ValueError:
        raise UsageError(f"{host!r} is not an IP address; give a numeric address or localhost") from None


def matching(snap, addresses, port: int, transport) -> list:
    """The listeners a `who` or `stop` target names: that port, that transport, serving that address."""
    return [
        li
        for li in snap.sorted()
        if li.port == port
        and (transport is None or li.transport is transport)
        and (addresses is None or any(serves(li, a) for a in addresses))
    ]


def cmd_who(args) -> int:
    addresses, port = parse_target(args.target)
    snap = sample(args, frozenset({port}))
    wanted = transport_filter(args)
    found = matching(snap, addresses, port, wanted)
    about = ports.info(port, str(wanted or Transport.TCP))
    if args.json:
        print_json({"version": SCHEMA_VERSION, "complete": snap.complete, "listeners": [li.to_dict() for li in found], "port": about.to_dict()})
        return 0 if found else 1
    if not found:
        where = f" on {args.target}" if addresses else f" on port {port}"
        kind = f" ({wanted})" if wanted else " (tcp or udp)"
        print(f"Nothing listens{where}{kind}.")
        for hint in elsewhere(snap.sorted(), addresses, port, wanted):
            print(hint)
        print(about.describe())
        if about.ephemeral:
            from .. import samplers
            from ..doctor import ephemeral_lines

            try:
                connections = samplers.connections_on(port)
            except SampleError:
                connections = None
            print("\n".join(ephemeral_lines(about, connections)))
        if not snap.complete:
            print(f"note: partial view: {words.partial_view(is_root())}", file=sys.stderr)
        return 1
    from .. import samplers

    for li in found:
        print("\n".join(words.listener_block(li)))
        for owner in li.owners:
            parent = samplers.process(owner.ppid) if owner.ppid else None
            print("\n".join(words.owner_block(owner, parent, snap.complete, li)))
    print(about.describe())
    return 0


def elsewhere(listeners, addresses, port, transport) -> list[str]:
    """When nothing matched: what does listen on that port, on another transport or address."""
    same_port = [li for li in listeners if li.port == port]
    other_transport = [li for li in same_port if transport is not None and li.transport is not transport]
    other_address = [
        li for li in same_port
        if addresses is not None and (transport is None or li.transport is transport) and not any(serves(li, a) for a in addresses)
    ]
    lines = []
    if other_transport:
        lines.append(f"But {words.join(sorted({str(li.transport) for li in other_transport}))} port {port} listens: "
                     + "; ".join(f"{li.transport} {li.endpoint} by {words.owners_phrase(li)}" for li in other_transport) + ".")
    if other_address:
        lines.append(f"But port {port} listens on another address: "
                     + "; ".join(f"{li.transport} {li.endpoint} by {words.owners_phrase(li)}" for li in other_address)
                     + f". A client must connect to {words.join([li.address for li in other_address], 'or')}.")
    return lines


def cmd_watch(args) -> int:
    import threading

    from ..service import Monitor, run

    sampler = open_sampler(args)
    stop = threading.Event()
    stop_on_signals(stop)
    monitor = Monitor(sampler)
    wanted, painted = listener_filter(args), colour(args)

    def handle(poll) -> None:
        if poll.baseline and poll.snapshot is not None:
            snap = poll.snapshot
            print(
                f"watching {len(snap.listeners)} listeners with {snap.sampler}, every {args.interval:g}s; "
                f"view {'complete' if snap.complete else 'partial'}. Ctrl-C stops.",
                file=sys.stderr,
                flush=True,
            )
            if not snap.complete:
                print(f"note: {words.PARTIAL}: {words.partial_view(is_root())}", file=sys.stderr, flush=True)
        for event in poll.events:
            if not (wanted(event.listener) or (event.previous is not None and wanted(event.previous))):
                continue
            if args.json:
                print_json(event.to_dict())
            else:
                print(words.event_line(event, colour=painted), flush=True)

    try:
        run(monitor, args.interval, stop, handle)
    finally:
        sampler.close()
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("ls", help="list the current listeners")
    p.add_argument("--json", action="store_true", help="one JSON document (version 1)")
    p.add_argument("--exposed", action="store_true", help="only listeners other machines may reach")
    filter_options(p)
    transport_options(p)
    sampler_option(p)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("who", help="who owns a port: PORT or ADDRESS:PORT")
    p.add_argument("target", metavar="PORT|ADDR:PORT", help="8000, 127.0.0.1:8000, [::1]:8000 or localhost:8000")
    p.add_argument("--json", action="store_true", help="one JSON document (version 1)")
    transport_options(p)
    sampler_option(p)
    p.set_defaults(func=cmd_who)

    p = sub.add_parser("watch", help="print listeners opening, closing and changing, as they happen")
    if not p:
        return  # main builds another command's parser only: the configuration's range is not imported for it
    from ..config import INTERVAL_RANGE_S

    p.add_argument("--json", action="store_true", help="one JSON object per event and line (version 1)")
    p.add_argument("--interval", type=seconds(*INTERVAL_RANGE_S), default=1.0, metavar="S",
                   help=f"seconds between samples, {INTERVAL_RANGE_S[0]:g} to {INTERVAL_RANGE_S[1]:g} as in the config (default 1)")
    filter_options(p)
    transport_options(p)
    sampler_option(p)
    p.set_defaults(func=cmd_watch)
