"""What several commands share: the sampler and transport options, argparse types, JSON output."""

from __future__ import annotations

import argparse
import os

from ..addresses import parse_port
from ..model import Snapshot, Transport


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


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
