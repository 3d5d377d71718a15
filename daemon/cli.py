"""The `portbell` command. Entry layer: parses arguments, composes the parts, prints.

Exit codes: 0 success, 1 a clean "no" (nothing listens), 2 bad usage or input.
Nothing here imports a GUI toolkit: `portbell ls` works on a headless machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Sequence

from . import __version__, cli_record, doctor, ports, words
from .addresses import parse_address, parse_endpoint, serves
from .errors import PortbellError, SampleError, UsageError
from .model import SCHEMA_VERSION, Snapshot, Transport
from .service import Monitor, Poll, run

log = logging.getLogger("portbell")

# ----------------------------------------------------------------- helpers


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _sampler(args):
    from . import samplers

    sampler, _skipped = samplers.open_sampler(getattr(args, "sampler", None))
    return sampler


def _sample(args) -> Snapshot:
    sampler = _sampler(args)
    try:
        return sampler.sample()
    finally:
        sampler.close()


def _transport_filter(args) -> Transport | None:
    if getattr(args, "tcp", False):
        return Transport.TCP
    if getattr(args, "udp", False):
        return Transport.UDP
    return None


def _print_json(data) -> None:
    print(json.dumps(data, sort_keys=False), flush=True)




# ---------------------------------------------------------------------- ls


def cmd_ls(args) -> int:
    snap = _sample(args)
    wanted = _transport_filter(args)
    listeners = [
        li
        for li in snap.sorted()
        if (wanted is None or li.transport is wanted) and (not args.exposed or li.exposure.exposed)
    ]
    if args.json:
        _print_json({"version": SCHEMA_VERSION, "complete": snap.complete, "listeners": [li.to_dict() for li in listeners]})
        return 0
    if listeners:
        print(words.listeners_table(listeners))
    else:
        print("Nothing listens" + (" on the network." if args.exposed else "."))
    if not snap.complete:
        print(f"note: partial view: {words.partial_view(_is_root())}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------- who


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


def cmd_who(args) -> int:
    addresses, port = parse_target(args.target)
    snap = _sample(args)
    wanted = _transport_filter(args)
    found = [
        li
        for li in snap.sorted()
        if li.port == port
        and (wanted is None or li.transport is wanted)
        and (addresses is None or any(serves(li, a) for a in addresses))
    ]
    about = ports.info(port, str(wanted or Transport.TCP))
    if args.json:
        _print_json({"version": SCHEMA_VERSION, "complete": snap.complete, "listeners": [li.to_dict() for li in found], "port": about.to_dict()})
        return 0 if found else 1
    if not found:
        where = f" on {args.target}" if addresses else f" on port {port}"
        kind = f" ({wanted})" if wanted else " (tcp or udp)"
        print(f"Nothing listens{where}{kind}.")
        print(about.describe())
        if about.ephemeral:
            from . import samplers

            try:
                connections = samplers.connections_on(port)
            except SampleError:
                connections = None
            print("\n".join(doctor.ephemeral_lines(about, connections)))
        if not snap.complete:
            print(f"note: partial view: {words.partial_view(_is_root())}", file=sys.stderr)
        return 1
    from . import samplers

    for li in found:
        dual = ", also serves IPv4" if li.dual_stack else ""
        print(f"{li.transport} {li.endpoint}  {li.exposure}{dual}")
        for owner in li.owners:
            parent = samplers.process(owner.ppid) if owner.ppid else None
            print("\n".join(words.owner_block(owner, parent, snap.complete)))
    print(about.describe())
    return 0


# ------------------------------------------------------------------- watch


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_watch(args) -> int:
    sampler = _sampler(args)
    stop = threading.Event()
    _stop_on_signals(stop)
    monitor = Monitor(sampler)

    def handle(poll: Poll) -> None:
        if poll.baseline and poll.snapshot is not None:
            snap = poll.snapshot
            view = "complete" if snap.complete else "partial (run as root to see every owner)"
            print(
                f"watching {len(snap.listeners)} listeners with {snap.sampler}, every {args.interval:g}s; "
                f"view {view}. Ctrl-C stops.",
                file=sys.stderr,
                flush=True,
            )
        for event in poll.events:
            if args.json:
                _print_json(event.to_dict())
            else:
                print(words.event_line(event), flush=True)

    try:
        run(monitor, args.interval, stop, handle)
    finally:
        sampler.close()
    return 0


# -------------------------------------------------------------------- tray


def cmd_tray(args) -> int:
    from ..tray.app import run  # the daemon's only import of the tray: lazy, so other commands load no GUI toolkit

    return run(verbose=args.verbose)


# -------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portbell",
        description="Rings when something on your machine starts listening on a port.",
        epilog="With no command, portbell runs its main job: it watches and prints events as they happen.",
    )
    parser.add_argument("--version", action="version", version=f"portbell {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (to stderr)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def sampler_option(p):
        p.add_argument("--sampler", choices=("sockdiag", "psutil"), help="force a sampler (default: the best that works here)")

    def transport_options(p):
        group = p.add_mutually_exclusive_group()
        group.add_argument("--tcp", action="store_true", help="TCP only")
        group.add_argument("--udp", action="store_true", help="UDP only")

    p = sub.add_parser("ls", help="list the current listeners")
    p.add_argument("--json", action="store_true", help="one JSON document (version 1)")
    p.add_argument("--exposed", action="store_true", help="only listeners other machines may reach")
    transport_options(p)
    sampler_option(p)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("who", help="who owns a port: PORT or ADDRESS:PORT")
    p.add_argument("target", metavar="PORT|ADDR:PORT")
    p.add_argument("--json", action="store_true", help="one JSON document (version 1)")
    transport_options(p)
    sampler_option(p)
    p.set_defaults(func=cmd_who)

    p = sub.add_parser("watch", help="print listeners opening, closing and changing, as they happen")
    p.add_argument("--json", action="store_true", help="one JSON object per event and line (version 1)")
    p.add_argument("--interval", type=cli_record.seconds(0.05, 86400), default=1.0, metavar="S", help="seconds between samples (default 1)")
    sampler_option(p)
    p.set_defaults(func=cmd_watch)
    doctor.add_parser(sub)
    cli_record.add_parsers(sub)
    sub.add_parser("tray", help="the tray icon: listeners at a glance and notifications (needs a desktop)").set_defaults(func=cmd_tray)
    from . import cli_autostart  # run at login; imported here so this edit stays one hunk
    cli_autostart.add_parser(sub)
    return parser


def _main_job(verbose: bool) -> list[str]:
    """`portbell` alone: the tray when there is a desktop (it starts the daemon); otherwise
    the daemon in the foreground printing events as readable lines, or, when a daemon
    already runs, its record followed live."""
    from . import paths
    from .service import InstanceLock
    from .session import graphical_session

    if graphical_session() is None:
        return [*(["--verbose"] if verbose else []), "tray"]
    if InstanceLock.holder(paths.lock_file()) is not None:
        return ["events", "--since", "10m", "--follow"]
    return [*(["--verbose"] if verbose else []), "daemon"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="portbell: %(message)s")
    if args.command is None:
        args = parser.parse_args(_main_job(args.verbose))
    try:
        return args.func(args)
    except UsageError as err:
        print(f"portbell: {err}", file=sys.stderr)
        return 2
    except SampleError as err:
        print(f"portbell: cannot read the listening sockets: {err}", file=sys.stderr)
        return 1
    except PortbellError as err:
        print(f"portbell: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `portbell ls | head`
        return 0
