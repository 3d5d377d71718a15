"""The syslog sink's RFC 5424 text, pure: severity, PRI, header fields, SD-PARAM escaping, the order
and presence of every structured-data parameter, and the message's sentence."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from portbell.daemon.addresses import classify
from portbell.daemon.model import Event, EventKind, Listener, Owner, Recorded, Transport
from portbell.daemon.sinks import _syslog as syslog

AT = datetime(2026, 11, 26, 9, 0, 0, 123456, tzinfo=timezone.utc)


def li(address="0.0.0.0", port=8000, owners=None, dual_stack=False):
    owners = (Owner(pid=4242, uid=1000, name="python3", user="ana"),) if owners is None else owners
    return Listener(Transport.TCP, 6 if ":" in address else 4, address, port, classify(address), dual_stack=dual_stack, owners=owners)


def rec(kind=EventKind.OPENED, listener=None, previous=None, alert=False, reason="", baseline=False, found_at_start=False):
    return Recorded(17, Event(kind, AT, listener or li(), previous), alert, reason, baseline, found_at_start)


@pytest.mark.parametrize(
    "record, severity",
    [
        (rec(alert=True, baseline=True), 4),  # an alert is a warning whatever else it is
        (rec(kind=EventKind.CLOSED, alert=True), 4),
        (rec(), 5),  # a quiet opening is a notice
        (rec(kind=EventKind.CHANGED), 5),
        (rec(kind=EventKind.CLOSED), 6),
        (rec(baseline=True), 6),
        (rec(found_at_start=True), 6),
    ],
)
def test_severity_is_warning_for_alerts_notice_for_news_info_for_the_rest(record, severity):
    assert syslog.severity(record) == severity


def test_sd_escape_backslash_quote_and_bracket_and_control_characters():
    assert syslog.sd_escape('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert syslog.sd_escape("x\ny") == "x\\\\ny"  # printable first (\n), then its backslash escaped


def test_header_fields_are_printable_ascii_without_spaces_cut_and_dashed_when_empty():
    assert syslog.header_field("ana laptop\t\x7f!~", 255) == "analaptop!~"
    assert syslog.header_field("abcdef", 3) == "abc"
    assert syslog.header_field("", 10) == "-" and syslog.header_field(None, 10) == "-"
    assert syslog.header_field("é", 10) == "-"


def test_timestamp_is_utc_with_microseconds_and_a_z():
    local = AT.astimezone(timezone(timedelta(hours=2)))
    assert syslog.timestamp(local) == "2026-11-26T09:00:00.123456Z"
    assert syslog.timestamp(AT.replace(microsecond=0)) == "2026-11-26T09:00:00.000000Z"


def test_structured_data_of_an_opening_in_order_leaving_unknowns_out():
    assert syslog.structured_data(rec(alert=True, reason='not "trusted"')) == (
        '[portbell@32473 id="17" kind="opened" at="2026-11-26T09:00:00.123456Z" transport="tcp" address="0.0.0.0"'
        ' port="8000" exposure="all-interfaces" dual_stack="0" pid="4242" name="python3" user="ana" alert="1"'
        ' reason="not \\"trusted\\""]'
    )


def test_structured_data_of_an_ownerless_quiet_dual_stack_baseline():
    sd = syslog.structured_data(rec(listener=li("::", owners=(), dual_stack=True), baseline=True, found_at_start=True))
    assert sd == (
        '[portbell@32473 id="17" kind="opened" at="2026-11-26T09:00:00.123456Z" transport="tcp" address="::" port="8000"'
        ' exposure="all-interfaces" dual_stack="1" alert="0" baseline="1" found_at_start="1"]'
    )


def test_structured_data_of_a_change_names_what_it_was():
    was = li("127.0.0.1", owners=(Owner(pid=7, uid=0, name="node"),))
    sd = syslog.structured_data(rec(kind=EventKind.CHANGED, previous=was))
    assert sd.endswith(' alert="0" previous_exposure="loopback" previous_pid="7" previous_name="node"]')
    nobody = syslog.structured_data(rec(kind=EventKind.CHANGED, previous=li("127.0.0.1", owners=())))
    assert nobody.endswith(' alert="0" previous_exposure="loopback"]')


def test_message_is_pri_version_header_sd_and_the_sentence():
    data = syslog.message(rec(alert=True, reason="not trusted"), facility=syslog.FACILITIES["local3"], host="ana laptop", procid=812)
    text = data.decode("utf-8")
    head, sd_and_msg = text.split(" [", 1)
    assert head == "<156>1 2026-11-26T09:00:00.123456Z analaptop portbell 812 opened"  # local3 = 19: 19 * 8 + 4
    assert sd_and_msg.endswith("] python3 (4242) is now listening on tcp 0.0.0.0:8000 (all-interfaces); alert: not trusted")


def test_message_pri_for_the_user_facility_and_a_closed_event():
    data = syslog.message(rec(kind=EventKind.CLOSED), facility=syslog.FACILITIES["user"], host="h", procid=1)
    assert data.startswith(b"<14>1 ") and b" h portbell 1 closed [" in data


def test_a_name_that_is_not_utf8_clean_still_makes_bytes():
    odd = li(owners=(Owner(pid=1, uid=0, name="a\udcffb"),))
    assert b"a\\udcffb" in syslog.message(rec(listener=odd), facility=1, host="h", procid=1)


def test_facilities_are_rfc_5424s_numbers():
    assert (syslog.FACILITIES["kern"], syslog.FACILITIES["user"], syslog.FACILITIES["authpriv"]) == (0, 1, 10)
    assert (syslog.FACILITIES["local0"], syslog.FACILITIES["local7"]) == (16, 23)
