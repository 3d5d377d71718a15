"""rules.py piece by piece: each field of a rule, expiry, trust over mute, program identity, the
policy's every branch and the reason it gives (the reason is what the tray and the log say)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from portbell.daemon import rules
from portbell.daemon.addresses import classify
from portbell.daemon.model import Container, Event, EventKind, Exposure, Forward, Listener, Owner, Transport, Unit, UnitKind
from portbell.daemon.rules import Policy, Rule, deciding_rule, is_anonymous, is_random_port, program_of, unit_names

NOW = datetime(2026, 11, 26, 9, tzinfo=timezone.utc)
T0 = NOW - timedelta(hours=1)


def owner(pid=7, name="node", exe="/usr/bin/node", user="ana", uid=1000, started=T0):
    return Owner(pid=pid, uid=uid, name=name, exe=exe, user=user, started_at=started)


def li(port=8000, address="0.0.0.0", owners=None, transport=Transport.TCP, **kw):
    owners = (owner(),) if owners is None else owners
    return Listener(transport, 6 if ":" in address else 4, address, port, classify(address), owners=owners, **kw)


class Memory:
    """The policy's history as two sets: keys seen with a program, programs seen at an exposure."""

    def __init__(self, keys=(), programs=()):
        self.keys, self.programs = set(keys), set(programs)

    def key_seen(self, key, program):
        return (key, program) in self.keys

    def program_seen(self, program, exposure, transport, *, random_port):
        return (program, exposure, transport, random_port) in self.programs


# ------------------------------------------------------------------ a rule's fields


def test_a_rule_is_inactive_at_its_expiry_instant():
    rule = Rule("mute", until=NOW)
    assert rule.active(NOW - timedelta(microseconds=1)) is True
    assert rule.active(NOW) is False
    assert rule.matches(li(), NOW) is False


def test_a_rule_without_expiry_is_always_active():
    assert Rule("mute").active(NOW) is True
    assert Rule("mute").matches(li(), NOW) is True


def test_transport_must_match():
    assert Rule("mute", transport=Transport.UDP).matches(li(transport=Transport.UDP), NOW)
    assert not Rule("mute", transport=Transport.UDP).matches(li(), NOW)


@pytest.mark.parametrize("port, expected", [(2999, False), (3000, True), (3005, True), (3010, True), (3011, False)])
def test_a_port_range_includes_both_ends(port, expected):
    assert Rule("mute", ports=(3000, 3010)).matches(li(port), NOW) is expected


def test_exposures_must_include_the_listeners():
    assert Rule("mute", exposures=(Exposure.ALL_INTERFACES,)).matches(li(), NOW)
    assert not Rule("mute", exposures=(Exposure.LOOPBACK,)).matches(li(), NOW)


def test_a_unit_glob_matches_the_unit_or_its_container():
    web = Container("0123456789abcdef", name="web", project="shop", service="front")
    unit = Unit(UnitKind.CONTAINER, "0123456789ab", container=web)
    assert Rule("mute", unit="w*").matches(li(unit=unit), NOW)
    assert Rule("mute", unit="shop/front").matches(li(unit=unit), NOW)
    assert not Rule("mute", unit="db").matches(li(unit=unit), NOW)
    assert not Rule("mute", unit="*").matches(li(), NOW)  # no unit: a unit rule cannot match


def test_unit_names_are_the_unit_its_container_and_the_forwarded_container():
    web = Container("0123456789abcdef", name="web", project="shop", service="front")
    db = Container("fedcba9876543210", name="db")
    unit = Unit(UnitKind.CONTAINER, "unit-name", container=web)
    assert unit_names(li(unit=unit, forward=Forward("docker-proxy", container=db))) == [
        "unit-name", "web", "0123456789ab", "shop/front", "db", "fedcba987654",
    ]  # fmt: skip
    assert unit_names(li(unit=Unit(UnitKind.SERVICE, "cups.service"))) == ["cups.service"]
    half = Container("aaaaaaaaaaaaaaaa", name="x", project="shop")  # a project without a service is no pair
    assert unit_names(li(forward=Forward("docker-proxy", container=half))) == ["x", "aaaaaaaaaaaa"]
    assert unit_names(li()) == []


def test_a_rule_that_names_no_owner_matches_a_listener_without_owners():
    assert Rule("mute", ports=(8000, 8000)).matches(li(owners=()), NOW)
    assert not Rule("mute", program="node").matches(li(owners=()), NOW)


