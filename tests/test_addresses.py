import pytest

from portbell.daemon.addresses import classify, is_dual_stack
from portbell.daemon.model import Exposure

L, N, A, P = Exposure.LOOPBACK, Exposure.LOCAL_NETWORK, Exposure.ALL_INTERFACES, Exposure.PUBLIC


@pytest.mark.parametrize(
    "address, expected",
    [
        ("127.0.0.1", L),
        ("127.0.0.53", L),
        ("127.255.255.254", L),
        ("::1", L),
        ("::ffff:127.0.0.1", L),  # IPv4-mapped loopback
        ("0.0.0.0", A),
        ("::", A),
        ("::ffff:0.0.0.0", A),
        ("10.1.2.3", N),
        ("172.16.0.1", N),
        ("172.31.255.1", N),
        ("192.168.1.10", N),
        ("169.254.10.1", N),  # link-local
        ("100.64.0.1", N),  # CGNAT: not private, not global either
        ("192.0.2.2", N),  # documentation range
        ("fd00::2", N),  # ULA
        ("fe80::1", N),
        ("fe80::1%eth0", N),  # scoped link-local
        ("2001:db8::1", N),  # documentation
        ("::ffff:192.168.1.1", N),
        ("255.255.255.255", N),
        ("224.0.0.251", N),  # mDNS group: link-local multicast
        ("ff02::fb", N),
        ("239.1.2.3", N),  # administratively scoped multicast
        ("8.8.8.8", P),
        ("172.32.0.1", P),  # just outside 172.16/12
        ("2606:4700::1111", P),
        ("::ffff:8.8.8.8", P),
        ("ff0e::1", P),  # global-scope multicast
        ("not-an-address", P),  # unparseable fails toward alerting
        ("", P),
        ("1.2.3", P),
    ],
)
def test_exposure_table(address, expected):
    assert classify(address) is expected


def test_exposure_order_of_concern():
    assert [e.rank for e in (L, N, A, P)] == [0, 1, 2, 3]
    assert not L.exposed and N.exposed and A.exposed and P.exposed


@pytest.mark.parametrize(
    "address, family, v6only, expected",
    [
        ("::", 6, False, True),
        ("::", 6, True, False),
        ("::", 6, None, False),  # unknown: never guessed
        ("0.0.0.0", 4, None, False),
        ("::1", 6, False, False),  # only the wildcard serves IPv4 too
    ],
)
def test_dual_stack(address, family, v6only, expected):
    assert is_dual_stack(address, family, v6only) is expected
