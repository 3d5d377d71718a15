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


def test_coverage_change_rebaselines_instead_of_reporting():
    m = Monitor(Replay(snap(1, complete=False), snap(1, 2, 3, complete=True), snap(1, 2)))
    m.poll()
    rebase = m.poll()
    assert rebase.baseline and rebase.events == []
    assert [(e.kind, e.key.port) for e in m.poll().events] == [(EventKind.CLOSED, 3)]


def test_run_stops_when_asked_and_polls_every_interval():
    stop = threading.Event()
    seen = []

    def handle(poll):
        seen.append(poll)
        if len(seen) == 3:
            stop.set()

    run(Monitor(Replay(snap(1), snap(1), snap(1, 2), snap(1))), 0.001, stop, handle)
    assert len(seen) == 3 and [e.key.port for e in seen[2].events] == [2]
