"""Every phrase people read, exactly: exposure, owners, units, plurals, times, tables, event lines.

A wrong word here is wrong on every surface (the command line, the tray, notifications, syslog), so
these tests hold the exact text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from portbell.daemon import words
from portbell.daemon.addresses import classify
from portbell.daemon.model import Container, Event, EventKind, Exposure, Listener, Owner, Recorded, Transport, Unit, UnitKind

T0 = datetime(2026, 11, 26, 9, 14, 5, tzinfo=timezone.utc)


pytestmark = pytest.mark.usefixtures("utc")  # local time is UTC here, so the texts are exact


def owner(pid=4242, name="python3", uid=1000, user="ana", **kw):
    return Owner(pid=pid, uid=uid, name=name, user=user, **kw)


def li(address="0.0.0.0", port=8000, owners=None, dual_stack=False, transport=Transport.TCP, **kw):
    owners = (owner(),) if owners is None else owners
    family = 6 if ":" in address else 4
    return Listener(transport, family, address, port, classify(address), dual_stack=dual_stack, owners=owners, **kw)


# ------------------------------------------------------------------ exposure


def test_reach_says_who_can_connect_for_each_exposure():
    assert [words.REACH[e] for e in Exposure] == [
        "on this machine only", "reachable from the local network", "reachable from other machines",
        "reachable from the internet",
    ]  # fmt: skip
    assert words.reach(li("::", dual_stack=True)) == "reachable from other machines (also serves IPv4)"
    assert words.reach(li("127.0.0.1")) == "on this machine only"


def test_the_details_line_names_the_address_kind_and_the_firewall_caveat():
    assert words.exposure_details(li("0.0.0.0")) == "all interfaces: reachable from other machines unless a firewall stops them"
    assert words.exposure_details(li("::", dual_stack=True)) == (
        "all interfaces: reachable from other machines unless a firewall stops them (also serves IPv4)"
    )
    assert words.exposure_details(li("127.0.0.1")) == "loopback: on this machine only"
    assert words.exposure_details(li("192.168.1.2")) == "local-network address: reachable from the local network"
    assert words.exposure_details(li("8.8.8.8")) == "public address: reachable from the internet"


def test_dual_stack_in_a_column_in_prose_and_after_an_endpoint():
    both, plain = li("::", dual_stack=True), li("::")
    assert (words.exposure_column(both), words.exposure_column(plain)) == ("all-interfaces (+ipv4)", "all-interfaces")
    assert (words.exposure_phrase(both), words.exposure_phrase(plain)) == ("all-interfaces, also serves IPv4", "all-interfaces")
    assert (words.endpoint_phrase(both), words.endpoint_phrase(plain)) == ("[::]:8000, also serves IPv4", "[::]:8000")
    assert (words.dual(both), words.dual(plain)) == (" (also serves IPv4)", "")


# ------------------------------------------------------------------ owners


def test_user_of_prefers_the_name_then_the_uid():
    assert words.user_of(owner()) == "ana"
    assert words.user_of(owner(user=None)) == "uid 1000"
    assert words.user_of(owner(user=None, uid=0)) == "uid 0"
    assert words.user_of(owner(user=None, uid=None)) == "an unknown user"


def test_owner_tag_is_name_and_pid_or_the_user_of_an_invisible_socket():
    assert words.owner_tag(owner()) == "python3 (4242)"
    assert words.owner_tag(owner(name=None)) == "? (4242)"
    assert words.owner_tag(owner(pid=None, user="root")) == "? (root)"
    assert words.owner_tag(owner(pid=None, user=None, uid=0)) == "? (uid 0)"
    assert words.owner_tag(owner(pid=None, user=None, uid=None)) == "? (unknown)"


def test_owner_phrase_is_prose():
    assert words.owner_phrase(owner()) == "python3 (pid 4242)"
    assert words.owner_phrase(owner(name=None)) == "? (pid 4242)"
    assert words.owner_phrase(owner(pid=None, user="root")) == "a process of root"


def test_several_owners_are_the_first_and_a_count():
    two = li(owners=(owner(pid=100, name="nginx"), owner(pid=101, name="nginx")))
    three = li(owners=(owner(pid=1, name="a"), owner(pid=2), owner(pid=3)))
    assert words.owners_tag(two) == "nginx (100) +1"
    assert words.owners_tag(li()) == "python3 (4242)"
    assert words.owners_tag(li(owners=())) == "?"
    assert words.owners_phrase(three) == "a (pid 1) and 2 more"
    assert words.owners_phrase(li()) == "python3 (pid 4242)"
    assert words.owners_phrase(li(owners=())) == "an unknown process"


def test_first_name_skips_owners_without_a_name():
    assert words.first_name(li(owners=(owner(name=None), owner(pid=2, name="node")))) == "node"
    assert words.first_name(li(owners=(owner(name=None),))) is None


@pytest.mark.parametrize(
    "unit, text",
    [
        (Unit(UnitKind.SERVICE, "cups.service"), "cups.service"),
        (Unit(UnitKind.SCOPE, "init.scope"), "init.scope"),
        (Unit(UnitKind.SESSION, "session-2.scope"), "session-2.scope"),
        (Unit(UnitKind.SLICE, "user.slice"), "user.slice"),
        (Unit(UnitKind.CGROUP, "/odd/path"), "/odd/path"),
        (Unit(UnitKind.APP, "firefox"), "firefox (app)"),
        (Unit(UnitKind.USER_SERVICE, "pipewire.service", uid=1000), "pipewire.service (user 1000)"),
        (Unit(UnitKind.USER_SERVICE, "pipewire.service"), "pipewire.service (user-service)"),
        (Unit(UnitKind.CONTAINER, "x", container=Container("0123456789abcdef", name="web", image="nginx:1.25")),
         "web (container, nginx:1.25)"),
        (Unit(UnitKind.CONTAINER, "x", container=Container("0123456789abcdef")), "0123456789ab (container)"),
    ],
)  # fmt: skip
def test_unit_label(unit, text):
    assert words.unit_label(unit) == text


# ------------------------------------------------------------------ small words


def test_plural():
    assert words.plural(1, "new alert") == "1 new alert"
    assert words.plural(2, "new alert") == "2 new alerts"
    assert words.plural(0, "process", "processes") == "0 processes"
    assert words.plural(1, "process", "processes") == "1 process"


def test_join_lists_with_commas_and_a_last_word():
    assert words.join([]) == ""
    assert words.join(["a"]) == "a"
    assert words.join(["a", "b"]) == "a and b"
    assert words.join(("a", "b", "c"), "or") == "a, b or c"


def test_printable_escapes_control_characters_only():
    assert words.printable("evil\nname\t") == "evil\\nname\\t"
    assert words.printable("plain é") == "plain é"


def test_short_folds_white_space_and_cuts_with_dots_at_the_limit():
    assert words.short("a\n b\tc", 10) == "a b c"
    assert words.short("x" * 10, 10) == "x" * 10
    assert words.short("x" * 11, 10) == "xxxxxxx..."


def test_command_line_quotes_escapes_and_cuts():
    assert words.command_line(["python3", "-m", "http.server", "a b"]) == "python3 -m http.server 'a b'"
    assert words.command_line(["x", "a\nb"]) == "x 'a\\nb'"
    assert words.command_line(["y" * 10], limit=10) == "y" * 10
    assert words.command_line(["y" * 11], limit=10) == "yyyyyyy..."
    assert len(words.command_line(["z" * 400])) == 300



def test_tray_command_escapes_control_characters_and_still_cuts():
    from portbell.daemon.words import tray

    line = tray.tray_command(["evil\x1b[2J", "--x\x07", "python3 -c 'a'\nprint(1)"])
    assert "\x1b" not in line and "\x07" not in line
    assert line == "evil\\x1b[2J --x\\x07 python3 -c 'a' ..."
    assert line.isprintable()
    assert tray.tray_command(["\x1b" * 40], limit=20) == "\\x1b" * 4 + "\\..."


# ------------------------------------------------------------------ times


def test_clock_and_when_in_local_time():
    assert words.clock(T0) == "09:14:05"
    assert words.when(T0, T0 + timedelta(hours=2)) == "09:14"
    assert words.when(T0, T0 + timedelta(days=1)) == "2026-11-26 09:14"
    assert words.when(None, T0) == "?"


@pytest.mark.parametrize(
    "ago, text",
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(minutes=3, seconds=2), "3m 2s"),
        (timedelta(hours=2, minutes=7), "2h 7m"),
        (timedelta(days=3, hours=4, minutes=5), "3d 4h"),
        (timedelta(days=1), "1d 0h"),
        (timedelta(seconds=-30), "0s"),  # a clock step backwards is no negative age
    ],
)
def test_since_says_when_and_how_long_ago(ago, text):
    assert words.since(T0, T0 + ago) == f"2026-11-26 09:14:05 UTC ({text} ago)"


def test_since_unknown():
    assert words.since(None) == "unknown"


# ------------------------------------------------------------------ tables


def test_table_pads_columns_to_the_widest_cell_and_strips_line_ends():
    assert words.table([["a", "bbb"], ["cc", "d"]], ["H1", "H"]) == "H1  H\na   bbb\ncc  d"


def test_listener_row_and_table(monkeypatch):
    monkeypatch.setattr(words, "service_name", lambda port, transport: {(8000, "tcp"): "dev"}.get((port, transport)))
    two = li(owners=(owner(pid=10, name="b", user=None, uid=7), owner(pid=11, name="a", user="ana"), owner(pid=None, name=None, user=None, uid=None)))
    assert words.listener_row(two) == ["tcp", "0.0.0.0:8000", "all-interfaces", "10 +1", "a,b", "7,?,ana", "-", "dev"]
    assert words.listener_row(li(owners=(), transport=Transport.UDP, port=9)) == ["udp", "0.0.0.0:9", "all-interfaces", "-", "?", "?", "-", ""]
    assert words.listener_row(li())[3:6] == ["4242", "python3", "ana"]
    assert words.listeners_table([li()]) == (
        "PROTO  ADDRESS       EXPOSURE        PID   PROCESS  USER  UNIT  SERVICE\n"
        "tcp    0.0.0.0:8000  all-interfaces  4242  python3  ana   -     dev"
    )


# ------------------------------------------------------------------ events


def ev(kind, listener, previous=None):
    return Event(kind, T0, listener, previous)


def test_event_line_for_an_opening():
    assert words.event_line(ev(EventKind.OPENED, li())) == "09:14:05  opened   tcp 0.0.0.0:8000           all-interfaces         python3 (4242)"
    assert words.event_line(ev(EventKind.OPENED, li(owners=()))).endswith(" ?")


def test_event_line_for_a_change_says_what_it_was():
    was = li("127.0.0.1", owners=(owner(pid=1, name="node"),))
    now = li("127.0.0.1")
    assert words.event_line(ev(EventKind.CHANGED, now, was)).endswith("python3 (4242)  (was node (1))")
    wider = li("::", dual_stack=True)
    assert words.event_line(ev(EventKind.CHANGED, wider, li("::"))).endswith("(was all-interfaces)")
    both = words.event_line(ev(EventKind.CHANGED, li("0.0.0.0"), was))
    assert both.endswith("(was node (1); loopback)")
    assert words.event_line(ev(EventKind.CHANGED, li("::"), li("::", owners=()))).endswith("(was ?)")


def rec(event, alert=False, reason="", baseline=False, found_at_start=False):
    return Recorded(1, event, alert, reason, baseline=baseline, found_at_start=found_at_start)


def test_record_line_adds_the_alert_or_the_flag():
    e = ev(EventKind.OPENED, li())
    line = words.event_line(e)
    assert words.record_line(rec(e, alert=True, reason="new")) == line + "  ! new"
    assert words.record_line(rec(e, baseline=True)) == line + "  (baseline)"
    assert words.record_line(rec(e, found_at_start=True)) == line + "  (found at start)"
    assert words.record_line(rec(e)) == line


def test_event_sentence_for_each_kind():
    opened = rec(ev(EventKind.OPENED, li()), alert=True, reason="not trusted")
    assert words.event_sentence(opened) == "python3 (4242) is now listening on tcp 0.0.0.0:8000 (all-interfaces); alert: not trusted"
    closed = rec(ev(EventKind.CLOSED, li("::", dual_stack=True)), reason="closed events never alert")
    assert words.event_sentence(closed) == (
        "python3 (4242) stopped listening on tcp [::]:8000 (all-interfaces, also serves IPv4); quiet: closed events never alert"
    )
    changed = rec(ev(EventKind.CHANGED, li(), li("127.0.0.1", owners=(owner(pid=1, name="node"),))))
    assert words.event_sentence(changed) == "tcp 0.0.0.0:8000 changed: node (1) (loopback) -> python3 (4242) (all-interfaces)"
    assert words.event_sentence(rec(ev(EventKind.CHANGED, li()))) == "tcp 0.0.0.0:8000 changed: ? -> python3 (4242) (all-interfaces)"


def test_event_sentence_flags_and_escapes():
    both = rec(ev(EventKind.OPENED, li()), baseline=True, found_at_start=True)
    assert words.event_sentence(both) == "python3 (4242) is now listening on tcp 0.0.0.0:8000 (all-interfaces) [baseline, found at start]"
    one = rec(ev(EventKind.OPENED, li()), found_at_start=True)
    assert words.event_sentence(one).endswith("(all-interfaces) [found at start]")
    evil = rec(ev(EventKind.OPENED, li(owners=(owner(name="a\nb"),))))
    assert words.event_sentence(evil).startswith("a\\nb (4242) is now")


# ------------------------------------------------------------------ views


def test_partial_view_explains_for_root_and_for_a_user():
    assert words.partial_view(True) == (
        "some processes hide their descriptors even from root (a container or another user namespace); their sockets show no process."
    )
    assert words.partial_view(False) == (
        "sockets of other users show no process. To see every owner, run as root, or run the "
        "system-wide daemon (packaging/README.md), whose capabilities let it see them."
    )


def test_owner_block_of_a_visible_process():
    o = owner(exe="/usr/bin/python3", cmdline=("python3", "-m", "http.server"), ppid=1, started_at=T0)
    lines = words.owner_block(o, Owner(pid=1, uid=0, name="systemd"))
    assert lines[:4] == [
        "  process  python3 (pid 4242)",
        "  exe      /usr/bin/python3",
        "  command  python3 -m http.server",
        "  user     ana (uid 1000)",
    ]
    assert lines[4].startswith("  started  2026-11-26 09:14:05 UTC (")
    assert lines[5] == "  parent   systemd (pid 1)"
    assert words.owner_block(o, None)[5] == "  parent   pid 1"


def test_owner_block_of_what_cannot_be_read():
    bare = words.owner_block(Owner(pid=5, uid=None, name=None), None)
    assert bare[:4] == ["  process  ? (pid 5)", "  exe      (not readable)", "  command  (not readable)", "  user     ? (uid ?)"]
    assert len(bare) == 5  # no parent line without a ppid


def test_owner_block_of_an_invisible_socket_says_why():
    assert words.owner_block(Owner(pid=None, uid=113, user="postgres"), None) == [
        "  process  not visible: the socket belongs to uid 113 (postgres); no process in view holds it "
        "(a kernel socket, or a process in another PID namespace or container)"
    ]
    assert words.owner_block(Owner(pid=None, uid=None), None, complete=False) == [
        "  process  not visible: the socket belongs to an unknown user; run as that user or root to see its process"
    ]
    assert words.owner_block(Owner(pid=None, uid=7), None)[0].startswith("  process  not visible: the socket belongs to uid 7 (?);")


def test_event_line_names_every_owner_now_and_before():
    two = li(owners=(owner(pid=1, name="a"), owner(pid=2, name="b")))
    was = li(owners=(owner(pid=3, name="c"), owner(pid=4, name="d")))
    line = words.event_line(ev(EventKind.CHANGED, two, was))
    assert line.endswith("a (1), b (2)  (was c (3), d (4))")


def test_a_change_without_its_previous_state_is_one_plain_line():
    assert words.event_line(ev(EventKind.CHANGED, li())) == "09:14:05  changed  tcp 0.0.0.0:8000           all-interfaces         python3 (4242)"
