"""Snapshot diff, apply and merge. Pure: values in, values out.

`diff(a, b)` returns the events that turn a's listeners into b's, keyed by
(transport, address, port); `apply(a, events)` replays them, and
`apply(a, diff(a, b)) == b` holds for any two snapshots (a property test
keeps it true).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .model import Event, EventKind, Key, Listener, Snapshot, order

Listeners = Mapping[Key, Listener]


def diff(previous: Snapshot, current: Snapshot) -> list[Event]:
    return diff_listeners(previous.listeners, current.listeners, current.taken_at)


def diff_listeners(before: Listeners, after: Listeners, at) -> list[Event]:
    if before is after:  # a sampler hands back the same map when nothing changed: no work
        return []
    events: list[Event] = []
    for key, now in after.items():
        was = before.get(key)
        if was is None:
            events.append(Event(EventKind.OPENED, at, now))
        elif was != now:
            events.append(Event(EventKind.CHANGED, at, now, previous=was))
    for key, was in before.items():
        if key not in after:
            events.append(Event(EventKind.CLOSED, at, was))
    events.sort(key=lambda e: order(e.listener))
    return events


def apply(listeners: Listeners, events: Iterable[Event]) -> dict[Key, Listener]:
    result = dict(listeners)
    for event in events:
        if event.kind is EventKind.CLOSED:
            result.pop(event.key, None)
        else:
            result[event.key] = event.listener
    return result


def merge(listeners: Iterable[Listener]) -> dict[Key, Listener]:
    """Listeners by key: several sockets under one key (SO_REUSEPORT, or one per uid) are one
    listener with the union of their owners (`Listener.joined`)."""
    out: dict[Key, Listener] = {}
    for li in listeners:
        key = li.key
        have = out.get(key)
        out[key] = li if have is None else have.joined(li)
    return out
