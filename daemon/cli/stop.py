"""`portbell stop [ADDR:]PORT`: stop what listens there, after saying what it is and asking; never blindly.

The guard is the tray's (daemon/process.py): pid 0 and 1, other users' processes and a pid whose
exact start time changed are refused. A port a container publishes, or a process a systemd unit
runs, is not signalled at all: the command that stops it properly is said instead (a killed
docker-proxy breaks the container's port; a killed service may be restarted by systemd).
"""

from __future__ import annotations

import sys
import time

from .. import words
from ..process import stop_process
from ._args import is_root, open_sampler, sample, sampler_option, transport_filter, transport_options
from .listeners import elsewhere, matching, parse_target

WAIT_S = 5.0  # how long to watch for the port to close after SIGTERM


def _ask(question: str) -> bool:
    print(f"{question} [y/N] ", end="", flush=True)
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        print()
    return answer.strip().lower() in ("y", "yes")


def _closed(args, port: int, keys) -> bool:
    """Whether the listeners' keys (all on `port`) are gone within WAIT_S, sampled every 0.1 s by
    one sampler that looks at that port only."""
    sampler = open_sampler(args)
    only = frozenset({port})
    try:
        deadline = time.monotonic() + WAIT_S
        while any(k in sampler.sample(only).listeners for k in keys):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True
    finally:
        sampler.close()


def cmd_stop(args) -> int:
    addresses, port = parse_target(args.target)
    snap = sample(args, frozenset({port}))  # matching and elsewhere look at this port only
    wanted = transport_filter(args)
    found = matching(snap, addresses, port, wanted)
    if not found:
        where = f"on {args.target}" if addresses else f"on port {port}"
        print(f"Nothing listens {where}" + (f" ({wanted})" if wanted else "") + ": nothing to stop.")
        for hint in elsewhere(snap.sorted(), addresses, port, wanted):
            print(hint)
        return 1
    targets, refused = [], False
    for li in found:
        print("\n".join(words.stop_lines(li)))
        instead = words.stop_instead(li)
        if instead:
            print(f"  Not signalling it: {instead}")
            refused = True
            continue
        for owner in li.owners:
            if owner.pid is None:
                print(f"  Cannot stop {words.owner_phrase(owner, li.unit)}: "
                      f"{words.partial_view(is_root()) if not snap.complete else 'no process in view holds it'}")
                refused = True
            elif owner.pid not in [t.pid for t in targets]:
                targets.append(owner)
    sent = []
    for owner in targets:
        label = words.owner_phrase(owner)
        if not args.yes and not _ask(f"Stop {label} with SIGTERM?"):
            print(f"Not stopped: {label}.")
            refused = True
            continue
        ok, sentence = stop_process(owner.pid, owner.start, owner.name, myself="refusing to stop portbell itself")
        print(("Stopped: " if ok else "Not stopped: ") + sentence + ".")
        if ok:
            sent.append(owner)
        else:
            refused = True
    if sent and not _closed(args, port, {li.key for li in found}):
        print(f"Port {port} still listens {WAIT_S:g}s after SIGTERM: the process may ignore it (`portbell who {args.target}`).")
        return 1
    if sent:
        print(f"Port {port} is free now.")
    return 1 if refused or not sent else 0


def add_parser(sub) -> None:
    p = sub.add_parser("stop", help="stop what listens on a port, after saying what it is and asking")
    p.add_argument("target", metavar="PORT|ADDR:PORT", help="8000, 127.0.0.1:8000, [::1]:8000 or localhost:8000")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before stopping")
    transport_options(p)
    sampler_option(p)
    p.set_defaults(func=cmd_stop)
