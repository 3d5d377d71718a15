"""words.py's newer phrases: inferred owners, units, forwards, ports without a socket, colour,
stopping the right thing, and `who`'s blocks. Exact text, as in tests/test_words.py."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from portbell.daemon import words
from portbell.daemon.addresses import classify
from portbell.daemon.model import Container, Event, EventKind, Forward, Listener, Owner, Recorded, Transport, Unit, UnitKind

T0 = datetime(2026, 11, 26, 9, 14, 5, tzinfo=timezone.utc)
CUPS = Unit(UnitKind.SERVICE, "cups.service")
WEB = Container("0123456789abcdef", name="shop-web-1")


pytestmark = pytest.mark.usefixtures("utc")  # local time is UTC here, so the texts are exact


def li(address="0.0.0.0", owners=None, **kw):
    owners = (Owner(pid=812, uid=0, name="cupsd", user="root"),) if owners is None else owners
    return Listener(Transport.TCP, 6 if ":" in address else 4, address, 631, classify(address), owners=owners, **kw)


HIDDEN = Owner(pid=None, uid=0, user="root")


def test_an_inferred_owner_says_how_it_was_learned():
    by_unit = Owner(pid=812, uid=0, name="cupsd", via="cgroup")
    by_cmd = Owner(pid=9, uid=0, name="docker-proxy", via="cmdline")
    assert words.owner_tag(by_unit) == "cupsd (812, by unit)"
    assert words.owner_tag(by_cmd) == "docker-proxy (9, by command line)"
    assert words.owner_phrase(by_unit) == "cupsd (pid 812, by unit)"
    assert words.owner_tag(Owner(pid=5, uid=0, name="x", via="other")) == "x (5)"


def test_an_unseen_owner_is_named_by_its_unit_and_how_many_it_could_be():
    assert words.owner_tag(HIDDEN, CUPS, 3) == "cups.service (root, 3 processes)"
    assert words.owner_tag(HIDDEN, CUPS, 1) == "cups.service (root)"
    assert words.owner_tag(HIDDEN, CUPS, None) == "cups.service (root)"
    assert words.owner_tag(HIDDEN, None, 3) == "? (root, 3 processes)"
    assert words.owner_phrase(HIDDEN, CUPS) == "a process of root in cups.service"
    assert words.owners_tag(li(owners=(HIDDEN,), unit=CUPS, candidates=2)) == "cups.service (root, 2 processes)"
    assert words.owners_list(li(owners=(HIDDEN, Owner(pid=7, uid=0, name="a")), unit=CUPS)) == "cups.service (root), a (7)"


def test_a_listener_without_owners_is_named_by_its_unit():
    assert words.owners_tag(li(owners=(), unit=CUPS)) == "cups.service"
    assert words.owners_list(li(owners=(), unit=CUPS)) == "cups.service"
    assert words.owners_list(li(owners=())) == "?"
    assert words.owners_phrase(li(owners=(), unit=CUPS)) == "an unknown process in cups.service"
    assert words.owners_phrase(li(owners=(HIDDEN,), unit=CUPS)) == "a process of root in cups.service"


def test_forward_phrase_says_where_the_port_goes_and_by_whom():
    assert words.forward_phrase(li()) is None
    full = li(forward=Forward("docker-proxy", "172.17.0.2", 80, container=WEB))
    assert words.forward_phrase(full) == "-> 172.17.0.2:80 (shop-web-1), by docker-proxy"
    assert words.forward_phrase(li(forward=Forward("rootlessport"))) == "-> a target it does not name, by rootlessport"
    short = li(forward=Forward("pasta", "10.0.2.100", 8080, container=Container("fedcba9876543210")))
    assert words.forward_phrase(short) == "-> 10.0.2.100:8080 (fedcba987654), by pasta"


def test_a_port_without_a_socket_names_the_engine_that_publishes_it():
    assert words.no_socket(li(forward=Forward("docker"))) == "published by Docker, no socket on this machine"
    assert words.no_socket(li(forward=Forward("podman"))) == "published by Podman, no socket on this machine"
    assert words.no_socket(li(forward=Forward("nerdctl"))) == "published by nerdctl, no socket on this machine"
    assert words.no_socket(li()) == "published by a container engine, no socket on this machine"


def test_paint_wraps_text_in_its_ansi_style_only_when_asked():
    assert [words.paint("x", s, True) for s in ("red", "yellow", "dim", "bold")] == [
        "\x1b[31mx\x1b[0m", "\x1b[33mx\x1b[0m", "\x1b[2mx\x1b[0m", "\x1b[1mx\x1b[0m",
    ]  # fmt: skip
    assert words.paint("x", "red", False) == "x"
    assert words.paint("x", None, True) == "x"
    assert words.paint("", "red", True) == ""


def test_each_exposure_has_its_colour_in_an_event_line():
    for address, code in (("8.8.8.8", "31"), ("0.0.0.0", "31"), ("192.168.1.2", "33"), ("127.0.0.1", "2")):
        line = words.event_line(Event(EventKind.OPENED, T0, li(address)), colour=True)
        assert f"\x1b[{code}m" in line, address
    assert "\x1b[" not in words.event_line(Event(EventKind.OPENED, T0, li()))


def test_a_table_styles_padded_cells_and_never_pads_the_last_one():
    text = words.table([["a", "b", ""], ["cc", "", ""]], ["H1", "H2", "H3"], [["red", None, None], [None, None, None]], True)
    assert text == "H1  H2  H3\n\x1b[31ma \x1b[0m  b\ncc"
    assert words.table([["a\nb"]], ["H"]) == "H\na\\nb"  # cells escaped
    assert words.table([["a"]], ["H"], [["red"]]) == "H\na"  # styles, but colour was not asked for


def test_the_unit_column():
    assert words.unit_column(li(unit=CUPS)) == "cups.service"
    assert words.unit_column(li(unit=CUPS, socket=False)) == "cups.service (no socket)"
    assert words.unit_column(li(socket=False)) == "(no socket)"
    assert words.unit_column(li()) == "-"


def test_stamps_are_dated_when_asked_and_today_is_known():
    assert words.stamp(T0, True) == "2026-11-26 09:14:05"
    assert words.stamp(T0, False) == "09:14:05"
    assert words.event_line(Event(EventKind.OPENED, T0, li()), dated=True).startswith("2026-11-26 09:14:05  opened")
    assert words.all_today([T0, T0.replace(hour=1)], T0) is True
    assert words.all_today([T0, T0.replace(day=25)], T0) is False


def rec(reason="", alert=False, baseline=False, found_at_start=False):
    return Recorded(1, Event(EventKind.OPENED, T0, li()), alert, reason, baseline, found_at_start)


def test_record_line_names_the_deciding_rule_and_makes_alerts_bold():
    line = words.event_line(rec().event)
    assert words.record_line(rec("trusted by rule 3 (trust port 631)")) == line + "  (trusted by rule 3)"
    assert words.record_line(rec("muted by a config rule (mute everything)")) == line + "  (muted by a config rule)"
    assert words.record_line(rec("muted by rule 3", baseline=True)) == line + "  (baseline)"
    assert words.record_line(rec("new", alert=True), colour=True) == "\x1b[1m" + words.event_line(rec().event, colour=True) + "  ! new\x1b[0m"
    assert words.record_line(rec("a\nb", alert=True)) == line + "  ! a\\nb"


def test_partial_is_said_as_two_words():
    assert words.PARTIAL == "partial view"


def test_listener_block_is_the_endpoint_then_unit_forward_and_socket():
    assert words.listener_block(li()) == ["tcp 0.0.0.0:631  all-interfaces"]
    full = li(unit=CUPS, forward=Forward("docker", container=WEB), socket=False)
    assert words.listener_block(full) == [
        "tcp 0.0.0.0:631  all-interfaces",
        "  unit     cups.service",
        "  forward  -> a target it does not name (shop-web-1), by docker",
        "  socket   published by Docker, no socket on this machine",
    ]


@pytest.mark.parametrize(
    "listener, text",
    [
        (li(forward=Forward("docker-proxy", container=WEB)), "it is the port of container shop-web-1; stop that with `docker stop shop-web-1`"),
        (li(unit=Unit(UnitKind.CONTAINER, "x", container=Container("0123456789abcdef", runtime="podman"))),
         "it is the port of container 0123456789ab; stop that with `podman stop 0123456789ab`"),
        (li(forward=Forward("docker-proxy")),
         "it is the port of a container (its name is not known here: `docker ps`); stop that with `docker stop CONTAINER`"),
        (li(forward=Forward("docker")),
         "it is the port of a container (its name is not known here: `docker ps`); stop that with `docker stop CONTAINER`"),
        (li(unit=CUPS), "it belongs to cups.service, which systemd would restart; stop that with `systemctl stop cups.service`"),
        (li(unit=Unit(UnitKind.USER_SERVICE, "pipewire.service", uid=1000)),
         "it belongs to pipewire.service (user 1000), which systemd would restart; stop that with `systemctl --user stop pipewire.service`"),
        (li(unit=Unit(UnitKind.SCOPE, "session-2.scope")), None),
        (li(forward=Forward("pasta")), None),
        (li(), None),
    ],
)  # fmt: skip
def test_stop_instead_names_what_really_stops_a_listener(listener, text):
    assert words.stop_instead(listener) == text


def test_stop_lines_list_each_visible_process_with_its_command():
    owners = (Owner(pid=812, uid=0, name="cupsd", user="root", cmdline=("cupsd", "-l")), HIDDEN, Owner(pid=9, uid=7, name="b"))
    assert words.stop_lines(li(owners=owners)) == [
        "tcp 0.0.0.0:631  all-interfaces",
        "  process  cupsd (pid 812), user root: cupsd -l",
        "  process  b (pid 9), user uid 7",
    ]


def test_owner_block_of_an_unseen_owner_in_a_unit_counts_the_candidates():
    assert words.owner_block(HIDDEN, None, li=li(owners=(HIDDEN,), unit=CUPS, candidates=3)) == [
        "  process  not visible: the socket belongs to uid 0 (root), in cups.service (3 processes of that user there, so none is guessed)"
    ]
    assert words.owner_block(HIDDEN, None, li=li(owners=(HIDDEN,), unit=CUPS, candidates=2))[0].endswith(
        "in cups.service (2 processes of that user there, so none is guessed)"
    )
    assert words.owner_block(HIDDEN, None, li=li(owners=(HIDDEN,), unit=CUPS, candidates=1)) == [
        "  process  not visible: the socket belongs to uid 0 (root), in cups.service"
    ]
    assert words.owner_block(HIDDEN, None, li=li(owners=(HIDDEN,)))[0].endswith("; no process in view holds it "
                                                                                "(a kernel socket, or a process in another PID namespace or container)")


def test_owner_block_says_how_an_inferred_owner_was_found():
    assert words.owner_block(Owner(pid=5, uid=0, name="x", via="cgroup"), None)[0] == (
        "  process  x (pid 5) (inferred: the only process of the socket's user in its unit)"
    )
    assert words.owner_block(Owner(pid=5, uid=0, name="x", via="cmdline"), None)[0] == (
        "  process  x (pid 5) (inferred: a forwarder whose command line names this address and port)"
    )
