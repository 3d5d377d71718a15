"""The osquery `listening_ports` rows, pure: a row per visible process, osquery's values for what
portbell does not keep, and the differential actions of opened, closed and changed."""

from __future__ import annotations

import socket
from datetime import datetime, timezone

from portbell.daemon.addresses import classify
from portbell.daemon.model import Event, EventKind, Listener, Owner, Recorded, Transport
from portbell.daemon.sinks import _osquery

AT = datetime(2026, 11, 26, 9, tzinfo=timezone.utc)


def li(*pids, address="0.0.0.0", transport=Transport.TCP):
    owners = tuple(Owner(pid=p, uid=0) for p in pids)
    return Listener(transport, 6 if ":" in address else 4, address, 8000, classify(address), owners=owners)


def row(pid, family=socket.AF_INET, protocol=6, address="0.0.0.0", **extra):
    base = {"address": address, "family": str(int(family)), "fd": "-1", "path": "", "pid": str(pid), "port": "8000",
            "protocol": str(protocol), "socket": "-1", **extra}  # fmt: skip
    return dict(sorted(base.items()))


def test_a_row_per_visible_process_in_osquerys_column_order():
    rows = _osquery.rows(li(20, 10), "4026531840")
    assert rows == [row(10, net_namespace="4026531840"), row(20, net_namespace="4026531840")]
    assert list(rows[0]) == ["address", "family", "fd", "net_namespace", "path", "pid", "port", "protocol", "socket"]


def test_a_socket_nobody_visible_holds_is_pid_minus_one_and_so_is_a_hidden_co_owner():
    assert _osquery.rows(li(), None) == [row(-1)]
    assert _osquery.rows(li(None), None) == [row(-1)]
    assert _osquery.rows(li(5, None), None) == [row(5), row(-1)]


def test_family_and_protocol_are_the_os_numbers():
    (r,) = _osquery.rows(li(1, address="::", transport=Transport.UDP), None)
    assert (r["family"], r["protocol"]) == (str(int(socket.AF_INET6)), "17")


def rec(kind, listener, previous=None):
    return Recorded(1, Event(kind, AT, listener, previous), False, "")


def test_opened_adds_every_row_and_closed_removes_them():
    assert _osquery.changes(rec(EventKind.OPENED, li(1, 2)), None) == [("added", row(1)), ("added", row(2))]
    assert _osquery.changes(rec(EventKind.CLOSED, li(1, 2)), None) == [("removed", row(1)), ("removed", row(2))]


def test_changed_removes_what_went_away_then_adds_what_is_new():
    assert _osquery.changes(rec(EventKind.CHANGED, li(2, 3), li(1, 2)), None) == [("removed", row(1)), ("added", row(3))]
    assert _osquery.changes(rec(EventKind.CHANGED, li(1), li(1)), None) == []
    assert _osquery.changes(rec(EventKind.CHANGED, li(1)), None) == [("added", row(1))]


def test_net_namespace_is_the_inode_of_proc_self_ns_net():
    import os

    expected = str(os.stat("/proc/self/ns/net").st_ino) if os.path.exists("/proc/self/ns/net") else None
    assert _osquery.net_namespace() == expected