def test_program_glob_is_on_the_name_or_with_a_slash_on_the_exe():
    assert Rule("mute", program="no*").matches(li(), NOW)
    assert not Rule("mute", program="python*").matches(li(), NOW)
    assert Rule("mute", program="/usr/bin/*").matches(li(), NOW)
    assert not Rule("mute", program="/opt/*").matches(li(), NOW)
    assert Rule("mute", program="C:\\node.exe").matches(li(owners=(owner(exe="C:\\node.exe"),)), NOW)
    assert not Rule("mute", program="/usr/bin/node").matches(li(owners=(owner(exe=None),)), NOW)


def test_user_must_match_an_owner():
    assert Rule("mute", user="ana").matches(li(), NOW)
    assert not Rule("mute", user="bob").matches(li(), NOW)


def test_a_pid_rule_matches_only_that_process_by_pid_and_start_time():
    assert Rule("mute", pid=7, started_at=T0).matches(li(), NOW)
    assert not Rule("mute", pid=7, started_at=T0 + timedelta(seconds=5)).matches(li(), NOW)  # a reused pid
    assert not Rule("mute", pid=8, started_at=T0).matches(li(), NOW)


def test_any_owner_may_match():
    two = li(owners=(owner(pid=1, name="a", exe="/a"), owner(pid=2, name="b", exe="/b")))
    assert Rule("mute", program="b").matches(two, NOW)


# ------------------------------------------------------------------ describe


def test_describe_names_every_field_set():
    rule = Rule("mute", program="node", ports=(3000, 3010), exposures=(Exposure.LOOPBACK, Exposure.PUBLIC),
                transport=Transport.UDP, user="ana", unit="web", pid=7, id=4)  # fmt: skip
    assert rule.describe() == "rule 4 (mute program node, ports 3000-3010, exposure loopback/public, udp, user ana, unit web, pid 7 until it exits)"


def test_describe_one_port_everything_and_config_rules():
    assert Rule("trust", ports=(22, 22)).describe() == "a config rule (trust port 22)"
    assert Rule("trust").describe() == "a config rule (trust everything)"
    assert Rule("trust", id=0).describe() == "rule 0 (trust everything)"


def test_describe_says_until_when_in_local_time():
    until = datetime(2026, 11, 26, 17, 30, tzinfo=timezone.utc)
    expected = until.astimezone().strftime("%Y-%m-%d %H:%M")
    assert Rule("mute", until=until).describe() == f"a config rule (mute until {expected})"


def test_a_rule_comes_from_config_unless_told():
    assert Rule("mute").source == "config"


# ------------------------------------------------------------------ trust over mute


def test_trust_wins_over_an_earlier_mute():
    mute, trust = Rule("mute", id=1), Rule("trust", id=2)
    assert deciding_rule((mute, trust), li(), NOW) is trust


def test_the_first_matching_rule_of_an_action_decides():
    a, b = Rule("mute", program="python", id=1), Rule("mute", id=2)
    assert deciding_rule((a, b), li(), NOW) is b
    assert deciding_rule((Rule("trust", program="python"),), li(), NOW) is None


# ------------------------------------------------------------------ program identity


def test_program_is_the_exe_then_the_name_then_unit_and_uid_then_uid():
    assert program_of(li(owners=(owner(exe=None, name="n1"), owner(pid=8, exe="/bin/x")))) == "/bin/x"
    assert program_of(li(owners=(owner(exe=None, name=None), owner(pid=8, exe=None, name="n2")))) == "n2"
    nobody = (Owner(pid=None, uid=5), Owner(pid=None, uid=3))
    assert program_of(li(owners=nobody)) == "uid:3"
    assert program_of(li(owners=nobody, unit=Unit(UnitKind.SERVICE, "cups.service"))) == "unit:service:cups.service uid:3"
    assert program_of(li(owners=(Owner(pid=None, uid=None),), unit=Unit(UnitKind.SERVICE, "a"))) == "unit:service:a uid:?"
    assert program_of(li(owners=())) == "unknown"


def test_anonymous_identities_are_a_uid_or_nothing():
    assert is_anonymous("unknown") and is_anonymous("uid:0")
    assert not is_anonymous("/usr/bin/node") and not is_anonymous("unit:service:a uid:0")


