"""snapshot.diff's order: the events of one poll come in the model's one order, whatever the maps' order."""

from __future__ import annotations

from datetime import datetime, timezone

from portbell.daemon.addresses import classify
from portbell.daemon.model import Listener, Owner, Transport, snapshot_of
from portbell.daemon.snapshot import diff

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)


def _li(port: int, pid: int = 1) -> Listener:
    return Listener(Transport.TCP, 4, "127.0.0.1", port, classify("127.0.0.1"), owners=(Owner(pid=pid, uid=0, name="x"),))


def test_diff_lists_events_by_port_not_by_kind_or_map_order():
    before = snapshot_of([_li(9000), _li(3000)], T0)
    after = snapshot_of([_li(8000), _li(3000, pid=2), _li(1000)], T0)
    assert [(e.key.port, str(e.kind)) for e in diff(before, after)] == [
        (1000, "opened"), (3000, "changed"), (8000, "opened"), (9000, "closed"),
    ]  # fmt: skip
