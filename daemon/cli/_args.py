"""What several commands share: the sampler and transport options, argparse types, JSON output."""

from __future__ import annotations

import argparse
import os

from ..addresses import parse_port
from ..model import Snapshot, Transport


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def stop_on_signals(stop) -> None:
    """TERM and Ctrl-C set `stop`: a command that runs until stopped ends cleanly, between two steps."""
    import signal  # here: the quick commands never need it

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())


def sampler_option(p) -> None:
    p.add_argument("--sampler", choices=("sockdiag", "psutil"), help="force a sampler (default: the best that works here)")


def transport_options(p) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--tcp", action="store_true", help="TCP only")
    group.add_argument("--udp", action="store_true", help="UDP only")


def open_sampler(args):
    from .. import samplers

    sampler, _skipped = samplers.open_sampler(getattr(args, "sampler", None))
    return sampler


def sample(args, ports: frozenset[int] | None = None) -> Snapshot:
    """One look at the listeners (`ports`: only those on these ports, whose owners alone are searched)."""
    from .. import samplers

    return samplers.sample_once(getattr(args, "sampler", None), ports)


def transport_filter(args) -> Transport | None:
    if getattr(args, "tcp", False):
        return Transport.TCP
    if getattr(args, "udp", False):
        return Transport.UDP
    return None


def print_json(data) -> None:
    import json

    print(json.dumps(data, sort_keys=False), flush=True)


def ranged(convert, low, high, name: str, outside: str):
    """An argparse type: `convert(text)` from `low` to `high`; `name` says what it is, and a value
    out of range is "<text> <outside>"."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None
        if not low <= value <= high:  # NaN too
            raise argparse.ArgumentTypeError(f"{text} {outside}")
        return value

    return parse


def seconds(low: float, high: float):
    """An argparse type: a number of seconds from `low` to `high`."""
    return ranged(float, low, high, "a number of seconds", f"is out of range: use {low:g} to {high:g} seconds")


def port(text: str) -> int:
    """An argparse type: a port by the one rule (addresses.parse_port)."""
    try:
        return parse_port(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def whole(low: int, high: int, name: str, hint: str):
    """An argparse type: a whole number from `low` to `high`; `name` says what it is, `hint` what to give."""
    return ranged(int, low, high, name, f"is not {name}: {hint}")


SQLITE_MAX = 2**63 - 1  # the largest integer SQLite keeps: ids, limits
# `--limit 0` or `-3` would mean nothing, or everything
count = whole(1, SQLITE_MAX, "a count", "give 1 or more")
row_id = whole(1, SQLITE_MAX, "a rule id", "ids are whole numbers from 1 (list them with `portbell trust`)")
pid = whole(1, 2**31 - 1, "a process id", f"pids are whole numbers from 1 to {2**31 - 1}")


def duration(text: str):
    """An argparse type: a positive duration (`30m`, `8h`, `1d`), at most a hundred years."""
    from ..when import parse_duration

    try:
        return parse_duration(text, positive=True)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


# ------------------------------------------------------------------ options every command takes


def common_options(p) -> None:
    """`-v` and `--color`, after the command too: defaults suppressed so the main parser's stand."""
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more (to stderr)")
    p.add_argument(
        "--color", "--colour", dest="color", choices=("auto", "always", "never"), default=argparse.SUPPRESS,
        help="colour the text: auto (on a terminal, unless NO_COLOR is set), always, never",
    )


def colour(args, stream=None) -> bool:
    """Whether text output is coloured: `--color always` forces it, `never` and NO_COLOR turn it off,
    otherwise only on a terminal that is not dumb."""
    import sys

    choice = getattr(args, "color", "auto") or "auto"
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


# ------------------------------------------------------------------ filters of ls and watch


def port_list(text: str) -> tuple[tuple[int, int], ...]:
    """An argparse type: `8000`, `8000,8080`, `8000-8100` (by addresses.parse_ports)."""
    from ..addresses import parse_ports

    try:
        return tuple(parse_ports(part.strip()) for part in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def user(text: str) -> str:
    """An argparse type: a user of this machine, by name or uid (kept as the name owners carry)."""
    try:
        import pwd
    except ImportError:  # Windows: no user database to ask; owners' names are taken as given
        return text
    try:
        return pwd.getpwuid(int(text)).pw_name if text.isdigit() else pwd.getpwnam(text).pw_name
    except (KeyError, OverflowError):
        raise argparse.ArgumentTypeError(f"no user {text!r} on this machine (see `getent passwd`)") from None


def filter_options(p) -> None:
    from ..model import Exposure

    p.add_argument("--port", type=port_list, metavar="P[,Q|P-Q]", help="only these ports: 8000, 8000,8080 or 8000-8100")
    p.add_argument("--process", metavar="NAME", help="only listeners of this program: its name, or its exe's full path")
    p.add_argument("--user", metavar="USER", help="only listeners of this user (a name or a uid)")
    p.add_argument("--exposure", action="append", choices=[e.value for e in Exposure], help="only this exposure (repeat for several)")
    p.add_argument("--unit", metavar="GLOB", help="only listeners of a unit: cups.service, 'app-*', a container's name")


def program_matches(owner, text: str) -> bool:
    """`--process`: the program's name, or its exe's exact path (a path has a slash); never a substring."""
    return owner.exe == text if ("/" in text or "\\" in text) else owner.name == text


def listener_filter(args):
    """A predicate on listeners from the filter options (and --tcp/--udp, --exposed) a command has."""
    transport = transport_filter(args)
    ports = getattr(args, "port", None)
    process, user = getattr(args, "process", None), getattr(args, "user", None)
    exposures = set(getattr(args, "exposure", None) or ())
    unit, exposed = getattr(args, "unit", None), getattr(args, "exposed", False)
    if unit is not None:  # only then: ls and watch without --unit need neither (tests/test_imports.py)
        import fnmatch

        from ..rules import unit_names

    def user_matches(owner) -> bool:
        return owner.user == user or (user.isdigit() and owner.uid == int(user))

    def wanted(li) -> bool:
        return (
            (transport is None or li.transport is transport)
            and (not exposed or li.exposure.exposed)
            and (not ports or any(low <= li.port <= high for low, high in ports))
            and (not exposures or str(li.exposure) in exposures)
            and (process is None or any(program_matches(o, process) for o in li.owners))
            and (user is None or any(user_matches(o) for o in li.owners))
            and (unit is None or any(fnmatch.fnmatchcase(n, unit) for n in unit_names(li)))
        )

    return wanted