def test_random_ports_are_dynamic_or_inside_the_ephemeral_range(monkeypatch):
    monkeypatch.setattr(rules, "ephemeral_range", lambda: (32768, 40000))
    assert [is_random_port(p) for p in (32767, 32768, 40000, 40001, 49152)] == [False, True, True, False, True]
    monkeypatch.setattr(rules, "ephemeral_range", lambda: None)
    assert is_random_port(40000) is False and is_random_port(49152) is True


# ------------------------------------------------------------------ the policy


def decide(event, memory=None, **kw):
    return Policy(**kw).decide(event, memory or Memory(), NOW)


def opened(listener):
    return Event(EventKind.OPENED, NOW, listener)


def test_an_unknown_loopback_policy_is_refused_with_the_choices():
    with pytest.raises(ValueError) as err:
        Policy(loopback="sometimes")
    assert str(err.value) == "notify.loopback must be one of first-seen, always, never"


def test_closed_events_never_alert_even_when_nothing_decides():
    v = decide(Event(EventKind.CLOSED, NOW, li()))
    assert (v.alert, v.reason) == (False, "closed events never alert")


def test_a_mute_says_muted_and_a_trust_says_trusted():
    v = decide(opened(li()), rules=(Rule("mute", id=3),))
    assert (v.alert, v.reason) == (False, "muted by rule 3 (mute everything)")
    v = decide(opened(li()), rules=(Rule("trust", id=4),))
    assert (v.alert, v.reason) == (False, "trusted by rule 4 (trust everything)")


def test_an_expired_mute_no_longer_quiets():
    assert decide(opened(li()), rules=(Rule("mute", until=NOW),)).alert is True


LOOP = "127.0.0.1"


@pytest.mark.parametrize(
    "loopback, memory, owners, expected",
    [
        ("always", Memory(), None, (True, "loopback listener (notify.loopback = always)")),
        ("never", Memory(), None, (False, "loopback listener (notify.loopback = never)")),
        ("always", Memory(keys=[(li(address="127.0.0.1", owners=(Owner(pid=None, uid=0),)).key, "uid:0")]), (Owner(pid=None, uid=0),),
         (True, "loopback listener (notify.loopback = always)")),
        ("never", Memory(), (Owner(pid=None, uid=0),), (False, "loopback listener (notify.loopback = never)")),
        ("first-seen", Memory(programs=[("/usr/bin/node", Exposure.LOOPBACK, Transport.TCP, False)]), None,
         (False, "loopback, and this program has listened on loopback before")),
        ("first-seen", Memory(programs=[("/usr/bin/node", Exposure.LOOPBACK, Transport.TCP, True)]), None,
         (True, "first time this program listens, on loopback")),
        ("first-seen", Memory(), None, (True, "first time this program listens, on loopback")),
    ],
)  # fmt: skip
def test_loopback_openings_follow_notify_loopback(loopback, memory, owners, expected):
    v = decide(opened(li(address=LOOP, owners=owners)), memory, loopback=loopback)
    assert (v.alert, v.reason) == expected


def test_an_exposed_opening_by_nobody_nameable_alerts_even_where_its_uid_listened_before():
    v = decide(opened(li(owners=(Owner(pid=None, uid=0),))), Memory(keys=[]))
    assert (v.alert, v.reason) == (True, "reachable from other machines (all-interfaces), by a program nobody can name")
    nameless = li(50001, owners=(Owner(pid=None, uid=0),))
    seen = Memory(keys=[(nameless.key, "uid:0")], programs=[("uid:0", Exposure.ALL_INTERFACES, Transport.TCP, r) for r in (True, False)])
    assert decide(opened(nameless), seen).alert is True


ROOT = (Owner(pid=None, uid=0, user="root"),)
BY_ROOT = "loopback, by a program of root nobody can name"
LO = Exposure.LOOPBACK


def lo(port, owners=ROOT, transport=Transport.TCP):
    return li(port, address=LOOP, owners=owners, transport=transport)


