"""addresses.py beyond the exposure table: multicast scope edges, which listener serves an address,
and the one parser of ports, port ranges and endpoints, with the sentence each refusal says."""

from __future__ import annotations

import ipaddress

import pytest

from portbell.daemon.addresses import (
    PORT_RULE,
    classify,
    is_dual_stack,
    parse_address,
    parse_endpoint,
    parse_port,
    parse_ports,
    serves,
)
from portbell.daemon.model import Exposure, Listener, Transport


def test_ipv6_multicast_up_to_site_scope_stays_local_and_wider_is_public():
    assert classify("ff05::2") is Exposure.LOCAL_NETWORK  # site-local: the widest scope that stays
    assert classify("ff06::2") is Exposure.PUBLIC  # one past site scope
    assert classify("ff08::2") is Exposure.PUBLIC  # organization


def test_ipv4_multicast_outside_the_local_blocks_is_public():
    assert classify("224.0.1.1") is Exposure.PUBLIC  # internetwork control (NTP): routed
    assert classify("239.255.255.250") is Exposure.LOCAL_NETWORK  # SSDP, administratively scoped


def test_parse_address_drops_the_zone_and_unwraps_ipv4_mapped():
    assert parse_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert parse_address("::ffff:10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_address("::1") == ipaddress.ip_address("::1")


def test_only_the_v6_wildcard_spellings_are_dual_stack():
    assert is_dual_stack("::0", 6, False) is True
    assert is_dual_stack("::", 4, False) is False


def _li(address: str, family: int, dual_stack: bool = False) -> Listener:
    return Listener(Transport.TCP, family, address, 8000, classify(address), dual_stack=dual_stack)


@pytest.mark.parametrize(
    "bound, family, dual, target, expected",
    [
        ("127.0.0.1", 4, False, "127.0.0.1", True),  # the same address
        ("127.0.0.1", 4, False, "127.0.0.2", False),  # another address, not a wildcard
        ("0.0.0.0", 4, False, "192.168.1.5", True),  # the v4 wildcard takes every v4 address
        ("0.0.0.0", 4, False, "::1", False),  # but no v6
        ("::", 6, False, "::1", True),  # the v6 wildcard takes v6
        ("::", 6, False, "127.0.0.1", False),  # and v4 only when dual-stack
        ("::", 6, True, "127.0.0.1", True),
        ("::1", 6, False, "::ffff:127.0.0.1", False),  # mapped loopback is v4, not ::1
    ],
)
def test_which_listener_serves_an_address(bound, family, dual, target, expected):
    assert serves(_li(bound, family, dual), target) is expected


def test_serves_falls_back_to_the_same_text_for_names():
    li = Listener(Transport.TCP, 4, "localhost", 8000, Exposure.PUBLIC)
    assert serves(li, "localhost") is True
    assert serves(li, "example") is False


@pytest.mark.parametrize("text, port", [("1", 1), ("65535", 65535), (" 8000 ", 8000), (443, 443)])
def test_parse_port_accepts_one_to_65535(text, port):
    assert parse_port(text) == port


@pytest.mark.parametrize("text", ["0", "65536", 0, 65536, "-1", "80a", "", True])
def test_parse_port_refuses_with_the_one_rule(text):
    with pytest.raises(ValueError) as err:
        parse_port(text)
    assert str(err.value) == f"{text!r} is not a port: {PORT_RULE}"


def test_the_port_rule_says_the_range_and_why_zero_is_refused():
    assert PORT_RULE == "a port is a number from 1 to 65535 (port 0 asks the kernel to pick one: nothing listens on it)"


@pytest.mark.parametrize("value, expected", [(22, (22, 22)), ("22", (22, 22)), ("8000-8100", (8000, 8100)), ("80-80", (80, 80))])
def test_parse_ports_gives_an_inclusive_range(value, expected):
    assert parse_ports(value) == expected


@pytest.mark.parametrize("value", ["8100-8000", "0-10", "1-", "-5", True, 2.5, None, "x"])
def test_parse_ports_refuses_with_one_sentence(value):
    with pytest.raises(ValueError) as err:
        parse_ports(value)
    assert str(err.value) == f'must be a port (1-65535) or a range like "8000-8100" with low <= high, not {value!r}'


@pytest.mark.parametrize(
    "text, expected",
    [
        ("8000", (None, 8000)),
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("[::1]:8000", ("::1", 8000)),
        ("localhost:3000", ("localhost", 3000)),
        (":8000", (None, 8000)),
    ],
)
def test_parse_endpoint_splits_host_and_port(text, expected):
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("http://localhost:3000/x", ("localhost", 3000)),
        ("http://example.org/", ("example.org", 80)),
        ("HTTPS://example.org", ("example.org", 443)),
        ("ws://h", ("h", 80)),
        ("wss://h", ("h", 443)),
        ("http://[::1]:9000", ("::1", 9000)),
    ],
)
def test_urls_give_their_port_or_the_schemes(text, expected):
    assert parse_endpoint(text, urls=True) == expected


def test_a_url_is_not_an_endpoint_unless_urls_are_asked_for():
    with pytest.raises(ValueError):
        parse_endpoint("http://localhost:3000")


@pytest.mark.parametrize(
    "text, urls, sentence",
    [
        ("http://:80", True, "'http://:80': the URL has no host"),
        ("ftp://h", True, "'ftp://h': give the port, e.g. ftp://h:8080"),
        ("http://h:99999", True, "'http://h:99999': Port out of range 0-65535"),
        ("[::1]8000", False, "'[::1]8000': write an IPv6 address as [ADDRESS]:PORT, e.g. [::1]:8080"),
        ("::1:8000", False, "'::1:8000': write an IPv6 address in brackets, e.g. [::1]:8000"),
    ],
)
def test_parse_endpoint_refusals_say_what_to_type(text, urls, sentence):
    with pytest.raises(ValueError) as err:
        parse_endpoint(text, urls=urls)
    assert str(err.value) == sentence


def test_parse_endpoint_refuses_port_zero():
    with pytest.raises(ValueError, match="is not a port"):
        parse_endpoint("127.0.0.1:0")


def test_with_urls_a_plain_endpoint_still_parses():
    assert parse_endpoint("127.0.0.1:8000", urls=True) == ("127.0.0.1", 8000)
    assert parse_endpoint("8000", urls=True) == (None, 8000)
