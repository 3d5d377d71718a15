"""What a port number means: its IANA class at each boundary, its service name, its description."""

from __future__ import annotations

import pytest

from portbell.daemon import ports
from portbell.daemon.ports import DYNAMIC, REGISTERED, WELL_KNOWN, PortInfo, port_class


@pytest.mark.parametrize(
    "port, expected",
    [(0, WELL_KNOWN), (1023, WELL_KNOWN), (1024, REGISTERED), (49151, REGISTERED), (49152, DYNAMIC), (65535, DYNAMIC)],
)
def test_port_class_at_each_iana_boundary(port, expected):
    assert port_class(port) == expected


def test_port_1024_is_registered_not_well_known():
    assert port_class(1024) == "registered"


def test_the_class_names_are_the_json_words():
    assert (WELL_KNOWN, REGISTERED, DYNAMIC) == ("well-known", "registered", "dynamic")


def test_a_curated_developer_port_beats_the_services_database():
    # /etc/services may call 5000 something else; the developer list says what runs there
    assert ports.service_name(5173) == "vite dev server"
    assert ports.service_name(5000, "udp") == "dev server (flask)"


def test_a_port_nobody_names_has_no_service():
    ports.service_name.cache_clear()
    assert ports.service_name(65531) is None
    assert ports.service_name(70000) is None  # getservbyport's OverflowError is "no name", not a crash


def test_inside_the_ephemeral_range_includes_both_ends():
    inside = [PortInfo(p, DYNAMIC, None, (32768, 60999)).ephemeral for p in (32767, 32768, 60999, 61000)]
    assert inside == [False, True, True, False]


def test_ephemeral_is_unknown_when_the_os_will_not_say():
    assert PortInfo(40000, REGISTERED, None, None).ephemeral is None


def test_describe_names_the_class_bounds_service_and_range():
    text = PortInfo(8000, REGISTERED, "dev server", (32768, 60999)).describe()
    assert text == "port 8000: registered (1024-49151), usually dev server; outside this system's ephemeral range 32768-60999"
    text = PortInfo(50000, DYNAMIC, None, (32768, 60999)).describe()
    assert text == "port 50000: dynamic (49152-65535); inside this system's ephemeral range 32768-60999"
    assert PortInfo(22, WELL_KNOWN, None, None).describe() == "port 22: well-known (0-1023)"


def test_to_dict_carries_every_fact_under_its_json_name():
    assert PortInfo(50000, DYNAMIC, "x", (32768, 60999)).to_dict() == {
        "port": 50000, "class": "dynamic", "service": "x", "ephemeral": True, "ephemeral_range": [32768, 60999],
    }  # fmt: skip
    assert PortInfo(22, WELL_KNOWN, None, None).to_dict() == {
        "port": 22, "class": "well-known", "service": None, "ephemeral": None, "ephemeral_range": None,
    }  # fmt: skip


def test_info_puts_the_class_service_and_os_range_together(monkeypatch):
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1, 2))
    assert ports.info(3306) == PortInfo(3306, REGISTERED, "mysql", (1, 2))


@pytest.fixture
def services(monkeypatch):
    """The system's services database, as a fake that knows ssh on tcp/22 and tftp on udp/69 only."""
    known = {(22, "tcp"): "ssh", (69, "udp"): "tftp"}

    def getservbyport(port, proto=""):  # as the C library does, no protocol matches any
        for (number, transport), name in known.items():
            if number == port and proto in ("", transport):
                return name
        raise OSError("port/proto not found")

    monkeypatch.setattr(ports.socket, "getservbyport", getservbyport)
    ports.service_name.cache_clear()
    yield
    ports.service_name.cache_clear()


def test_a_port_off_the_developer_list_is_named_by_the_services_database(services):
    assert ports.service_name(22) == "ssh"


def test_the_service_name_is_looked_up_for_tcp_unless_told_otherwise(services):
    assert ports.service_name(69) is None
    assert ports.service_name(69, "udp") == "tftp"
    assert ports.info(69).service is None
    assert ports.info(69, "udp").service == "tftp"
