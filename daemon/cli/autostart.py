"""`portbell autostart enable | disable | status`: run at login. The work is in daemon/autostart/,
which the tray's "Start at login" toggle also uses.

    --daemon, --tray, --all (the default), --system (Linux, root: the system-wide unit)
    --print   enable: show what would be written (the text on stdout, where on stderr);
              disable: show what would be removed; nothing changes.

Exit codes: 0 done (status: every entry asked about is installed); 1 a clean no (status: some
entry is not installed; enable or disable refused to touch a file portbell did not write, or the
service manager failed); 2 bad usage.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:  # the work itself is imported by the command that uses it: other commands start faster
    from .. import autostart


def _which(args) -> str:
    return args.which or "all"


def _state(entry: autostart.Entry) -> str:
    if entry.foreign:
        return f"not portbell's: {entry.note}"
    if not entry.installed:
        return entry.note
    active = {True: "active", False: "not active", None: "activity unknown"}[entry.active]
    return f"installed, {active}: {entry.note}"


def _print_status(entries: list[autostart.Entry]) -> None:
    for entry in entries:
        print(f"{entry.name:<7} {entry.kind}: {entry.path}")
        print(f"        {_state(entry)}")


def cmd_autostart(args) -> int:
    from .. import autostart

    which = _which(args)
    if args.print and args.action == "status":
        raise UsageError("--print goes with enable or disable: status changes nothing anyway")
    if args.action == "status":
        entries = autostart.status(which)
        _print_status(entries)
        return 0 if all(e.installed for e in entries) else 1
    if args.action == "enable":
        if args.print:
            for spec in autostart.specs(which):
                print(f"# {spec.kind}: {spec.location}", file=sys.stderr, flush=True)
                print(spec.content, end="" if spec.content.endswith("\n") else "\n", flush=True)
            return 0
        autostart.enable(which)
        _print_status(autostart.status(which))
        return 0
    # disable
    if args.print:
        for entry in autostart.status(which):
            if entry.installed:
                print(f"would remove {entry.path}")
            elif entry.foreign:
                print(f"would leave {entry.path}: {entry.note}")
            else:
                print(f"nothing at {entry.path}")
        return 0
    try:
        removed = autostart.disable(which)
    except autostart.AutostartError as err:
        for path in err.done:
            print(f"removed {path}")
        raise
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print("nothing to remove: no autostart entry of portbell's is there")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("autostart", help="run at login: enable, disable, status")
    p.add_argument("action", choices=("enable", "disable", "status"), help="enable: start at login; disable: no more; status: what is set up")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--daemon", dest="which", action="store_const", const="daemon", help="the daemon only")
    group.add_argument("--tray", dest="which", action="store_const", const="tray", help="the tray only")
    group.add_argument("--all", dest="which", action="store_const", const="all", help="the daemon and the tray (the default)")
    group.add_argument("--system", dest="which", action="store_const", const="system", help="the system-wide daemon unit (Linux, root; see packaging/README.md)")
    p.add_argument("--print", action="store_true", help="show what would be written or removed; change nothing")
    p.set_defaults(func=cmd_autostart, which=None)
