"""The notification policy and rules, with the real store as its memory."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from portbell.daemon.addresses import classify
from portbell.daemon.model import Event, EventKind, Exposure, Listener, Owner, Transport, snapshot_of
from portbell.daemon.rules import Policy, Rule, Verdict
from portbell.daemon.record import Store

NOW = datetime(2026, 11, 26, 9, tzinfo=timezone.utc)


def li(port, address="0.0.0.0", name="node", exe="/usr/bin/node", pid=7, user="ana", transport=Transport.TCP, started=NOW):
    return Listener(transport, 6 if ":" in address else 4, address, port, classify(address), owners=(Owner(pid=pid, uid=1000, name=name, exe=exe, user=user, started_at=started),))


def ev(listener, kind=EventKind.OPENED, previous=None):
    return Event(kind, NOW, listener, previous)


@pytest.fixture
def memory(tmp_path):
    s = Store.open(tmp_path / "db")
    yield s
    s.close()


def remember(store, listener):
    store.record(snapshot_of([listener], NOW), [(ev(listener), Verdict(True, "x"))])


def test_exposed_listener_alerts_and_closed_never_does(memory):
    p = Policy()
    assert p.decide(ev(li(8000)), memory, NOW).alert
    assert not p.decide(ev(li(8000), EventKind.CLOSED), memory, NOW).alert


def test_same_program_on_the_same_key_is_remembered(memory):
    remember(memory, li(8000))
    verdict = Policy().decide(ev(li(8000, pid=99)), memory, NOW)
    assert not verdict.alert and "before" in verdict.reason


def test_random_port_reopened_at_the_same_exposure_is_not_new(memory):
    remember(memory, li(50001))
    assert not Policy().decide(ev(li(50777)), memory, NOW).alert
    assert Policy().decide(ev(li(50777, address="192.168.1.5")), memory, NOW).alert  # another exposure
    assert Policy().decide(ev(li(8001)), memory, NOW).alert  # not a random port


def test_loopback_alerts_only_the_first_time_a_program_is_seen_there(memory):
    p = Policy(loopback="first-seen")
    assert p.decide(ev(li(5173, "127.0.0.1")), memory, NOW).alert
    remember(memory, li(5173, "127.0.0.1"))
    assert not p.decide(ev(li(5174, "127.0.0.1")), memory, NOW).alert
    assert Policy(loopback="always").decide(ev(li(5174, "127.0.0.1")), memory, NOW).alert
    assert not Policy(loopback="never").decide(ev(li(9999, "::1", exe="/bin/new")), memory, NOW).alert


def nameless(port, address="127.0.0.1", uid=0, transport=Transport.TCP):
    """A listener of another user, as an unprivileged view sees it: the socket's uid, nothing else."""
    return Listener(transport, 4, address, port, classify(address), owners=(Owner(pid=None, uid=uid, user="root" if uid == 0 else None),))


def test_the_store_remembers_nameless_owners_so_their_second_loopback_port_is_seen(memory):
    p = Policy()
    assert p.decide(ev(nameless(50001)), memory, NOW).alert
    remember(memory, nameless(50001))
    assert memory.key_seen(nameless(50001).key, "uid:0")
    assert memory.program_seen("uid:0", Exposure.LOOPBACK, Transport.TCP, random_port=True)
    verdict = p.decide(ev(nameless(50002)), memory, NOW)  # the churn: another random port
    assert not verdict.alert and "re-opens random tcp ports" in verdict.reason
    assert not p.decide(ev(nameless(50001)), memory, NOW).alert
    assert p.decide(ev(nameless(50002, uid=104)), memory, NOW).alert  # another user's
    assert p.decide(ev(nameless(50002, transport=Transport.UDP)), memory, NOW).alert  # another transport
    assert p.decide(ev(nameless(631)), memory, NOW).alert  # a fixed port: new once
    remember(memory, nameless(631))
    verdict = p.decide(ev(nameless(631)), memory, NOW)
    assert not verdict.alert and "has listened on 127.0.0.1:631 before" in verdict.reason
    assert p.decide(ev(nameless(632)), memory, NOW).alert
    remember(memory, nameless(50003, "0.0.0.0"))
    assert p.decide(ev(nameless(50003, "0.0.0.0")), memory, NOW).alert  # exposed: every time
    assert p.decide(ev(nameless(50004, "0.0.0.0")), memory, NOW).alert


def test_trust_and_mute_rules_and_their_limits(memory):
    rules = (
        Rule("trust", program="/usr/sbin/sshd", ports=(22, 22)),
        Rule("mute", program="node*", until=NOW + timedelta(hours=1), id=3),
    )
    p = Policy(rules)
    sshd = li(22, name="sshd", exe="/usr/sbin/sshd")
    v = p.decide(ev(sshd), memory, NOW)
    assert not v.alert and v.reason.startswith("trusted by a config rule")
    assert p.decide(ev(li(2222, name="sshd", exe="/usr/sbin/sshd")), memory, NOW).alert  # other port
    v = p.decide(ev(li(4000)), memory, NOW)
    assert not v.alert and v.reason.startswith("muted by rule 3")
    assert p.decide(ev(li(4000)), memory, NOW + timedelta(hours=2)).alert  # expired


def test_until_exit_rule_matches_only_that_process_instance(memory):
    rule = Rule("trust", pid=7, started_at=NOW)
    p = Policy((rule,))
    assert not p.decide(ev(li(8000)), memory, NOW).alert
    assert p.decide(ev(li(8000, started=NOW + timedelta(seconds=1))), memory, NOW).alert  # reused pid


def test_becoming_more_exposed_alerts(memory):
    was = li(8000, "::")
    now = Listener(was.transport, 6, "::", 8000, Exposure.ALL_INTERFACES, dual_stack=True, owners=was.owners)
    assert Policy().decide(ev(now, EventKind.CHANGED, was), memory, NOW).alert
    other = li(8000, "::", name="python3", exe="/usr/bin/python3")
    assert Policy().decide(ev(other, EventKind.CHANGED, was), memory, NOW).alert
    assert not Policy().decide(ev(li(8000, "::", pid=8), EventKind.CHANGED, was), memory, NOW).alert


def test_learning_a_listeners_unit_is_not_a_takeover(memory):
    """A record from before units (or a view that just read the cgroup) gains a unit: no alert.
    Another unit on the same exposed key, with an owner nobody can name, is a takeover."""
    from portbell.daemon.model import Unit, UnitKind

    unseen = (Owner(pid=None, uid=0, user="root"),)
    was = Listener(Transport.TCP, 4, "0.0.0.0", 631, Exposure.ALL_INTERFACES, owners=unseen)
    now = Listener(Transport.TCP, 4, "0.0.0.0", 631, Exposure.ALL_INTERFACES, owners=unseen, unit=Unit(UnitKind.SERVICE, "cups.service"))
    verdict = Policy().decide(ev(now, EventKind.CHANGED, was), memory, NOW)
    assert not verdict.alert and "unit is known" in verdict.reason
    other = Listener(Transport.TCP, 4, "0.0.0.0", 631, Exposure.ALL_INTERFACES, owners=unseen, unit=Unit(UnitKind.SERVICE, "evil.service"))
    assert Policy().decide(ev(other, EventKind.CHANGED, now), memory, NOW).alert
