"""The tray without a desktop: the menu as text, the icon's pixels, coalescing, escaping, the
pid-reuse guard on real processes, the tray's state file, and the app's tick against a real record."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from portbell.daemon.addresses import classify
from portbell.daemon.model import Event, EventKind, Listener, Owner, Recorded, Transport, replace
from portbell.daemon.rules import Rule
from portbell.tray import alerts, icon, menu, notify
from portbell.tray import process as guard
from portbell.tray.menu import Action, View

T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=timezone.utc)


pytestmark = pytest.mark.usefixtures("utc")  # local time is UTC here, so the texts are exact


def owner(pid=4242, name="python3", uid=1000, user="ana", exe="/usr/bin/python3.11", cmd=("python3", "-m", "http.server", "8000")):
    return Owner(pid=pid, uid=uid, name=name, started_at=T0, exe=exe, cmdline=cmd, user=user, start=777)


def li(port, address="0.0.0.0", *owners, transport=Transport.TCP, dual=False):
    return Listener(transport, 6 if ":" in address else 4, address, port, classify(address), dual, owners or (owner(),))


def view(*listeners, **kw):
    listeners = menu.order(listeners)
    kw.setdefault("since", {x.key: T0 for x in listeners})
    kw.setdefault("uid", 1000)
    kw.setdefault("autostart", False)
    return View(listeners=listeners, **kw)


# ------------------------------------------------------------------ the menu, as text


def test_the_menu_reads_as_the_issue_describes():
    v = view(
        li(8000),
        li(5432, "127.0.0.1", owner(pid=900, name="postgres", uid=999, user="postgres", exe="/usr/lib/postgresql/15/bin/postgres", cmd=("postgres",))),
        li(5353, "0.0.0.0", Owner(pid=None, uid=0, user="root"), transport=Transport.UDP),
    )
    assert menu.as_text(menu.build(v, T0)) == EXPECTED_MENU.strip("\n")


EXPECTED_MENU = """
# 2 exposed, 1 on this machine only
---
# Exposed to the network
  5353 udp  ? (root)  0.0.0.0 >
    # all interfaces: reachable from other machines unless a firewall stops them
    # process not visible (socket of root)
    # listening since 09:00
    ---
      Copy address
      Trust this listener on port 5353
      Mute >
          For 1 hour
          For 8 hours
          Always
    # Stop process >
        # Stop: process not visible
  8000 tcp  python3 (4242)  0.0.0.0 >
    # all interfaces: reachable from other machines unless a firewall stops them
    # python3, pid 4242, user ana
    # exe /usr/bin/python3.11
    # command python3 -m http.server 8000
    # listening since 09:00
    ---
      Copy address
      Open in browser
      Trust python3 on port 8000
      Mute >
          For 1 hour
          For 8 hours
          Until the process exits
          Always
      Stop process >
          Stop python3 (pid 4242) now
# This machine only
  5432 tcp  postgres (900)  127.0.0.1 >
    # loopback: on this machine only
    # postgres, pid 900, user postgres
    # exe /usr/lib/postgresql/15/bin/postgres
    # command postgres
    # listening since 09:00
    ---
      Copy address
      Open in browser
      Trust postgres on port 5432
      Mute >
          For 1 hour
          For 8 hours
          Until the process exits
          Always
    # Stop process >
        # Stop postgres (pid 900) now: belongs to postgres
---
  Pause notifications >
      For 1 hour
      Until tomorrow
    # Resume now
  Show recent events
  Open settings
  [ ] Start at login
---
  Quit
