from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from portbell.daemon.addresses import classify
from portbell.daemon.model import EventKind, Listener, Owner, Snapshot, Transport, snapshot_of
from portbell.daemon.snapshot import apply, diff, merge

T0 = datetime(2026, 11, 26, 9, 0, tzinfo=timezone.utc)


def listener(port=8000, address="127.0.0.1", pid=4242, name="python3", transport=Transport.TCP, **kw):
    owners = kw.pop("owners", (Owner(pid=pid, uid=1000, name=name, started_at=T0),))
    family = 6 if ":" in address else 4
    return Listener(transport, family, address, port, classify(address), owners=owners, **kw)


def snap(*listeners, at=T0):
    return snapshot_of(listeners, at)


def test_new_key_is_opened_and_gone_key_is_closed():
    a, b = listener(8000), listener(9000)
    events = diff(snap(a), snap(b, at=T0 + timedelta(seconds=1)))
    kinds = {e.key.port: e.kind for e in events}
    assert kinds == {8000: EventKind.CLOSED, 9000: EventKind.OPENED}
    closed = next(e for e in events if e.kind is EventKind.CLOSED)
    assert closed.listener == a  # a closed event carries the state it had


def test_new_owner_under_the_same_key_is_changed_with_the_previous_state():
    before, after = listener(pid=1), listener(pid=2, name="node")
    (event,) = diff(snap(before), snap(after))
    assert event.kind is EventKind.CHANGED
    assert event.previous == before and event.listener == after


def test_dual_stack_flip_is_changed():
    (event,) = diff(snap(listener(address="::")), snap(listener(address="::", dual_stack=True)))
    assert event.kind is EventKind.CHANGED


def test_descriptive_owner_attributes_are_not_a_change():
    """setproctitle rewrites the command line; the owner is the same process."""
    o1 = Owner(pid=7, uid=0, name="nginx", started_at=T0, cmdline=("nginx", "-g", "daemon off;"))
    o2 = Owner(pid=7, uid=0, name="nginx", started_at=T0, cmdline=("nginx: master process",), user="root")
    assert diff(snap(listener(owners=(o1,))), snap(listener(owners=(o2,)))) == []


def test_reused_pid_is_a_new_owner():
    o1 = Owner(pid=7, uid=0, name="x", started_at=T0)
    o2 = Owner(pid=7, uid=0, name="x", started_at=T0 + timedelta(hours=1))
    (event,) = diff(snap(listener(owners=(o1,))), snap(listener(owners=(o2,))))
    assert event.kind is EventKind.CHANGED


def test_merge_unions_owners_of_one_key():
    a = listener(owners=(Owner(pid=2, uid=0, name="w"),))
    b = listener(owners=(Owner(pid=1, uid=0, name="m"), Owner(pid=2, uid=0, name="w")))
    (merged,) = merge([a, b]).values()
    assert merged.pids == (1, 2)


def test_snapshot_json_is_versioned_and_sorted():
    doc = snap(listener(9000), listener(80)).to_dict()
    assert doc["version"] == 1 and doc["complete"] is True
    assert [li["port"] for li in doc["listeners"]] == [80, 9000]


# ---------------------------------------------------------------- property

owners = st.builds(
    Owner,
    pid=st.one_of(st.none(), st.integers(1, 50)),
    uid=st.one_of(st.none(), st.integers(0, 3)),
    name=st.sampled_from([None, "python3", "node", "nginx"]),
    started_at=st.sampled_from([None, T0, T0 + timedelta(seconds=5)]),
    cmdline=st.sampled_from([None, ("a",), ("b", "c")]),
)
addresses = st.sampled_from(["127.0.0.1", "0.0.0.0", "::", "::1", "192.168.1.2", "8.8.8.8", "fe80::1%eth0"])


@st.composite
def listeners(draw):
    address = draw(addresses)
    return Listener(
        draw(st.sampled_from(list(Transport))),
        6 if ":" in address else 4,
        address,
        draw(st.integers(0, 6)),
        classify(address),
        draw(st.booleans()) if address == "::" else False,
        tuple(draw(st.lists(owners, max_size=3))),
    )


snapshots = st.lists(listeners(), max_size=12).map(lambda ls: snapshot_of(ls, T0))


@settings(max_examples=300)
@given(snapshots, snapshots)
def test_applying_the_diff_of_a_and_b_to_a_gives_b(a: Snapshot, b: Snapshot):
    events = diff(a, b)
    assert apply(a.listeners, events) == dict(b.listeners)
    assert len({e.key for e in events}) == len(events)  # at most one event per key
    assert diff(b, b) == []
