"""The poll loop's baseline rules, with a sampler that replays snapshots (a narrow seam)."""

import threading
from datetime import datetime, timezone

from portbell.daemon.errors import SampleError
from portbell.daemon.model import EventKind, Listener, Exposure, Owner, Transport, snapshot_of
from portbell.daemon.service import Monitor, run

T0 = datetime(2026, 11, 26, tzinfo=timezone.utc)


def li(port):
    return Listener(Transport.TCP, 4, "0.0.0.0", port, Exposure.ALL_INTERFACES, owners=(Owner(pid=port, uid=0),))


class Replay:
    name = "replay"

    def __init__(self, *steps):
        self.steps = list(steps)

    def sample(self):
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def close(self):
        pass


def snap(*ports, complete=True, sampler="replay"):
    return snapshot_of([li(p) for p in ports], T0, complete=complete, sampler=sampler)


def test_first_sample_is_a_silent_baseline():
    poll = Monitor(Replay(snap(1, 2))).poll()
    assert poll.baseline and poll.events == []


def test_a_failed_sample_is_not_an_empty_one():
    m = Monitor(Replay(snap(1, 2), SampleError("netlink said no"), snap(1, 2, 3)))
    m.poll()
    failed = m.poll()
    assert failed.snapshot is None and failed.error == "netlink said no" and failed.events == []
    after = m.poll()
    assert [(e.kind, e.key.port) for e in after.events] == [(EventKind.OPENED, 3)]  # nothing "closed"


def test_coverage_change_keeps_opened_and_closed_and_takes_owner_differences_silently():
    hidden = Listener(Transport.TCP, 4, "0.0.0.0", 1, Exposure.ALL_INTERFACES, owners=(Owner(pid=None, uid=0),))
    partial = snapshot_of([hidden, li(4)], T0, complete=False, sampler="replay")
    m = Monitor(Replay(partial, snap(1, 2, 3, complete=True), snap(1, 2)))
    m.poll()
    flip = m.poll()
    assert not flip.baseline and flip.refresh
    # 1's owner became visible: not news; 2 and 3 opened and 4 closed across the flip: news
    assert sorted((str(e.kind), e.key.port) for e in flip.events) == [("closed", 4), ("opened", 2), ("opened", 3)]
    assert [(e.kind, e.key.port) for e in m.poll().events] == [(EventKind.CLOSED, 3)]


def test_coverage_change_still_reports_a_change_of_the_socket_itself():
    v6 = Listener(Transport.TCP, 6, "::", 7, Exposure.ALL_INTERFACES, dual_stack=False, owners=(Owner(pid=None, uid=0),))
    dual = Listener(Transport.TCP, 6, "::", 7, Exposure.ALL_INTERFACES, dual_stack=True, owners=(Owner(pid=7, uid=0),))
    m = Monitor(Replay(snapshot_of([v6], T0, complete=False), snapshot_of([dual], T0, complete=True)))
    m.poll()
    assert [(e.kind, e.key.port) for e in m.poll().events] == [(EventKind.CHANGED, 7)]


def test_run_stops_when_asked_and_polls_every_interval():
    stop = threading.Event()
    seen = []

    def handle(poll):
        seen.append(poll)
        if len(seen) == 3:
            stop.set()

    run(Monitor(Replay(snap(1), snap(1), snap(1, 2), snap(1))), 0.001, stop, handle)
    assert len(seen) == 3 and [e.key.port for e in seen[2].events] == [2]
