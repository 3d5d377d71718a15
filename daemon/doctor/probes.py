"""What doctor looks at: this machine's addresses, a TCP connection, the resolver, the firewall (read-only)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from typing import Callable

from ..addresses import parse_address
from ..errors import UsageError
from ..model import Transport
from .values import CONNECT_TIMEOUT_S, FIREWALL_TOOLS, LOCALHOST, Firewall, Outcome, Probe, Target


# --------------------------------------------------------- firewall parsers


def nft_filters_inbound(ruleset: str) -> bool:
    """Whether an `nft list ruleset` has an input-hook chain that drops or rejects anything."""
    for chunk in re.split(r"\bchain\s+", ruleset)[1:]:
        body = chunk.split("}", 1)[0]
        if "hook input" not in body:
            continue
        if re.search(r"policy\s+drop", body) or re.search(r"\b(drop|reject)\b", body):
            return True
    return False


def iptables_filters_inbound(rules: str) -> bool:
    """Whether `iptables -S` (filter table) drops or rejects anything on the way in.

    Follows jumps from INPUT to user chains (ufw, firewalld and docker build
    their own), so a DROP anywhere reachable from INPUT counts.
    """
    policy: dict[str, str] = {}
    rules_of: dict[str, list[str]] = {}
    for line in rules.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "-P":
            policy[words[1]] = words[2]
        elif len(words) >= 2 and words[0] in ("-A", "-N"):
            rules_of.setdefault(words[1], [])
            if words[0] == "-A":
                rules_of[words[1]].append(line)
    if policy.get("INPUT", "ACCEPT").upper() in ("DROP", "REJECT"):
        return True
    todo, seen = ["INPUT"], set()
    while todo:
        chain = todo.pop()
        if chain in seen:
            continue
        seen.add(chain)
        for rule in rules_of.get(chain, []):
            m = re.search(r"\s-[jg]\s+(\S+)", rule)
            if not m:
                continue
            jump = m.group(1)
            if jump in ("DROP", "REJECT"):
                return True
            if jump in rules_of:
                todo.append(jump)
    return False


# ---------------------------------------------------------------- adapters


def _nonlocal_bind_allowed(version: int) -> bool:
    path = f"/proc/sys/net/ipv{version}/ip_nonlocal_bind"
    try:
        with open(path) as f:
            return f.read().strip() != "0"
    except OSError:
        return False


def _sockaddr(address: str, port: int) -> tuple:
    """A sockaddr for connect/bind, keeping an IPv6 zone (fe80::1%eth0) as the scope id."""
    info = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    return info[0][0], info[0][4]


def is_local(address: str) -> bool:
    """Whether `address` belongs to this machine: loopback, or an address a socket can be bound to.

    Binding (no traffic) is the portable test. Where the OS lets sockets bind
    foreign addresses (ip_nonlocal_bind), only loopback counts.
    """
    try:
        ip = parse_address(address)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if ip.is_unspecified or ip.is_multicast or _nonlocal_bind_allowed(ip.version):
        return False
    try:
        family, sockaddr = _sockaddr(address, 0)
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind(sockaddr)
        return True
    except OSError:
        return False


def connect(address: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> Probe:
    """Try one TCP connection to this machine's own address, and close it at once."""
    if not is_local(address):
        raise UsageError(f"{address} is not an address of this machine: doctor connects to this machine only")
    family, sockaddr = _sockaddr(address, port)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(sockaddr)
        except ConnectionRefusedError:
            return Probe(address, Outcome.REFUSED)
        except (socket.timeout, TimeoutError):
            return Probe(address, Outcome.TIMEOUT, f"no answer within {timeout_s:g}s")
        except OSError as err:
            return Probe(address, Outcome.ERROR, err.strerror or str(err))
    return Probe(address, Outcome.ACCEPTED)


def _is_localhost_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def _system_order(host: str) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return ()
    out: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        a = str(sockaddr[0])
        try:
            a = str(parse_address(a)) if "%" not in a else a
        except ValueError:
            pass
        if a not in out:
            out.append(a)
    return tuple(out)