@pytest.mark.parametrize(
    "port, memory, expected",
    [
        (50001, Memory(), (True, f"{BY_ROOT}: the first random tcp port root opens on loopback")),
        (50001, Memory(programs=[("uid:0", LO, Transport.TCP, True)]), (False, f"{BY_ROOT}; root re-opens random tcp ports on loopback")),
        (50001, Memory(keys=[(lo(50001).key, "uid:0")]), (False, f"{BY_ROOT}; root has listened on 127.0.0.1:50001 before")),
        (631, Memory(), (True, f"{BY_ROOT}: the first time root listens on 127.0.0.1:631")),
        (631, Memory(keys=[(lo(631).key, "uid:0")]), (False, f"{BY_ROOT}; root has listened on 127.0.0.1:631 before")),
        # a habit of random ports says nothing of a fixed one
        (631, Memory(programs=[("uid:0", LO, Transport.TCP, True), ("uid:0", LO, Transport.TCP, False)]),
         (True, f"{BY_ROOT}: the first time root listens on 127.0.0.1:631")),
        # fixed ports only, another transport, another exposure, another uid, another address: no habit of this one
        (50001, Memory(programs=[("uid:0", LO, Transport.TCP, False)]), (True, f"{BY_ROOT}: the first random tcp port root opens on loopback")),
        (50001, Memory(programs=[("uid:0", LO, Transport.UDP, True)]), (True, f"{BY_ROOT}: the first random tcp port root opens on loopback")),
        (50001, Memory(programs=[("uid:0", Exposure.ALL_INTERFACES, Transport.TCP, True)]), (True, f"{BY_ROOT}: the first random tcp port root opens on loopback")),
        (50001, Memory(programs=[("uid:104", LO, Transport.TCP, True)]), (True, f"{BY_ROOT}: the first random tcp port root opens on loopback")),
        (631, Memory(keys=[(li(631, address="::1").key, "uid:0"), (lo(631).key, "uid:104")]), (True, f"{BY_ROOT}: the first time root listens on 127.0.0.1:631")),
    ],
)  # fmt: skip
def test_a_nameless_loopback_opening_is_new_per_key_and_per_random_port_habit_of_its_uid(port, memory, expected):
    v = decide(opened(lo(port)), memory)
    assert (v.alert, v.reason) == expected


def test_a_nameless_owner_is_called_by_its_user_else_its_uid_else_nothing():
    v = decide(opened(lo(631, owners=(Owner(pid=None, uid=1001),))), Memory())
    assert (v.alert, v.reason) == (True, "loopback, by a program of uid 1001 nobody can name: the first time uid 1001 listens on 127.0.0.1:631")
    two = (Owner(pid=None, uid=7, user="lp"), Owner(pid=None, uid=0, user="root"))  # the identity's uid, the smallest
    assert decide(opened(lo(631, owners=two)), Memory()).reason == f"{BY_ROOT}: the first time root listens on 127.0.0.1:631"
    v = decide(opened(lo(50001, owners=(), transport=Transport.UDP)), Memory(programs=[("unknown", LO, Transport.UDP, True)]))
    assert (v.alert, v.reason) == (False, "loopback, by a program nobody can name; an owner nobody can name re-opens random udp ports on loopback")
    v = decide(opened(lo(631, owners=())), Memory())
    assert (v.alert, v.reason) == (True, "loopback, by a program nobody can name: the first time an owner nobody can name listens on 127.0.0.1:631")


def test_an_exposed_opening_seen_on_the_same_key_is_quiet():
    listener = li()
    v = decide(opened(listener), Memory(keys=[(listener.key, "/usr/bin/node")]))
    assert (v.alert, v.reason) == (False, "all-interfaces, but this program has listened on 0.0.0.0:8000 before")


def test_a_random_port_reopened_is_quiet_only_with_random_port_memory():
    seen = Memory(programs=[("/usr/bin/node", Exposure.ALL_INTERFACES, Transport.TCP, True)])
    v = decide(opened(li(50001)), seen)
    assert (v.alert, v.reason) == (False, "all-interfaces, but this program re-opens random ports at this exposure")
    assert decide(opened(li(8000)), seen).alert is True  # 8000 is no random port
    fixed = Memory(programs=[("/usr/bin/node", Exposure.ALL_INTERFACES, Transport.TCP, False)])
    assert decide(opened(li(50001)), fixed).alert is True


def test_a_new_exposed_program_alerts_with_its_exposure():
    v = decide(opened(li(address="8.8.8.8")))
    assert (v.alert, v.reason) == (True, "reachable from other machines (public)")


def changed(now, was):
    return Event(EventKind.CHANGED, NOW, now, previous=was)


def test_a_change_that_stays_on_this_machine_is_quiet():
    v = decide(changed(li(address=LOOP), li(address=LOOP, owners=(owner(pid=9, exe="/x"),))))
    assert (v.alert, v.reason) == (False, "changed, still on this machine only")
    assert decide(Event(EventKind.CHANGED, NOW, li(), previous=None)).reason == "changed, still on this machine only"


