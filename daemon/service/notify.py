"""Telling systemd how the daemon is (Type=notify): READY, WATCHDOG, STOPPING, STATUS."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("portbell")


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify): a datagram to $NOTIFY_SOCKET; nothing when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode(), address)
    except OSError as err:
        log.debug("sd_notify failed: %s", err)
