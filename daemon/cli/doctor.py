"""`portbell doctor [HOST:]PORT`: the command's options, the record as the history seam, the output."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ._args import sampler_option

if TYPE_CHECKING:  # imported by the command itself: other commands never load the doctor
    from ..doctor import LastHolder


def add_parser(sub) -> None:
    p = sub.add_parser(
        "doctor",
        help="why a connection to [HOST:]PORT fails, or who can reach it",
        description="Tries a TCP connection to every address HOST (default localhost, meaning ::1 and 127.0.0.1) "
        "maps to on this machine, compares with the listeners, and explains each finding with its fix. "
        "Exit 0 when a connection would succeed, 1 when it would not, 2 for bad input.",
    )
    p.add_argument("target", metavar="[HOST:]PORT", help="8000, localhost:8000, 192.168.1.5:8000, [::1]:8000 or a URL")
    p.add_argument("--json", action="store_true", help="one JSON document (version 1)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--tcp", action="store_true", help="ask about TCP (the default)")
    group.add_argument("--udp", action="store_true", help="ask about UDP (compared with listeners, never sent)")
    sampler_option(p)
    p.set_defaults(func=command)


def _recorded_history() -> tuple[LastHolder | None, Any]:
    """The daemon's record, opened read-only, as the history seam: (last_holder, store to close).

    (None, None) when there is no usable record (no daemon has kept one).
    """
    from .. import paths
    from ..errors import StoreError
    from ..record import Store

    try:
        store = Store.open(paths.database(), readonly=True)
    except StoreError:
        return None, None
    return store.last_holder, store


def command(args) -> int:
    """`portbell doctor`: 0 when a connection would succeed, 1 when not (UsageError -> 2 in cli.main).
    The history is the daemon's record when there is one."""
    from .. import samplers
    from ..doctor import examine, parse_target, report
    from ..model import Transport

    transport = Transport.UDP if getattr(args, "udp", False) else Transport.TCP
    parse_target(args.target)  # bad input fails before any sampler opens
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
        print(json.dumps(diagnosis.to_dict()), flush=True)
    else:
        print(report(diagnosis), flush=True)
    return 0 if diagnosis.reachable else 1