"""


def test_unseen_alerts_pause_partial_view_and_a_stopped_daemon_show_at_the_top():
    v = view(li(8000), unseen=3, paused_until=T0 + timedelta(hours=1), complete=False, daemon="stopped", autostart=True)
    top = menu.as_text(menu.build(v, T0)).split("\n---\n")[0]
    assert top == "\n".join([
        "# 1 exposed, 0 on this machine only",
        "* 3 new alerts: mark as seen",
        "  The daemon is not running: start it",
        "# Notifications paused until 10:00",
        "# Partial view: other users' processes are hidden; run as root, or the system-wide daemon (packaging/README.md)",
    ])
    as_root = menu.as_text(menu.build(replace(v, uid=0), T0))
    assert "# Partial view: some sockets show no process even to root (containers, other namespaces)" in as_root and "run as root" not in as_root
    text = menu.as_text(menu.build(v, T0))
    assert "      Resume now" in text and "  [x] Start at login" in text
    assert menu.tooltip(v, T0) == "portbell: 1 exposed, 0 on this machine only; 3 new alerts; notifications paused until 10:00; the daemon is not running"


def test_a_long_section_ends_in_n_more():
    v = view(*[li(9000 + i) for i in range(20)], *[li(3000 + i, "127.0.0.1") for i in range(3)])
    items = menu.build(v, T0)
    top = [it.text for it in items]
    exposed = top[top.index(menu.EXPOSED_TITLE) + 1 : top.index(menu.LOOPBACK_TITLE)]
    assert len(exposed) == menu.MAX_PER_SECTION + 1
    assert exposed[-1] == "5 more..."
    assert next(it for it in items if it.text == "5 more...").action == Action("all-listeners")
    assert exposed[0].startswith("9000 tcp") and exposed[-2].startswith("9014 tcp")


def test_without_a_record_the_menu_waits_and_has_no_sections():
    items = menu.build(View(record=False), T0)
    text = menu.as_text(items)
    assert text.startswith("# Waiting for the daemon's first sample")
    assert menu.EXPOSED_TITLE not in text and "Quit" in text
    assert "Start at login (not available here)" in text  # autostart None: the item is disabled


def test_icon_state_and_summary_follow_the_listeners():
    assert menu.icon_state(view(li(1, "127.0.0.1"))) == ("loopback", 0)
    assert menu.icon_state(view(li(1, "127.0.0.1"), li(2))) == ("exposed", 0)
    assert menu.icon_state(view(li(2), unseen=4)) == ("alert", 4)
    assert menu.summary(view(*[li(i) for i in range(3)], *[li(100 + i, "::1") for i in range(14)])) == "3 exposed, 14 on this machine only"
    assert menu.summary(view()) == "Nothing listens"


def test_the_menu_only_changes_when_its_content_does():
    v = view(li(8000), li(22))
    assert menu.build(v, T0) == menu.build(view(li(22), li(8000)), T0 + timedelta(minutes=5))
    assert menu.build(v, T0) != menu.build(view(li(8000), li(22), unseen=1), T0)


def test_stop_is_offered_only_for_own_processes_with_a_known_start():
    cases = {
        "mine": (owner(), True),
        "pid 1": (owner(pid=1, name="systemd"), False),
        "other user": (owner(uid=0, user="root"), False),
        "no start time": (Owner(pid=77, uid=1000, name="x"), False),
        "whole seconds only, no exact start": (Owner(pid=78, uid=1000, name="x", started_at=T0), False),
    }
    for what, (o, offered) in cases.items():
        item = menu.stop_item(li(8000, "0.0.0.0", o), uid=1000)
        assert item.enabled is offered, what
        if offered:
            (confirm,) = item.submenu
            assert confirm.action == Action("stop", (4242, o.start, "python3"))  # the exact start the guard compares


def test_addresses_for_the_clipboard_and_the_browser():
    assert menu.copy_text(li(8000)) == "0.0.0.0:8000"
    assert menu.copy_text(li(8000, "::1")) == "[::1]:8000"
    assert menu.browser_url(li(8000)) == "http://127.0.0.1:8000/"
    assert menu.browser_url(li(8443, "::")) == "https://[::1]:8443/"
    assert menu.browser_url(li(5000, "192.168.1.5")) == "http://192.168.1.5:5000/"
    assert menu.browser_url(li(53, transport=Transport.UDP)) is None


def test_trust_and_mute_write_rules_that_match_the_listener():
    x = li(8000)
    trust = menu.rule_for(x, "trust")
    assert (trust.program, trust.ports, trust.transport, trust.source) == ("/usr/bin/python3.11", (8000, 8000), Transport.TCP, "tray")
    assert trust.matches(x, T0) and not trust.matches(li(8001), T0)
    hour = menu.rule_for(x, "mute", "1h", T0)
    assert hour.until == T0 + timedelta(hours=1) and hour.matches(x, T0) and not hour.matches(x, T0 + timedelta(hours=2))
    until_exit = menu.rule_for(x, "mute", "exit", T0)
    assert (until_exit.pid, until_exit.started_at) == (4242, T0)
    assert menu.marks_for([x, li(9000)], (trust, Rule("mute", ports=(9000, 9000))), T0) == {x.key: "trusted", li(9000).key: "muted"}


def test_pause_until_tomorrow_means_the_next_local_midnight():
    assert menu.pause_until("1h", T0) == T0 + timedelta(hours=1)
    assert menu.pause_until("tomorrow", T0) == datetime(2026, 11, 27, tzinfo=timezone.utc)
    late = datetime(2026, 11, 26, 23, 59, tzinfo=timezone.utc)
    assert menu.pause_until("tomorrow", late) == datetime(2026, 11, 27, tzinfo=timezone.utc)


def test_markup_and_newlines_in_names_stay_text_in_the_menu():
    x = li(8000, "0.0.0.0", owner(name="<b>x</b>\n& y", cmd=("a\tb",)))
    text = menu.as_text(menu.build(view(x), T0))
    assert "8000 tcp  <b>x</b>\\n& y (4242)  0.0.0.0 >" in text  # GTK labels show text, not markup; the newline escaped
    assert "command a b" in text


# ------------------------------------------------------------------ the icon


def _pixels(img) -> dict:
    data = img.load()
    return {(x, y): data[x, y] for y in range(img.height) for x in range(img.width)}


def _contrast(a, b) -> float:
    def lum(rgb):
        c = [v / 255 for v in rgb[:3]]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    la, lb = sorted((lum(a), lum(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.mark.parametrize("size", [16, 20, 22, 24, 32, 48, 64])
@pytest.mark.parametrize("state", icon.STATES)
def test_the_icon_is_crisp_at_every_size(state, size):
    from PIL import Image

    img = icon.draw(state, 3, size)
    assert img.size == (size, size) and img.mode == "RGBA"
    px = _pixels(img)
    r = icon.corner_radius(size)
    for (x, y), (*_, a) in px.items():
        if 0 < a < 255:  # smoothing only where the corners are round: everything else is sharp
            assert min(x, size - 1 - x) < r and min(y, size - 1 - y) < r, f"half-transparent pixel at {x},{y}"
    mid = size // 2
    for x, y in ((0, mid), (size - 1, mid), (mid, 0), (mid, size - 1)):  # straight edges sit on the pixel grid
        assert px[x, y] == icon.RIM
    glyph = sum(1 for p in px.values() if p == icon.GLYPH[state])
    assert glyph >= size * size // 12, "the bell or the count must be drawn in full colour, not smeared"
    assert img != Image.new("RGBA", img.size)


@pytest.mark.parametrize("state", icon.STATES)
def test_the_icon_is_readable_on_light_and_dark_panels(state):
    """Its outline stands out on any panel (the dark rim on light ones, the fill on dark ones, 3:1 as
    WCAG asks of graphics), and the bell or the count stands out on the fill."""
    from PIL import Image

    for size in (16, 24, 32):
        img = icon.draw(state, 2, size)
        rim, r, far = icon.rim_width(size), icon.corner_radius(size), size - 1
        for panel in ((255, 255, 255), (238, 238, 236), (128, 128, 128), (48, 48, 48), (0, 0, 0)):
            shown = Image.new("RGBA", img.size, (*panel, 255))
            shown.alpha_composite(img)
            over = _pixels(shown)
            # each side, just past its round corner (the bell and the count sit in the middle)
            for edge, inside in (((0, r), (rim, r)), ((far, r), (far - rim, r)), ((r, 0), (r, rim)), ((r, far), (r, far - rim))):
                best = max(_contrast(over[edge], panel), _contrast(over[inside], panel))
                assert best >= 3, f"{state} at {size}px on {panel}: its edge does not stand out ({best:.2f}:1)"
    assert _contrast(icon.GLYPH[state], icon.FILL[state]) >= 4  # WCAG asks 3:1 of large text


def test_the_three_states_look_different_and_the_count_is_drawn():
    imgs = {s: icon.draw(s, 5, 32) for s in icon.STATES}
    assert len({img.tobytes() for img in imgs.values()}) == 3
    assert icon.draw("alert", 5, 32).tobytes() != icon.draw("alert", 6, 32).tobytes()
    assert icon.count_text(12) == "9+" and icon.count_text(7) == "7"
    with pytest.raises(ValueError):
        icon.draw("calm")


# ------------------------------------------------------------------ notifications


def rec(id_, port, name="python3", address="0.0.0.0", alert=True, kind=EventKind.OPENED, pid=None, cmd=None, start=777):
    o = Owner(pid=pid or 4000 + id_, uid=1000, name=name, started_at=T0, cmdline=cmd, start=start)
    return Recorded(id_, Event(kind, T0, li(port, address, o)), alert, "test")


def test_alerts_within_the_coalescing_window_become_one_notification():
    b = alerts.Batcher(coalesce_s=2, cooldown_s=300)
    b.add([rec(1, 3000, "node"), rec(2, 3001, "node")], now=100.0)
    assert b.due(101.0) is None
    b.add([rec(3, 3002, "node"), rec(4, 8000, "python3"), rec(5, 8001, "python3")], now=101.5)
    n = b.due(102.0)
    assert n.body.splitlines()[0] == "5 new listeners: node x3, python3 x2"
    assert n.title == "5 new listeners, 5 exposed"
    assert b.due(200.0) is None


def test_a_coalesced_notification_lists_the_most_exposed_first():
    n = alerts.notice([rec(1, 3000, "dev", "127.0.0.1"), rec(2, 3001, "dev", "127.0.0.1"), rec(3, 8000, "web")])
    assert n.body.splitlines()[1].startswith("8000 tcp  web (pid 4003)  0.0.0.0")
    assert n.title == "3 new listeners, 1 exposed"


def test_thirty_listeners_at_once_are_one_notification():
    b = alerts.Batcher(coalesce_s=2, cooldown_s=300)
    b.add([rec(i, 20000 + i, "burst") for i in range(30)], now=0.0)
    n = b.due(2.0)
    assert n.title.startswith("30 new listeners") and "burst x30" in n.body
    assert n.body.splitlines()[1:] == ["20000 tcp  burst (pid 4000)  0.0.0.0  (all-interfaces)", "... and 29 more (Show recent events)"]


def test_a_key_in_cooldown_stays_quiet_and_non_alerts_never_ring():
    b = alerts.Batcher(coalesce_s=0, cooldown_s=300)
    b.add([rec(1, 8000)], now=0.0)
    assert b.due(0.0) is not None
    b.add([rec(2, 8000), rec(3, 9000, alert=False), rec(4, 9001, kind=EventKind.CLOSED)], now=10.0)
    assert b.due(10.0) is None
    b.add([rec(5, 8000)], now=301.0)
    assert b.due(301.0).title == "8000 python3: exposed"


def test_a_process_named_a_poll_later_makes_one_notification_that_names_it():
    nameless = Recorded(1, Event(EventKind.OPENED, T0, li(8000, "0.0.0.0", Owner(pid=None, uid=1000, user="ana"))), True, "new")
    named = li(8000, "0.0.0.0", owner(pid=77, name="node", cmd=("node", "app.js")))
    changed = Recorded(2, Event(EventKind.CHANGED, T0, named, nameless.event.listener), True, "another program")
    b = alerts.Batcher(coalesce_s=2, cooldown_s=300)
    b.add([nameless], now=0.0)
    b.add([changed], now=0.5)
    n = b.due(2.0)
    assert n.title == "8000 node: exposed"
    assert n.body.startswith("node (pid 77) is now listening on 0.0.0.0:8000")
    # after the cooldown started: the same program stays quiet, another program on the key is news
    b.add([Recorded(3, Event(EventKind.OPENED, T0, named), True, "again")], now=10.0)
    assert b.due(20.0) is None
    b.add([Recorded(4, Event(EventKind.CHANGED, T0, li(8000, "0.0.0.0", owner(pid=90, name="nginx", exe="/usr/sbin/nginx")), named), True, "x")], now=30.0)
    assert b.due(40.0).title == "8000 nginx: new owner"


def test_nothing_is_queued_while_paused():
    b = alerts.Batcher(coalesce_s=0, cooldown_s=0)
    assert b.add([rec(1, 8000)], now=0.0, paused=True) == 0
    assert b.due(5.0) is None


def test_one_notification_names_program_pid_address_and_exposure():
    n = alerts.notice([rec(1, 8000, pid=4242, cmd=("python3", "app.py"))])
    assert n.title == "8000 python3: exposed" and n.listener is not None
    assert n.body == "python3 (pid 4242) is now listening on 0.0.0.0:8000 (tcp), reachable from other machines.\npython3 app.py"
    assert n.exposed


def test_the_title_leads_with_port_and_program_in_40_characters_and_the_body_has_3_lines():
    script = ("python3", "-c", "import socket\nsocket.create_server(('0.0.0.0', 8000))\ninput()\n" + "x = 1\n" * 40)
    n = alerts.notice([rec(1, 8000, name="a-very-long-program-name-indeed", cmd=script)])
    assert n.title == "8000 a-very-long-...: exposed"
    lines = n.body.splitlines()
    assert len(lines) == 2 and lines[1] == "python3 -c import socket ..."
    quiet = alerts.notice([rec(1, 5432, name="postgres", address="127.0.0.1")])
    assert quiet.title == "5432 postgres: new listener" and not quiet.exposed
    moved = Recorded(2, Event(EventKind.CHANGED, T0, li(8000, "0.0.0.0"), li(8000, "127.0.0.1")), True, "x")
    assert alerts.notice([moved]).title == "8000 python3: now exposed"
    for n in (alerts.notice([rec(i, 8000 + i) for i in range(k)]) for k in (2, 3, 99)):
        assert len(n.title) <= 40 and len(n.body.splitlines()) <= 3 and n.listener is None


def test_process_text_never_reaches_the_summary_and_the_body_is_escaped():
    n = alerts.notice([rec(1, 8000, name="<b>x</b> & y")])
    assert "<" not in n.title and "&" not in n.title and n.title.startswith("8000 bx/b y")
    body = notify.escape_body(n.body)
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in body and "<b>" not in body
    many = alerts.notice([rec(1, 8000, name="<i>a</i>"), rec(2, 8001, name="<i>a</i>")])
    assert "<" not in many.title


class _Broken:
    def __init__(self):
        self.calls = 0

    def notify(self, **kw):
        self.calls += 1
        raise RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown: no notification service")


def test_no_notification_service_is_logged_once_and_nothing_breaks(caplog):
    n = notify.Notifier()
    n._impl = _Broken()
    with caplog.at_level("WARNING", logger="portbell.tray"):
        assert n.send("t", "b") is False
        assert n.send("t", "b") is False
    assert n._impl.calls == 2
    assert len([r for r in caplog.records if "cannot show notifications" in r.message]) == 1


# ------------------------------------------------------------------ the pid-reuse guard


def test_the_guard_refuses_a_reused_pid_init_other_users_and_the_dead():
    live = guard.Live(pid=500, start=123456, uid=1000, name="python3")
    ok = dict(my_uid=1000, my_pid=1)
    assert guard.refusal(500, 123456, live, **ok) is None
    reused = guard.Live(pid=500, start=123456 + 360000, uid=1000, name="bash")
    assert "another process (bash)" in guard.refusal(500, 123456, reused, **ok)
    within_a_tick = guard.Live(pid=500, start=123457, uid=1000, name="bash")  # 10 ms later: another process
    assert "another process (bash)" in guard.refusal(500, 123456, within_a_tick, **ok)
    assert "kernel or the init system" in guard.refusal(1, 123456, live, my_uid=1000, my_pid=99)
    assert "kernel or the init system" in guard.refusal(0, 123456, live, my_uid=1000, my_pid=99)
    assert "already exited" in guard.refusal(500, 123456, None, **ok)
    assert "start time is unknown" in guard.refusal(500, None, live, **ok)
    other = guard.Live(pid=500, start=123456, uid=0, name="sshd", user="root")
    assert "belongs to root" in guard.refusal(500, 123456, other, **ok)
    assert "the tray itself" in guard.refusal(500, 123456, live, my_uid=1000, my_pid=500)
    win = guard.Live(pid=500, start=1700000000.25, uid=None, user="HOST\\ana")
    assert guard.refusal(500, 1700000000.25, win, my_uid=None, my_pid=1, my_user="ana") is None
    assert guard.refusal(500, 1700000000.25, win, my_uid=None, my_pid=1, my_user="bob") is not None
    assert guard.refusal(500, 1700000000.5, win, my_uid=None, my_pid=1, my_user="ana") is not None  # exact, not within 1.5 s


def _sleeper():
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def test_stop_process_never_signals_a_process_whose_start_time_differs():
    from portbell.daemon.process import start_of
    from portbell.tray.process import stop_process

    child = _sleeper()
    try:
        start = start_of(child.pid)
        assert start is not None
        title, why = stop_process(child.pid, start - 1, "python3")  # one tick apart: as if the pid were reused at once
        assert title == "Not stopped" and "another process" in why
        assert child.poll() is None
        title, why = stop_process(child.pid, start, "python3")  # as the sampler recorded it
        assert title == "Stopping python3" and "SIGTERM" in why
        assert child.wait(10) == -signal.SIGTERM
        assert stop_process(child.pid, start, "python3")[0] == "Not stopped"  # gone (reaped): nothing to signal
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()


def test_stop_process_refuses_pid_1_and_itself():
    from portbell.daemon.process import start_of
    from portbell.tray.process import stop_process

    assert "init" in stop_process(1, 1, "init")[1]
    assert "tray itself" in stop_process(os.getpid(), start_of(os.getpid()), "python")[1]


# ------------------------------------------------------------------ the tray's own state


def test_the_tray_state_file_is_private_and_survives_garbage(tmp_path):
    from portbell.tray.state import TrayState

    path = tmp_path / "state" / "tray.json"
    TrayState(notified_id=7, seen_id=5, paused_until=T0).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TrayState.load(path) == TrayState(7, 5, T0)
    path.write_text("{not json")
    assert TrayState.load(path) == TrayState()
    path.write_text(json.dumps({"version": 1, "notified_id": "7"}))
    assert TrayState.load(path) == TrayState()


def test_menu_rows_name_the_unit_of_a_hidden_owner_mark_inferred_owners_and_show_the_forward():
    from portbell.daemon.model import Container, Forward, Unit, UnitKind

    hidden = Owner(pid=None, uid=0, name=None, started_at=None, exe=None, cmdline=(), user="root")
    cups = replace(li(631, "0.0.0.0", hidden), unit=Unit(UnitKind.SERVICE, "cups.service"))
    inferred = replace(li(632, "0.0.0.0", replace(owner(pid=812, name="cupsd"), via="cgroup")), unit=Unit(UnitKind.SERVICE, "cups.service"))
    web = Container("f" * 64, "docker", name="shop-web-1", image="nginx:1.25")
    proxy = replace(li(8080, "0.0.0.0", owner(pid=900, name="docker-proxy")), forward=Forward("docker-proxy", "172.17.0.2", 80, web))
    assert menu.listener_label(cups) == "631 tcp  cups.service (root)  0.0.0.0"
    assert menu.listener_label(inferred) == "632 tcp  cupsd (812, by unit)  0.0.0.0"
    assert menu.listener_label(proxy) == "8080 tcp  docker-proxy (900)  0.0.0.0  -> 172.17.0.2:80 (shop-web-1), by docker-proxy"
    lines = menu.details(inferred, None, T0)
    assert "unit cups.service" in lines and "cupsd, pid 812, by unit, user ana" in lines
    assert "forwards -> 172.17.0.2:80 (shop-web-1), by docker-proxy" in menu.details(proxy, None, T0)


# ------------------------------------------------------------------ notifications at their seams


class FakeBus:
    """tray/_dbus.DbusNotifications at its seam: what Notify was asked, and the capabilities."""

    def __init__(self, caps=("actions", "body-markup")):
        self.capabilities = frozenset(caps)
        self.calls = []

    actions = property(lambda self: "actions" in self.capabilities)
    markup = property(lambda self: "body-markup" in self.capabilities)

    def notify(self, title, body, **kw):
        self.calls.append((title, body, kw))
        return 7

    def close(self):
        pass


def test_a_notification_with_buttons_hands_the_clicked_buttons_action_to_the_app():
    clicked = []
    n = notify.Notifier(icon="/x/portbell-64.png", on_action=clicked.append, platform="linux")
    n._dbus = FakeBus()
    note = alerts.notice([rec(1, 8000, pid=4242, cmd=("python3", "app.py"))])
    assert n.send(note.title, "<b>", urgency="critical", buttons=alerts.buttons(note, 1000))
    (title, body, kw) = n._dbus.calls[0]
    assert body == "&lt;b&gt;" and kw["urgency"] == "critical" and kw["icon"] == "/x/portbell-64.png"
    assert kw["actions"] == [("default", "Details"), ("trust", "Trust"), ("mute-1h", "Mute 1 h"), ("stop", "Stop")]
    n._clicked(7, "mute-1h")
    n._clicked(8, "mute-1h")  # another program's notification
    n._clicked(7, "nonsense")
    assert clicked == [Action("mute", (note.listener, "1h"))]
    n._clicked(7, "stop")
    assert clicked[-1] == Action("ask-stop", (4242, 777, "python3"))  # the exact start the guard compares


def test_no_buttons_where_the_server_has_no_actions_and_no_escaping_without_markup():
    n = notify.Notifier(icon="", platform="linux")
    n._dbus = FakeBus(caps=("body",))
    note = alerts.notice([rec(1, 8000)])
    n.send(note.title, "a < b", buttons=alerts.buttons(note, 1000))
    (_, body, kw) = n._dbus.calls[0]
    assert kw["actions"] == [] and body == "a < b"


def test_stop_is_offered_only_where_the_menu_would_offer_it():
    mine = alerts.notice([rec(1, 8000, pid=4242)])
    assert [k for k, _, _ in alerts.buttons(mine, 1000)] == ["default", "trust", "mute-1h", "stop"]
    assert [k for k, _, _ in alerts.buttons(mine, 0)] == ["default", "trust", "mute-1h"]  # another user's process
    burst = alerts.notice([rec(1, 8000), rec(2, 8001)])
    assert [k for k, _, _ in alerts.buttons(burst, 1000)] == ["default"]


def test_on_macos_osascript_shows_it_with_the_texts_as_arguments(monkeypatch):
    ran = []
    monkeypatch.setattr(notify.subprocess, "run", lambda argv, **kw: ran.append(argv))
    n = notify.Notifier(icon="", platform="darwin")
    assert n.send('8000 "x": open', "it's <here>\nsecond") and n.via == "osascript"
    (argv,) = ran
    assert argv[0] == "osascript" and argv[-2:] == ['8000 "x": open', "it's <here>\nsecond"]
    assert "display notification (item 2 of argv) with title (item 1 of argv)" in argv


def test_without_a_dbus_service_linux_falls_back_to_plyer(monkeypatch):
    shown = []

    class Plyer:
        def notify(self, **kw):
            shown.append(kw)

    n = notify.Notifier(icon="", platform="linux")
    monkeypatch.setattr(n, "dbus", lambda: None)
    monkeypatch.setattr(n, "_plyer", lambda: Plyer())
    assert n.send("t", "<b>", timeout_s=8) and n.via == "plyer" and shown[0]["message"] == "&lt;b&gt;"
