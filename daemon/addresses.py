"""Addresses and ports: exposure from a bound address, which listener serves an address, and the
one parser of what people type for an endpoint (`8000`, `127.0.0.1:8000`, `[::1]:8000`, a URL). Pure.

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


PORT_RULE = "a port is a number from 1 to 65535 (port 0 asks the kernel to pick one: nothing listens on it)"


def parse_port(text: str | int) -> int:
    """A port someone typed: 1 to 65535. Port 0 is refused everywhere (the one rule for it):
    binding to 0 asks the kernel for a free port, so no listener is ever on port 0."""
    value = text if isinstance(text, int) and not isinstance(text, bool) else None
    if value is None:
        stripped = text.strip() if isinstance(text, str) else ""
        if not stripped.isdigit():
            raise ValueError(f"{text!r} is not a port: {PORT_RULE}")
        value = int(stripped)
    if not 1 <= value <= 65535:
        raise ValueError(f"{text!r} is not a port: {PORT_RULE}")
    return value


def parse_ports(value: str | int) -> tuple[int, int]:
    """22, "22", or "8000-8100" -> an inclusive range of ports, each by parse_port's rule."""
    wrong = ValueError(f'must be a port (1-65535) or a range like "8000-8100" with low <= high, not {value!r}')
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise wrong
    try:
        if isinstance(value, str) and "-" in value:
            low_text, _, high_text = value.partition("-")
            low, high = parse_port(low_text), parse_port(high_text)
        else:
            low = high = parse_port(value)
    except ValueError:
        raise wrong from None
    if low > high:
        raise wrong
    return low, high


URL_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def parse_endpoint(text: str, *, urls: bool = False) -> tuple[str | None, int]:
    """What people type for an endpoint -> (host or None, port); ValueError with a sentence for the user.

    `8000` -> (None, 8000); `127.0.0.1:8000`, `[::1]:8000`, `host:8000` -> (host, 8000); with
    `urls`, `http://localhost:3000/x` too (the scheme's port when it has none). An IPv6 address
    must be in brackets. The host is returned as typed (a name or an address), or None."""
    raw = text.strip()
    if urls and "://" in raw:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError as err:
            raise ValueError(f"{text!r}: {err}") from None
        if not parts.hostname:
            raise ValueError(f"{text!r}: the URL has no host")
        if port is None:
            port = URL_PORTS.get(parts.scheme.lower())
        if port is None:
            raise ValueError(f"{text!r}: give the port, e.g. {parts.scheme}://{parts.netloc}:8080")
        return parts.hostname, parse_port(port)
    if raw.startswith("["):
        host, sep, port_text = raw[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r}: write an IPv6 address as [ADDRESS]:PORT, e.g. [::1]:8080")
    elif ":" in raw:
        host, _, port_text = raw.rpartition(":")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [{host}]:{port_text}")
    else:
        host, port_text = "", raw
    return host or None, parse_port(port_text)
