"""What several commands share: the sampler and transport options, argparse types, JSON output."""

from __future__ import annotations

import argparse
import json
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


def sample(args) -> Snapshot:
    sampler = open_sampler(args)
    try:
        return sampler.sample()
    finally:
        sampler.close()


def transport_filter(args) -> Transport | None:
    if getattr(args, "tcp", False):
        return Transport.TCP
    if getattr(args, "udp", False):
        return Transport.UDP
    return None


def print_json(data) -> None:
    print(json.dumps(data, sort_keys=False), flush=True)


def seconds(low: float, high: float):
    """An argparse type: a number of seconds from `low` to `high`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range: use {low:g} to {high:g} seconds")
        return value

    return parse


def port(text: str) -> int:
    """An argparse type: a port by the one rule (addresses.parse_port)."""
    try:
        return parse_port(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