def resolve(host: str, port: int, transport: Transport, *, local: Callable[[str], bool] = is_local) -> Target:
    """The target's addresses in the order a client tries them, split into this machine's and others'."""
    if _is_localhost_name(host):
        return Target(host, port, transport, LOCALHOST, (), _system_order("localhost"), localhost=True)
    try:
        ip = parse_address(host)
        literal = True
    except ValueError:
        literal = False
    if literal:
        if ip.is_unspecified:
            raise UsageError(
                f"{host} is where a server listens (every interface), not an address to connect to: "
                f"ask about localhost:{port} or 127.0.0.1:{port}"
            )
        addresses: tuple[str, ...] = (host if "%" in host else str(ip),)
    else:
        addresses = _system_order(host)
        if not addresses:
            raise UsageError(f"cannot resolve {host!r}: give a name this machine can resolve, or an address")
    mine = tuple(a for a in addresses if local(a))
    others = tuple(a for a in addresses if a not in mine)
    if not mine:
        raise UsageError(
            f"{host} {'is' if literal else 'resolves to ' + ', '.join(addresses) + ', which is'} not an address of "
            "this machine: portbell doctor answers about this machine only (run it on the machine that has it)"
        )
    return Target(host, port, transport, mine, others, addresses)


def _run(argv: list[str]) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3, check=False)
    except (OSError, subprocess.SubprocessError):
        return -1, ""
    return done.returncode, done.stdout + done.stderr


def detect_firewall(
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[[list[str]], tuple[int, str]] = _run,
) -> Firewall:
    """Which firewall tools exist and, where their read-only status is readable, whether they filter inbound."""
    if sys.platform == "darwin":
        return _detect_macos(which, run)
    if sys.platform == "win32":
        code, out = run(["netsh", "advfirewall", "show", "allprofiles", "state"])
        if code != 0:
            return Firewall(("Windows Defender Firewall",), None, "netsh did not answer")
        on = re.search(r"State\s+ON", out, re.I) is not None
        return Firewall(("Windows Defender Firewall",), on, "netsh advfirewall")
    tools = tuple(t for t in FIREWALL_TOOLS if which(t))
    verdicts: list[bool | None] = []
    details: list[str] = []
    for tool in tools:
        verdict: bool | None
        if tool == "ufw":
            code, out = run(["ufw", "status"])
            verdict = True if "Status: active" in out else False if "Status: inactive" in out else None
            details.append(f"ufw {'active' if verdict else 'inactive' if verdict is False else 'status unreadable'}")
        elif tool == "firewall-cmd":
            code, out = run(["firewall-cmd", "--state"])
            verdict = True if out.strip() == "running" else False if "not running" in out else None
            details.append(f"firewalld {'running' if verdict else 'not running' if verdict is False else 'state unreadable'}")
        elif tool == "nft":
            code, out = run(["nft", "list", "ruleset"])
            verdict = nft_filters_inbound(out) if code == 0 else None
            details.append("nft ruleset " + ("unreadable" if verdict is None else "has input filtering" if verdict else "has no input filtering"))
        else:
            code, out = run(["iptables", "-S"])
            verdict = iptables_filters_inbound(out) if code == 0 else None
            details.append("iptables " + ("unreadable" if verdict is None else "filters INPUT" if verdict else "accepts all INPUT"))
        verdicts.append(verdict)
    if any(v is True for v in verdicts):
        filters: bool | None = True
    elif verdicts and all(v is False for v in verdicts):
        filters = False
    else:
        filters = None
    return Firewall(tools, filters, "; ".join(details))


def _detect_macos(which, run) -> Firewall:
    fw = "/usr/libexec/ApplicationFirewall/socketfilterfw"
    if not os.path.exists(fw):
        return Firewall((), None, "")
    code, out = run([fw, "--getglobalstate"])
    if code != 0:
        return Firewall(("Application Firewall",), None, "state unreadable")
    on = "enabled" in out.lower()
    return Firewall(("Application Firewall",), on, "enabled" if on else "disabled")
