"""tray/menu.py as data: what each entry does (its Action), when it is offered, and its limits.
`as_text` (tests/test_tray.py) shows the texts; these tests hold the actions and the edges."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from portbell.daemon.addresses import classify
from portbell.daemon.model import Listener, Owner, Transport, replace
from portbell.tray import menu
from portbell.tray.menu import Action, Item, View

T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=timezone.utc)


pytestmark = pytest.mark.usefixtures("utc")  # local time is UTC here, so the texts are exact


def owner(pid=4242, name="python3", uid=1000, user="ana", exe="/usr/bin/python3", cmd=("python3",), started=T0):
    return Owner(pid=pid, uid=uid, name=name, started_at=started, exe=exe, cmdline=cmd, user=user, start=pid * 10 if pid is not None else None)


def li(port=8000, address="0.0.0.0", owners=None, transport=Transport.TCP):
    owners = (owner(),) if owners is None else owners
    return Listener(transport, 6 if ":" in address else 4, address, port, classify(address), owners=owners)


def view(*listeners, **kw):
    kw.setdefault("uid", 1000)
    kw.setdefault("autostart", False)
    return View(listeners=menu.order(listeners), **kw)


def entry(items, text) -> Item:
    return next(it for it in items if it.text == text)


def sub(item, text) -> Item:
    return entry(item.submenu, text)


# ------------------------------------------------------------------ the top level


def test_every_top_level_entry_does_what_it_says():
    items = menu.build(view(li(), unseen=2, daemon="stopped"), T0)
    assert entry(items, "2 new alerts: mark as seen").action == Action("seen")
    assert entry(items, "The daemon is not running: start it").action == Action("start-daemon")
    pause = entry(items, "Pause notifications")
    assert [(it.text, it.action) for it in pause.submenu] == [
        ("For 1 hour", Action("pause", ("1h",))),
        ("Until tomorrow", Action("pause", ("tomorrow",))),
        ("Resume now", Action("resume")),
    ]
    assert entry(items, "Show recent events").action == Action("events")
    assert entry(items, "Open settings").action == Action("settings")
    assert entry(items, "Quit").action == Action("quit")


def test_start_at_login_toggles_to_the_other_state():
    off = entry(menu.build(view(autostart=False), T0), "Start at login")
    on = entry(menu.build(view(autostart=True), T0), "Start at login")
    assert (off.action, off.checked, off.enabled) == (Action("autostart", (True,)), False, True)
    assert (on.action, on.checked) == (Action("autostart", (False,)), True)


def test_only_mark_as_seen_is_the_default_item():
    def defaults(items):
        for it in items:
            yield from ([it.text] if it.default else [])
            yield from defaults(it.submenu)

    assert list(defaults(menu.build(view(li()), T0))) == []
    assert list(defaults(menu.build(view(li(), unseen=1), T0))) == ["1 new alert: mark as seen"]


def test_notifications_are_no_longer_paused_at_the_instant_the_pause_ends():
    v = view(paused_until=T0)
    assert v.paused(T0 - timedelta(seconds=1)) is True
    assert v.paused(T0) is False
    assert entry(menu.build(v, T0), "Pause notifications").submenu[-1].enabled is False


def test_the_tooltip_says_the_daemon_is_not_running_only_when_it_is_not():
    assert menu.tooltip(view(li()), T0) == "portbell: 1 exposed, 0 on this machine only"
    assert menu.tooltip(view(li(), daemon="stopped"), T0).endswith("; the daemon is not running")


def test_an_empty_section_says_nothing():
    text = [it.text for it in menu.build(view(li(address="127.0.0.1")), T0)]
    assert text[text.index(menu.EXPOSED_TITLE) + 1] == "nothing"
    assert text[text.index(menu.LOOPBACK_TITLE) + 1].startswith("8000 tcp")


def test_a_section_shows_fifteen_listeners_and_puts_the_rest_behind_more():
    items = menu.build(view(*[li(9000 + i) for i in range(15)]), T0)
    assert sum(it.text.startswith("90") for it in items) == 15
    assert not any(it.text.endswith("more...") for it in items)
    items = menu.build(view(*[li(9000 + i) for i in range(16)]), T0)
    assert sum(it.text.startswith("90") for it in items) == 15
    assert entry(items, "1 more...").action == Action("all-listeners")


# ------------------------------------------------------------------ a listener's submenu


def test_a_listeners_entries_copy_browse_trust_and_mute_it():
    x = li()
    item = menu.listener_item(x, view(x), T0)
    assert sub(item, "Copy address").action == Action("copy", ("0.0.0.0:8000",))
    assert sub(item, "Open in browser").action == Action("browse", ("http://127.0.0.1:8000/",))
    assert sub(item, "Trust python3 on port 8000").action == Action("trust", (x,))
    mute = sub(item, "Mute")
    assert [(it.text, it.action) for it in mute.submenu] == [
        ("For 1 hour", Action("mute", (x, "1h"))),
        ("For 8 hours", Action("mute", (x, "8h"))),
        ("Until the process exits", Action("mute", (x, "exit"))),
        ("Always", Action("mute", (x, "always"))),
    ]


def test_until_the_process_exits_needs_an_owner_with_a_pid_and_a_start_time():
    for owners in ((owner(started=None),), (owner(pid=None),), ()):
        x = li(owners=owners)
        texts = [it.text for it in sub(menu.listener_item(x, view(x), T0), "Mute").submenu]
        assert texts == ["For 1 hour", "For 8 hours", "Always"]


def test_a_trusted_listener_offers_neither_trust_nor_mute_and_a_muted_one_no_mute():
    x = li()
    trusted = menu.listener_item(x, view(x, marks={x.key: "trusted"}), T0)
    assert trusted.text == "8000 tcp  python3 (4242)  0.0.0.0  (trusted)"
    assert sub(trusted, "Trust python3 on port 8000").enabled is False and sub(trusted, "Mute").enabled is False
    muted = menu.listener_item(x, view(x, marks={x.key: "muted"}), T0)
    assert muted.text.endswith("  (muted)")
    assert sub(muted, "Trust python3 on port 8000").enabled is True and sub(muted, "Mute").enabled is False
    plain = menu.listener_item(x, view(x), T0)
    assert plain.text == "8000 tcp  python3 (4242)  0.0.0.0"
    assert sub(plain, "Mute").enabled is True


def test_https_ports_open_as_https():
    assert menu.browser_url(li(443)) == "https://127.0.0.1:443/"
    assert menu.browser_url(li(444)) == "http://127.0.0.1:444/"


def test_trust_names_the_program_cut_at_30_characters_or_this_listener():
    long = li(owners=(owner(name="n" * 31),))
    assert sub(menu.listener_item(long, view(long), T0), "Trust " + "n" * 27 + "... on port 8000") is not None
    nameless = li(owners=(owner(name=None),))
    assert any(it.text == "Trust this listener on port 8000" for it in menu.listener_item(nameless, view(nameless), T0).submenu)


# ------------------------------------------------------------------ details


def test_details_show_at_most_three_owners_and_count_the_rest():
    four = li(owners=tuple(owner(pid=100 + i) for i in range(4)))
    lines = menu.details(four, None, T0)
    assert sum(line.startswith("python3, pid") for line in lines) == 3
    assert lines[-1] == "and 1 more process"
    five = li(owners=tuple(owner(pid=100 + i) for i in range(5)))
    assert menu.details(five, None, T0)[-1] == "and 2 more processes"
    three = li(owners=tuple(owner(pid=100 + i) for i in range(3)))
    assert not menu.details(three, None, T0)[-1].startswith("and ")


def test_details_say_what_cannot_be_read():
    x = li(owners=(owner(exe=None, cmd=None, user=None, uid=7),))
    assert menu.details(x, T0, T0)[1:] == [
        "python3, pid 4242, user 7",
        "exe (not readable)",
        "command (not readable)",
        "listening since 09:00",
    ]


def test_a_long_exe_is_cut_at_72_characters():
    exe = "/" + "x" * 72
    line = menu.details(li(owners=(owner(exe=exe),)), None, T0)[2]
    assert line == "exe " + exe[:69] + "..."
    assert menu.details(li(owners=(owner(exe=exe[:72]),)), None, T0)[2] == "exe " + exe[:72]


# ------------------------------------------------------------------ stop


def test_the_stop_submenu_offers_every_owner_up_to_three():
    x = li(owners=(owner(pid=10, name="a"), owner(pid=11, name="b"), owner(pid=12, name="c"), owner(pid=13, name="d")))
    item = menu.stop_item(x, uid=1000)
    assert [(it.text, it.action) for it in item.submenu] == [
        ("Stop a (pid 10) now", Action("stop", (10, 100, "a"))),
        ("Stop b (pid 11) now", Action("stop", (11, 110, "b"))),
        ("Stop c (pid 12) now", Action("stop", (12, 120, "c"))),
    ]


def test_the_menu_never_offers_to_stop_pid_0():
    x = li(owners=(owner(pid=0, name="kernel"),))
    item = menu.stop_item(x, uid=1000)
    assert item.enabled is False
    assert all(it.action is None for it in item.submenu)
    assert menu.stop_refusal_static(owner(pid=0), 1000) == "never pid 0 or 1"


def test_stop_refusals_name_the_reason():
    assert menu.stop_refusal_static(owner(pid=None), 1000) == "not visible"
    no_exact_start = replace(owner(), start=None)  # a record from before exact starts: seconds only
    assert menu.stop_refusal_static(no_exact_start, 1000) == "start time unknown"
    assert menu.stop_refusal_static(owner(uid=0, user=None), 1000) == "belongs to uid 0"
    assert menu.stop_refusal_static(owner(uid=0, user="root"), 1000) == "belongs to root"
    assert menu.stop_refusal_static(owner(uid=0), None) is None  # the tray's uid unknown: the click checks
    assert menu.stop_refusal_static(owner(uid=None), 1000) is None
    label = menu.stop_item(li(owners=(owner(uid=0, user="root"),)), uid=1000).submenu[0]
    assert (label.text, label.enabled) == ("Stop python3 (pid 4242) now: belongs to root", False)


def test_stop_with_no_owner_says_no_process_is_visible():
    item = menu.stop_item(li(owners=()), uid=1000)
    assert [it.text for it in item.submenu] == ["no process is visible"] and item.enabled is False


def test_a_stop_label_cuts_the_name_at_30_characters():
    x = li(owners=(owner(name="m" * 31),))
    assert menu.stop_item(x, uid=1000).submenu[0].text == "Stop " + "m" * 27 + "... (pid 4242) now"


# ------------------------------------------------------------------ decisions and pauses


def test_mute_for_8_hours_lasts_8_hours_and_for_1_hour_1_hour():
    assert menu.rule_for(li(), "mute", "8h", T0).until == T0 + timedelta(hours=8)
    assert menu.rule_for(li(), "mute", "1h", T0).until == T0 + timedelta(hours=1)


def test_a_timed_mute_without_now_is_refused():
    with pytest.raises(ValueError, match="^a timed mute needs now$"):
        menu.rule_for(li(), "mute", "8h")


def test_the_default_choice_is_always_with_no_expiry_and_no_pid():
    rule = menu.rule_for(li(), "mute")
    assert (rule.until, rule.pid, rule.started_at, rule.action) == (None, None, None, "mute")


def test_until_exit_names_the_first_visible_process():
    x = li(owners=(owner(pid=None, name="ghost", exe=None), owner(pid=9, name="real", exe=None)))
    rule = menu.rule_for(x, "mute", "exit", T0)
    assert (rule.program, rule.pid, rule.started_at) == ("real", 9, T0)


def test_a_rule_for_a_nameless_owner_names_its_user_and_a_named_one_does_not():
    nameless = menu.rule_for(li(owners=(Owner(pid=None, uid=0, user="root"),)), "trust")
    assert (nameless.program, nameless.user) == (None, "root")
    named = menu.rule_for(li(), "trust")
    assert (named.program, named.user) == ("/usr/bin/python3", None)
    nobody = menu.rule_for(li(owners=()), "trust")
    assert (nobody.program, nobody.user, nobody.ports) == (None, None, (8000, 8000))
    assert menu.rule_for(li(owners=(Owner(pid=None, uid=0),)), "mute", "exit", T0).pid is None


def test_an_unknown_pause_is_refused_by_name():
    with pytest.raises(ValueError, match="^unknown pause 'forever'$"):
        menu.pause_until("forever", T0)


# ------------------------------------------------------------------ a calm menu under churn

T_START = T0 - timedelta(hours=1)


def test_a_new_loopback_listener_is_held_back_for_three_seconds():
    young = li(address="127.0.0.1")
    since = {young.key: T0}
    assert menu.settled([young], since, T0 + timedelta(seconds=2.9), T_START) == ((), T0 + timedelta(seconds=3))
    assert menu.settled([young], since, T0 + timedelta(seconds=3), T_START) == ((young,), None)


def test_exposed_old_unknown_and_pre_start_listeners_are_shown_at_once():
    exposed, unknown, old = li(8000), li(8001, address="127.0.0.1"), li(8002, address="127.0.0.1")
    since = {exposed.key: T0, old.key: T_START}
    assert menu.settled([exposed, unknown, old], since, T0, T_START) == ((exposed, unknown, old), None)


def test_the_next_due_is_the_earliest_held_back_listener():
    a, b = li(1, address="127.0.0.1"), li(2, address="127.0.0.1")
    since = {a.key: T0 + timedelta(seconds=1), b.key: T0}
    assert menu.settled([a, b], since, T0 + timedelta(seconds=1), T_START) == ((), T0 + timedelta(seconds=3))
    assert menu.settled([b, a], since, T0 + timedelta(seconds=1), T_START, settle_s=10) == ((), T0 + timedelta(seconds=10))


def test_a_forward_in_a_label_is_cut_at_50_characters():
    from portbell.daemon.model import Forward

    x = Listener(Transport.TCP, 4, "0.0.0.0", 8000, classify("0.0.0.0"), owners=(owner(),),
                 forward=Forward("b" * 60, "172.17.0.2", 80))  # fmt: skip
    label = menu.listener_label(x)
    forward = label.split("  ")[-1]
    assert len(forward) == 50 and forward.startswith("-> 172.17.0.2:80, by b") and forward.endswith("...")


def test_a_loopback_listener_recorded_the_instant_the_tray_started_is_in_its_first_menu():
    """It was there when the tray started (the daemon's sample and the tray's start share a clock
    tick): not news to hold back. One recorded a microsecond later is, for three seconds."""
    there, new = li(5000, address="127.0.0.1"), li(5001, address="127.0.0.1")
    since = {there.key: T_START, new.key: T_START + timedelta(microseconds=1)}
    shown, due = menu.settled(menu.order([there, new]), since, T_START, T_START)  # as the app's first view
    text = menu.as_text(menu.build(view(*shown, since=since), T_START))
    assert "5000 tcp  python3 (4242)  127.0.0.1" in text
    assert "5001 tcp" not in text
    assert due == T_START + timedelta(seconds=3, microseconds=1)
