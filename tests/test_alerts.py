"""tray/alerts.py: which alerts become notifications (coalescing, cooldown, pause) and their words."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from portbell.daemon.addresses import classify
from portbell.daemon.model import Event, EventKind, Listener, Owner, Recorded, Transport
from portbell.tray.alerts import Batcher, Notice, notice

T0 = datetime(2026, 11, 26, 9, tzinfo=timezone.utc)


def li(port=8000, address="0.0.0.0", name="node", pid=7, exe=None, cmdline=None, owners=None, transport=Transport.TCP):
    if owners is None:
        owners = (Owner(pid=pid, uid=1000, name=name, exe=exe or f"/usr/bin/{name}", cmdline=cmdline),)
    return Listener(transport, 6 if ":" in address else 4, address, port, classify(address), owners=owners)


_ids = iter(range(1, 10_000))


def rec(listener, kind=EventKind.OPENED, previous=None, alert=True, baseline=False, at=T0, rid=None):
    return Recorded(rid or next(_ids), Event(kind, at, listener, previous), alert, "r", baseline=baseline)


# ------------------------------------------------------------------ the batcher


def test_alerts_wait_coalesce_s_from_the_first_and_then_come_as_one():
    b = Batcher(coalesce_s=2.0, cooldown_s=300.0)
    assert b.next_due() is None and b.due(100.0) is None
    assert b.add([rec(li(8000))], now=10.0) == 1
    assert b.add([rec(li(8001))], now=11.0) == 1
    assert b.next_due() == 12.0
    assert b.due(11.99) is None
    n = b.due(12.0)  # due at the instant, not after it
    assert [k.port for k in n.keys] == [8000, 8001]
    assert b.due(20.0) is None and b.next_due() is None


def test_only_alerts_are_queued_never_quiet_baseline_or_closed_records():
    b = Batcher()
    quiet = [rec(li(1), alert=False), rec(li(2), baseline=True), rec(li(3), kind=EventKind.CLOSED)]
    assert b.add(quiet, now=0.0) == 0
    assert b.next_due() is None


def test_nothing_is_queued_while_paused():
    b = Batcher()
    assert b.add([rec(li())], now=0.0, paused=True) == 0
    assert b.next_due() is None


def test_a_key_notified_within_the_cooldown_stays_quiet_and_after_it_rings_again():
    b = Batcher(coalesce_s=0.0, cooldown_s=300.0)
    b.add([rec(li())], now=0.0)
    assert b.due(0.0) is not None
    assert b.add([rec(li())], now=299.9) == 0
    assert b.add([rec(li())], now=300.0) == 1  # the cooldown is over at its end


def test_the_cooldown_is_per_program_another_program_on_the_key_is_news():
    b = Batcher(coalesce_s=0.0, cooldown_s=300.0)
    b.add([rec(li(name="node"))], now=0.0)
    b.due(0.0)
    assert b.add([rec(li(name="python3", pid=9))], now=1.0) == 1


def test_a_later_alert_for_a_waiting_key_replaces_it_and_stays_an_opening():
    b = Batcher()
    first = rec(li(owners=(Owner(pid=None, uid=1000),)), at=T0)
    named = rec(li(name="node"), kind=EventKind.CHANGED, previous=first.event.listener, at=T0 + timedelta(seconds=1))
    assert b.add([first], now=0.0) == 1
    assert b.add([named], now=1.0) == 1
    n = b.due(5.0)
    assert n.title == "8000 node: exposed"
    assert n.body.startswith("node (pid 7) is now listening")


def test_a_waiting_change_replaced_by_a_newer_change_stays_a_change():
    b = Batcher()
    was = li(address="127.0.0.1", name="a")
    b.add([rec(li(name="b", pid=2), kind=EventKind.CHANGED, previous=was)], now=0.0)
    b.add([rec(li(name="c", pid=3), kind=EventKind.CHANGED, previous=was)], now=0.5)
    assert b.due(5.0).title == "8000 c: now exposed"


def test_drop_forgets_what_waits():
    b = Batcher()
    b.add([rec(li())], now=0.0)
    b.drop()
    assert b.next_due() is None and b.due(100.0) is None


def test_configure_changes_both_windows():
    b = Batcher()
    b.configure(5.0, 10.0)
    assert (b.coalesce_s, b.cooldown_s) == (5.0, 10.0)
    b.add([rec(li())], now=0.0)
    assert b.due(4.9) is None and b.due(5.0) is not None
    assert b.add([rec(li())], now=14.9) == 0  # sent at 5.0: quiet for 10 seconds
    assert b.add([rec(li())], now=15.0) == 1


def test_the_cooldown_memory_is_trimmed_past_4096_keys_dropping_what_has_cooled_down():
    b = Batcher(coalesce_s=0.0, cooldown_s=10.0)
    b.sent_at = {(f"k{i}", "p"): 0.0 for i in range(4095)}
    b.add([rec(li(8000))], now=50.0)
    b.due(50.0)
    assert len(b.sent_at) == 4096  # 4096 keys are kept as they are
    b.add([rec(li(9000))], now=60.0)
    b.due(60.0)  # 4097: trimmed to what is still cooling down (8000 was sent exactly 10 s ago: cooled)
    assert set(b.sent_at) == {(li(9000).key, "/usr/bin/node")}


def test_by_default_alerts_coalesce_for_2_seconds_and_cool_down_for_5_minutes():
    b = Batcher()
    b.add([rec(li())], now=0.0)
    assert b.due(1.99) is None and b.due(2.0) is not None
    assert b.add([rec(li())], now=301.99) == 0
    assert b.add([rec(li())], now=302.0) == 1


# ------------------------------------------------------------------ the words of one alert


def test_one_new_exposed_listener():
    x = li(cmdline=("node", "server.js"))
    n = notice([rec(x)])
    assert n == Notice(
        "8000 node: exposed",
        "node (pid 7) is now listening on 0.0.0.0:8000 (tcp), reachable from other machines.\nnode server.js",
        (x.key,),
        True,
        x,
    )


def test_one_new_loopback_listener_says_nothing_of_other_machines():
    n = notice([rec(li(address="127.0.0.1"))])
    assert (n.title, n.exposed) == ("8000 node: new listener", False)
    assert n.body == "node (pid 7) is now listening on 127.0.0.1:8000 (tcp), on this machine only."


def test_a_change_of_exposure_says_now_and_before():
    n = notice([rec(li(), kind=EventKind.CHANGED, previous=li(address="127.0.0.1"))])
    assert n.title == "8000 node: now exposed"
    assert n.body == "node (pid 7) on 0.0.0.0:8000 (tcp) is now reachable from other machines; was on this machine only."
    back = notice([rec(li(address="127.0.0.1"), kind=EventKind.CHANGED, previous=li())])
    assert back.title == "8000 node: now local only"


def test_a_takeover_at_the_same_exposure_says_new_owner():
    n = notice([rec(li(name="python3"), kind=EventKind.CHANGED, previous=li())])
    assert n.title == "8000 python3: new owner"
    assert n.body == "python3 (pid 7) now listens on 0.0.0.0:8000 (tcp), reachable from other machines."


def test_the_command_line_is_one_line_of_at_most_60_characters():
    exact = notice([rec(li(cmdline=("x" * 60,)))]).body.split("\n")[1]
    assert exact == "x" * 60
    cut = notice([rec(li(cmdline=("y" * 61,)))]).body.split("\n")[1]
    assert cut == "y" * 57 + "..."


def test_the_body_names_the_unit_and_forward_and_keeps_three_lines():
    from portbell.daemon.model import Forward, Unit, UnitKind

    x = Listener(Transport.TCP, 4, "0.0.0.0", 8000, classify("0.0.0.0"), unit=Unit(UnitKind.SERVICE, "web.service"),
                 forward=Forward("docker-proxy", "172.17.0.2", 80),
                 owners=(Owner(pid=7, uid=0, name="node", cmdline=("node", "s.js")),))  # fmt: skip
    assert notice([rec(x)]).body.split("\n")[1:] == ["web.service, -> 172.17.0.2:80, by docker-proxy", "node s.js"]


def test_the_owner_named_is_the_first_visible_process_else_the_socket_owner():
    hidden_first = li(owners=(Owner(pid=None, uid=0, user="root"), Owner(pid=5, uid=0, name="sshd")))
    assert notice([rec(hidden_first)]).body.startswith("sshd (pid 5) is now")
    hidden = li(owners=(Owner(pid=None, uid=0, user="root"),))
    assert notice([rec(hidden)]).body.startswith("a process of root is now")
    assert notice([rec(li(owners=()))]).body.startswith("an unknown process is now")


# ------------------------------------------------------------------ the words of many


def test_many_alerts_are_counted_named_and_the_most_exposed_shown_first():
    records = [
        rec(li(3000, "127.0.0.1", name="node"), rid=1),
        rec(li(3001, "127.0.0.1", name="node"), rid=2),
        rec(li(8000, "8.8.8.8", name="python3"), rid=3),
        rec(li(8001, "0.0.0.0", name="python3"), rid=4),
        rec(li(9000, "127.0.0.1", owners=()), rid=5),
    ]
    n = notice(records)
    assert n.title == "5 new listeners, 2 exposed"
    assert n.body.split("\n") == [
        "5 new listeners: python3 x2, node x2, an unknown process",
        "8000 tcp  python3 (pid 7)  8.8.8.8  (public)",
        "... and 4 more (Show recent events)",
    ]
    assert n.exposed is True and n.listener is None and [k.port for k in n.keys] == [3000, 3001, 8000, 8001, 9000]


def test_two_alerts_are_both_shown_and_loopback_ones_say_no_reach():
    n = notice([rec(li(1, "127.0.0.1"), rid=1), rec(li(2, "127.0.0.1"), rid=2)])
    assert (n.title, n.exposed) == ("2 new listeners", False)
    assert n.body.split("\n")[1:] == ["1 tcp  node (pid 7)  127.0.0.1  (loopback)", "2 tcp  node (pid 7)  127.0.0.1  (loopback)"]


def test_past_four_names_the_rest_is_counted():
    records = [rec(li(1000 + i, "127.0.0.1", name=f"p{i}"), rid=i + 1) for i in range(8)]
    lines = notice(records).body.split("\n")
    assert lines == ["8 new listeners: p0, p1, p2, p3, 4 more programs", "1000 tcp  p0 (pid 7)  127.0.0.1  (loopback)",
                     "... and 7 more (Show recent events)"]  # fmt: skip
    same = notice([rec(li(1000 + i, "127.0.0.1", name="p"), rid=i + 1) for i in range(6)]).body.split("\n")
    assert same[0] == "6 new listeners: p x6"


def test_exactly_four_programs_need_no_more():
    records = [rec(li(1000 + i, "127.0.0.1", name=f"p{i}"), rid=i + 1) for i in range(4)]
    assert notice(records).body.split("\n")[0] == "4 new listeners: p0, p1, p2, p3"


# ------------------------------------------------------------------ buttons

from portbell.tray.alerts import buttons  # noqa: E402
from portbell.tray.menu import Action  # noqa: E402


def test_a_notice_about_one_listener_offers_details_trust_mute_an_hour_and_stop():
    x = Listener(Transport.TCP, 4, "0.0.0.0", 8000, classify("0.0.0.0"),
                 owners=(Owner(pid=None, uid=1000), Owner(pid=7, uid=1000, name="node", started_at=T0, start=777)))  # fmt: skip
    assert buttons(notice([rec(x)]), uid=1000) == (
        ("default", "Details", Action("events")),
        ("trust", "Trust", Action("trust", (x,))),
        ("mute-1h", "Mute 1 h", Action("mute", (x, "1h"))),
        ("stop", "Stop", Action("ask-stop", (7, 777, "node"))),  # the exact start, as the guard compares it
    )


def test_stop_is_not_offered_when_the_menu_would_not_offer_it():
    other = li()  # owned by uid 1000, no start time: refused before any click
    assert [key for key, _, _ in buttons(notice([rec(other)]), uid=1000)] == ["default", "trust", "mute-1h"]
    seconds_only = Listener(Transport.TCP, 4, "0.0.0.0", 8000, classify("0.0.0.0"), owners=(Owner(pid=7, uid=1000, name="x", started_at=T0),))
    assert [key for key, _, _ in buttons(notice([rec(seconds_only)]), uid=1000)] == ["default", "trust", "mute-1h"]  # no exact start
    theirs = Listener(Transport.TCP, 4, "0.0.0.0", 8000, classify("0.0.0.0"), owners=(Owner(pid=7, uid=0, name="x", started_at=T0, start=777),))
    assert [key for key, _, _ in buttons(notice([rec(theirs)]), uid=1000)] == ["default", "trust", "mute-1h"]
    hidden = Listener(Transport.TCP, 4, "0.0.0.0", 8000, classify("0.0.0.0"), owners=(Owner(pid=None, uid=0),))
    assert [key for key, _, _ in buttons(notice([rec(hidden)]), uid=1000)] == ["default", "trust", "mute-1h"]


def test_a_coalesced_notice_offers_only_details():
    assert buttons(notice([rec(li(1)), rec(li(2))]), uid=1000) == (("default", "Details", Action("events")),)
