"""An unprivileged daemon on a busy desktop: root's loopback listeners it cannot name, churning
random ports all day, ring once, not once each; a new fixed loopback port of theirs rings once;
anything of theirs other machines can reach rings every time.

The daemon's poll against replayed snapshots: the order of decisions inside one poll, and across
polls waiting for a full disk.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone

from portbell.daemon.config import Config
from portbell.daemon.model import Exposure, Listener, Owner, Transport, snapshot_of
from portbell.daemon.record import Store
from portbell.daemon.service import Daemon

T0 = datetime(2026, 11, 26, tzinfo=timezone.utc)
BY_ROOT = "loopback, by a program of root nobody can name"
FIRST_RANDOM = f"{BY_ROOT}: the first random tcp port root opens on loopback"
REOPENS = f"{BY_ROOT}; root re-opens random tcp ports on loopback"


def nameless(port, address="127.0.0.1"):
    exposure = Exposure.LOOPBACK if address.startswith("127.") else Exposure.ALL_INTERFACES
    return Listener(Transport.TCP, 4, address, port, exposure, owners=(Owner(pid=None, uid=0, user="root"),))


class Replay:
    """The sampler seam: hands out the staged snapshots, then repeats the last."""

    name = "replay"

    def __init__(self, *states):
        self.states = [snapshot_of(s, T0, sampler="replay") for s in states]

    def sample(self):
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def close(self):
        pass


def verdicts(records) -> dict[int, tuple[bool, str]]:
    return {r.event.listener.port: (r.alert, r.reason) for r in records}


def test_nameless_random_ports_in_one_poll_ring_once(tmp_path):
    store = Store.open(tmp_path / "portbell.db")
    busy = [nameless(50001), nameless(50002), nameless(50003), nameless(20001), nameless(50004, "0.0.0.0"), nameless(50005, "0.0.0.0")]
    daemon = Daemon(store=store, sampler=Replay([], busy), config=Config(), config_path=None)
    daemon.step()  # the baseline
    got = verdicts(daemon.step())
    assert got == {
        50001: (True, FIRST_RANDOM),
        50002: (False, REOPENS),
        50003: (False, REOPENS),
        20001: (True, f"{BY_ROOT}: the first time root listens on 127.0.0.1:20001"),
        50004: (True, "reachable from other machines (all-interfaces), by a program nobody can name"),
        50005: (True, "reachable from other machines (all-interfaces), by a program nobody can name"),
    }
    daemon.close()
    store.close()


class FullDisk(Store):
    """The record's writes fail while `full` (the seam: what SQLite says on a full disk)."""

    full = True

    def record_polls(self, polls):
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        return super().record_polls(polls)


def test_a_poll_waiting_for_the_disk_counts_as_seen(tmp_path):
    store = FullDisk.open(tmp_path / "portbell.db")
    store.full = False
    daemon = Daemon(store=store, sampler=Replay([], [nameless(50001)], [nameless(50002)], [nameless(50002), nameless(50003)]), config=Config(), config_path=None)
    daemon.step()  # the baseline
    store.full = True
    assert daemon.step() == [] and daemon.step() == []  # 50001 opens, then 50001 closes and 50002 opens: both wait
    store.full = False
    got = daemon.step()  # the disk has room: all three polls are committed
    assert [(str(r.event.kind), r.event.listener.port, r.alert) for r in got] == [
        ("opened", 50001, True), ("closed", 50001, False), ("opened", 50002, False), ("opened", 50003, False)
    ]  # fmt: skip
    daemon.close()
    store.close()
