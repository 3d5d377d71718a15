"""The value classes (daemon/model/_valueclass.py): what dataclasses gave the model, kept true."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from portbell.daemon.model import Key, Owner, Transport, field, replace, value


@value
class Point:
    x: int
    y: int = 0
    label: str | None = field(None, compare=False)
    tags: list = field(factory=list, compare=False)


@value(mutable=True)
class Counter:
    n: int = 0
    seen: dict = field(factory=dict)


@value(order=True)
class Version:
    major: int
    minor: int = 0


def test_fields_are_the_annotations_in_order_positional_or_by_keyword():
    assert Point._fields == ("x", "y", "label", "tags")
    p = Point(1, 2, "a")
    assert (p.x, p.y, p.label, p.tags) == (1, 2, "a", [])
    assert Point(y=5, x=1) == Point(1, 5)
    with pytest.raises(TypeError):
        Point()
    with pytest.raises(TypeError):
        Point(1, nope=2)


def test_equality_and_hash_ignore_the_descriptive_fields_only():
    assert Point(1, 2, "a") == Point(1, 2, "b") and hash(Point(1, 2, "a")) == hash(Point(1, 2, "b"))
    assert Point(1, 2) != Point(1, 3)
    assert len({Point(1, 2, "a"), Point(1, 2, "b"), Point(2, 2)}) == 2
    assert Point(1, 2) != (1, 2)  # another class is never equal, whatever its fields
    started = datetime(2026, 1, 1, tzinfo=timezone.utc)
    a = Owner(10, 1000, "node", started, exe="/usr/bin/node", cmdline=("node", "a.js"), via="fd")
    assert a == Owner(10, 1000, "node", started, exe="/other", cmdline=("node", "b.js"), via="cgroup")
    assert a != Owner(10, 1000, "node", started.replace(second=1))


def test_a_factory_gives_each_instance_its_own_default():
    one, two = Point(1), Point(1)
    one.tags.append("x")
    assert two.tags == []
    c, d = Counter(), Counter()
    c.seen["k"] = 1
    assert d.seen == {}


def test_frozen_values_refuse_assignment_and_have_no_dict():
    p = Point(1)
    with pytest.raises(AttributeError):
        p.x = 2
    with pytest.raises(AttributeError):
        del p.x
    with pytest.raises(AttributeError):
        p.other = 1
    assert not hasattr(p, "__dict__")


def test_mutable_values_take_assignment_and_are_not_hashable():
    c = Counter()
    c.n += 1
    assert c == Counter(1)
    with pytest.raises(TypeError):
        hash(c)
    with pytest.raises(AttributeError):
        c.other = 1  # slotted all the same


def test_order_compares_the_fields_as_a_tuple():
    assert Version(1, 2) < Version(1, 10) <= Version(1, 10) < Version(2)
    assert sorted([Version(2), Version(1, 5), Version(1)]) == [Version(1), Version(1, 5), Version(2)]
    assert sorted([Key(Transport.UDP, "::", 53), Key(Transport.TCP, "127.0.0.1", 53)])[0].transport is Transport.TCP
    with pytest.raises(TypeError):
        Version(1) < (1, 0)


def test_replace_copies_with_changes():
    p = Point(1, 2, "a")
    q = replace(p, y=3)
    assert (q.x, q.y, q.label) == (1, 3, "a") and (p.y) == 2
    with pytest.raises(TypeError):
        replace(p, nope=1)


def test_repr_names_every_field():
    assert repr(Point(1, 2, "a")) == "Point(x=1, y=2, label='a', tags=[])"


def test_a_required_field_after_an_optional_one_is_refused_at_definition():
    with pytest.raises(TypeError, match="without a default"):

        @value
        class Bad:
            a: int = 0
            b: int