def test_becoming_more_exposed_alerts_and_says_from_what_to_what():
    v = decide(changed(li(address="8.8.8.8"), li(address="192.168.1.2")))
    assert (v.alert, v.reason) == (True, "now more exposed (local-network -> public)")


def test_becoming_dual_stack_alerts():
    v = decide(changed(li(address="::", dual_stack=True), li(address="::")))
    assert (v.alert, v.reason) == (True, "now more exposed (all-interfaces -> all-interfaces)")


def test_becoming_less_exposed_by_the_same_program_is_quiet():
    v = decide(changed(li(address="192.168.1.2"), li(address="8.8.8.8", owners=(owner(pid=9),))))
    assert (v.alert, v.reason) == (False, "changed owner within the same program")
    v = decide(changed(li(address="::"), li(address="::", dual_stack=True, owners=(owner(pid=9),))))
    assert v.alert is False


def test_learning_the_unit_is_quiet_but_a_unit_with_new_owners_is_not():
    unit = Unit(UnitKind.SERVICE, "web.service")
    v = decide(changed(li(unit=unit), li()))
    assert (v.alert, v.reason) == (False, "changed: its unit is known now")
    other = (owner(pid=9, exe="/usr/bin/python3"),)
    v = decide(changed(li(unit=unit, owners=other), li()))
    assert (v.alert, v.reason) == (True, "another program took over an exposed port (/usr/bin/node -> /usr/bin/python3)")
    losing = decide(changed(li(), li(unit=unit, owners=other)))  # a unit forgotten is no "known now"
    assert losing.reason.startswith("another program took over")


def test_a_takeover_between_two_nameless_owners_alerts():
    v = decide(changed(li(owners=(Owner(pid=None, uid=0),)), li(owners=(Owner(pid=5, uid=0),))))
    assert (v.alert, v.reason) == (True, "another program took over an exposed port (uid:0 -> uid:0)")


# ------------------------------------------------------------------ the memory a poll decides against


def test_pending_adds_what_was_noted_to_the_records_memory():
    from portbell.daemon.rules import Pending, traces

    record = Memory(keys=[(lo(9).key, "uid:5")], programs=[("uid:5", LO, Transport.UDP, False)])
    pending = Pending(record)
    assert pending.key_seen(lo(9).key, "uid:5") and pending.program_seen("uid:5", LO, Transport.UDP, random_port=False)
    assert not pending.key_seen(lo(50001).key, "uid:0") and not pending.program_seen("uid:0", LO, Transport.TCP, random_port=False)
    pending.note(Event(EventKind.CLOSED, NOW, lo(50001)))  # a closed event leaves nothing, as in the store
    assert not pending.key_seen(lo(50001).key, "uid:0")
    pending.note(opened(lo(50001)))
    assert traces(lo(50001)) == ((lo(50001).key, "uid:0"), ("uid:0", LO, Transport.TCP, True))
    assert pending.key_seen(lo(50001).key, "uid:0") and not pending.key_seen(lo(50001).key, "uid:1")
    assert pending.program_seen("uid:0", LO, Transport.TCP, random_port=True)
    assert pending.program_seen("uid:0", LO, Transport.TCP, random_port=False)  # any port, random or not
    assert not pending.program_seen("uid:0", LO, Transport.UDP, random_port=False)
    assert not pending.program_seen("uid:0", Exposure.ALL_INTERFACES, Transport.TCP, random_port=False)
    pending.note(Event(EventKind.CHANGED, NOW, lo(631), previous=lo(631, owners=(owner(),))))
    assert pending.key_seen(lo(631).key, "uid:0")
    assert not pending.program_seen("uid:0", LO, Transport.UDP, random_port=True)
    fixed = Pending(Memory())
    fixed.note(opened(lo(631)))
    assert fixed.program_seen("uid:0", LO, Transport.TCP, random_port=False)
    assert not fixed.program_seen("uid:0", LO, Transport.TCP, random_port=True)  # a fixed port is no habit of random ones


def test_the_second_nameless_random_port_decided_against_pending_is_quiet():
    from portbell.daemon.rules import Pending

    pending = Pending(Memory())
    assert decide(opened(lo(50001)), pending).alert is True
    pending.note(opened(lo(50001)))
    assert decide(opened(lo(50002)), pending).reason == f"{BY_ROOT}; root re-opens random tcp ports on loopback"
