"""Exposure from a bound address. Pure. Imports: the standard library and daemon.model.

Choices where PRODUCT.md is silent:
- An address that cannot be parsed is `public`: the most concerning class, so a
  parser gap alerts instead of hiding a listener.
- Multicast group addresses (a UDP socket bound to 224.0.0.251, ff02::fb) are
  `local-network` when their scope cannot leave the site (IPv4 224.0.0.0/24 and
  239.0.0.0/8, IPv6 scopes up to site-local) and `public` otherwise.
- 255.255.255.255 (limited broadcast) never leaves the link: `local-network`.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from .model import Exposure, Listener

_V4_LOCAL_MULTICAST = (ipaddress.ip_network("224.0.0.0/24"), ipaddress.ip_network("239.0.0.0/8"))
_V6_SITE_SCOPE = 0x5  # multicast scopes 1..5: interface, link, realm, admin, site


def parse_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an address, dropping an IPv6 zone (`fe80::1%eth0`) and unwrapping IPv4-mapped IPv6."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=4096)
def classify(address: str) -> Exposure:
    try:
        ip = parse_address(address)
    except ValueError:
        return Exposure.PUBLIC
    if ip.is_unspecified:
        return Exposure.ALL_INTERFACES
    if ip.is_loopback:
        return Exposure.LOOPBACK
    if ip.is_multicast:
        if isinstance(ip, ipaddress.IPv4Address):
            local = any(ip in net for net in _V4_LOCAL_MULTICAST)
        else:
            local = (ip.packed[1] & 0x0F) <= _V6_SITE_SCOPE
        return Exposure.LOCAL_NETWORK if local else Exposure.PUBLIC
    return Exposure.PUBLIC if ip.is_global else Exposure.LOCAL_NETWORK


def is_dual_stack(address: str, family: int, v6only: bool | None) -> bool:
    """A wildcard IPv6 socket without IPV6_V6ONLY also accepts IPv4 (mapped) traffic.

    `v6only=None` means the sampler cannot tell (psutil): then we say it is not,
    rather than guess.
    """
    return family == 6 and v6only is False and address in ("::", "::0")


def serves(li: Listener, address: str) -> bool:
    """Whether a connection to `address` on the listener's port would reach it: the same
    address, or a wildcard of that family (a dual-stack `::` also takes IPv4)."""
    try:
        target, bound = parse_address(address), parse_address(li.address)
    except ValueError:
        return li.address == address
    if bound == target:
        return True
    if not bound.is_unspecified:
        return False
    if target.version == 4:
        return li.family == 4 or li.dual_stack
    return li.family == 6


def split_endpoint(text: str) -> tuple[str | None, str]:
    """`8000` -> (None, "8000"); `127.0.0.1:8000`, `[::1]:8000`, `host:8000` -> (host, "8000").
    ValueError, with a sentence for the user, for an IPv6 address without brackets."""
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r}: write an IPv6 address as [ADDRESS]:PORT, e.g. [::1]:8080")
        return host, port_text
    if ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [{host}]:{port_text}")
        return host, port_text
    return None, text
