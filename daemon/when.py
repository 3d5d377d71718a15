"""Durations and moments typed by people: `90s`, `30m`, `8h`, `1d`, `2w`, or an ISO 8601 time. Pure; stdlib only."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
MAX_DAYS = 36525  # a hundred years: longer would leave the calendar (year 9999) when added to now


def parse_duration(text: str, *, positive: bool = False) -> timedelta:
    """`90s`, `30m`, `8h`, `1d`, `2w`: at most a hundred years; `positive`: more than nothing."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: use a number and a unit, like 90s, 30m, 8h, 1d or 2w")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not seconds <= MAX_DAYS * 86400:
        raise ValueError(f"{text!r} is too long: a duration is at most {MAX_DAYS // 365} years ({MAX_DAYS}d)")
    if positive and seconds <= 0:
        raise ValueError(f"{text!r} is no time at all: give a duration longer than zero, like 30m")
    return timedelta(seconds=seconds)


def parse_since(text: str, now: datetime) -> datetime:
    """`1h` (that long ago) or an ISO 8601 time (local time when it has no offset)."""
    if _DURATION.match(text):
        return now - parse_duration(text)  # a duration that is too long says so
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (1h, 2d) nor a time (2026-11-26T09:00)") from None
    try:
        if moment.tzinfo is None:
            moment = moment.astimezone()  # the user's local time
        return moment.astimezone(timezone.utc)
    except (OverflowError, OSError, ValueError):  # the calendar's very edge (year 1 or 9999 with an offset)
        raise ValueError(f"{text!r} is too close to the edge of the calendar: give a time between the years 2 and 9998") from None
