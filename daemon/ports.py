"""What a port number means on this machine.

- its class (IANA): well-known 0-1023, registered 1024-49151, dynamic 49152-65535;
- whether it lies in this OS's ephemeral range (the ports the kernel hands to
  client sockets), read from the OS itself;
- a service name: first a short curated list of developer ports (they name
  what a developer actually runs there: 5173 is Vite, whatever /etc/services
  says), then the system's services database.
"""

from __future__ import annotations

import socket
import sys
from functools import lru_cache

from .model import value
TYPE_CHECKING = False  # typing costs 2 ms of every `portbell who`: annotations only need it when checked
if TYPE_CHECKING:
    from typing import Any

WELL_KNOWN, REGISTERED, DYNAMIC = "well-known", "registered", "dynamic"

DEV_PORTS: dict[int, str] = {
    1433: "sql-server",
    1883: "mqtt",
    2375: "docker (unencrypted!)",
    3000: "dev server (node, rails, grafana)",
    3306: "mysql",
    4200: "angular dev server",
    4222: "nats",
    5000: "dev server (flask)",
    5173: "vite dev server",
    5432: "postgresql",
    5672: "amqp (rabbitmq)",
    5900: "vnc",
    6006: "tensorboard",
    6379: "redis",
    8000: "dev server (django, python -m http.server)",
    8080: "http-alt",
    8443: "https-alt",
    8888: "jupyter",
    9000: "php-fpm / sonarqube",
    9090: "prometheus",
    9200: "elasticsearch",
    9229: "node inspector (debugger!)",
    11211: "memcached",
    15672: "rabbitmq management",
    27017: "mongodb",
}


def port_class(port: int) -> str:
    if port < 1024:
        return WELL_KNOWN
    return REGISTERED if port < 49152 else DYNAMIC


def _run(argv: list[str]) -> str:
    import subprocess  # only where the range takes a program to ask (macOS, BSD, Windows)

    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False).stdout
    except subprocess.SubprocessError as err:
        raise OSError(f"{argv[0]}: {err}") from err


@lru_cache(maxsize=1)
def ephemeral_range() -> tuple[int, int] | None:
    """The OS's ephemeral (client) port range, or None when the OS will not say."""
    try:
        if sys.platform.startswith("linux"):
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                low, high = f.read().split()
        elif sys.platform == "darwin" or "bsd" in sys.platform:
            out = _run(["sysctl", "-n", "net.inet.ip.portrange.first", "net.inet.ip.portrange.last"])
            low, high = out.split()[:2]
        elif sys.platform == "win32":
            # "Start Port : 49152" / "Number of Ports : 16384"
            out = _run(["netsh", "int", "ipv4", "show", "dynamicport", "tcp"])
            numbers = [line.split(":")[-1].strip() for line in out.splitlines() if ":" in line]
            start, count = int(numbers[0]), int(numbers[1])
            return start, start + count - 1
        else:
            return None
        return int(low), int(high)
    except (OSError, ValueError, IndexError):
        return None


@lru_cache(maxsize=4096)
def service_name(port: int, transport: str = "tcp") -> str | None:
    if port in DEV_PORTS:
        return DEV_PORTS[port]
    try:
        return socket.getservbyport(port, transport)
    except (OSError, OverflowError):
        return None


@value
class PortInfo:
    """What a port number means here: its class, its usual service, the ephemeral range."""

    port: int
    port_class: str
    service: str | None
    ephemeral_range: tuple[int, int] | None

    @property
    def ephemeral(self) -> bool | None:
        if self.ephemeral_range is None:
            return None
        low, high = self.ephemeral_range
        return low <= self.port <= high

    def describe(self) -> str:
        bounds = {WELL_KNOWN: "0-1023", REGISTERED: "1024-49151", DYNAMIC: "49152-65535"}[self.port_class]
        text = f"port {self.port}: {self.port_class} ({bounds})"
        if self.service:
            text += f", usually {self.service}"
        if self.ephemeral_range is not None:
            low, high = self.ephemeral_range
            where = "inside" if self.ephemeral else "outside"
            text += f"; {where} this system's ephemeral range {low}-{high}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "class": self.port_class,
            "service": self.service,
            "ephemeral": self.ephemeral,
            "ephemeral_range": list(self.ephemeral_range) if self.ephemeral_range else None,
        }


def info(port: int, transport: str = "tcp") -> PortInfo:
    return PortInfo(port, port_class(port), service_name(port, transport), ephemeral_range())
