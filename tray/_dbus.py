"""Desktop notifications spoken directly to org.freedesktop.Notifications over D-Bus, with buttons.

plyer cannot show buttons nor hear a click; the Desktop Notifications spec has both: `Notify` takes
actions (key, label pairs) and hints (urgency), and the server sends `ActionInvoked(id, key)` when a
person clicks one. jeepney (pure Python, no C build) speaks the protocol. One router thread owns the
connection; a listener thread of ours waits on the signals and hands each click to `on_action` as
(notification id, action key). The only jeepney import.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading

from ..daemon.errors import Unavailable

log = logging.getLogger("portbell.tray")

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"
CALL_TIMEOUT_S = 5.0
URGENCY = {"low": 0, "normal": 1, "critical": 2}


class DbusNotifications:
    """A connection to the session's notification service: its capabilities, Notify, and clicks."""

    def __init__(self, on_action=None) -> None:
        from jeepney import DBusAddress, MatchRule, message_bus
        from jeepney.io.threading import DBusRouter, Proxy, open_dbus_connection

        self.on_action = on_action
        self._address = DBusAddress(PATH, bus_name=NAME, interface=NAME)
        try:
            self._conn = open_dbus_connection(bus="SESSION")
            self._router = DBusRouter(self._conn)
        except Exception as err:  # no bus address, a refused connection
            raise Unavailable(f"no session bus: {err}") from err
        try:
            self.capabilities = frozenset(self._call("GetCapabilities", "")[0])
            bus = Proxy(message_bus, self._router)
            queue_ = queue.Queue(maxsize=256)
            self._filters = contextlib.ExitStack()
            # no sender in the rule: the bus would match it against the name's current owner
            rule = MatchRule(type="signal", interface=NAME, member="ActionInvoked", path=PATH)
            bus.AddMatch(rule, _timeout=CALL_TIMEOUT_S)
            self._filters.enter_context(self._router.filter(rule, queue=queue_))
        except Exception as err:
            self._router.close()
            self._conn.close()
            raise Unavailable(f"{NAME} does not answer: {type(err).__name__}: {err}") from err
        self.ours: dict[int, None] = {}  # ids of the last notifications we sent, oldest first
        self._queue = queue_
        self._listener = threading.Thread(target=self._listen, name="portbell-notifications", daemon=True)
        self._listener.start()

    @property
    def actions(self) -> bool:
        return "actions" in self.capabilities

    @property
    def markup(self) -> bool:
        return "body-markup" in self.capabilities

    def _call(self, method: str, signature: str, *args):
        from jeepney import new_method_call
        from jeepney.wrappers import unwrap_msg

        reply = self._router.send_and_get_reply(new_method_call(self._address, method, signature, args), timeout=CALL_TIMEOUT_S)
        return unwrap_msg(reply)

    def notify(self, title: str, body: str, *, icon: str = "", urgency: str = "normal", timeout_s: float = 10,
               actions=(), app_name: str = "portbell", replaces: int = 0) -> int:
        """Show a notification; its id. `actions`: (key, label) pairs, "default" for a click on the bubble."""
        flat = [part for pair in actions for part in pair] if self.actions else []
        hints = {"urgency": ("y", URGENCY[urgency]), "desktop-entry": ("s", "portbell")}
        timeout_ms = 0 if urgency == "critical" and flat else int(timeout_s * 1000)
        (nid,) = self._call("Notify", "susssasa{sv}i", app_name, replaces, icon, title, body, flat, hints, timeout_ms)
        self.ours[nid] = None
        while len(self.ours) > 512:
            del self.ours[next(iter(self.ours))]
        return nid

    def close(self) -> None:
        self.on_action = None
        try:
            self._filters.close()
            self._router.close()
            self._conn.close()
        except Exception:
            pass
        self._queue.put(None)

    def _listen(self) -> None:
        while True:
            msg = self._queue.get()
            if msg is None:
                return
            try:
                nid, key = msg.body[0], msg.body[1]
            except (IndexError, TypeError):
                continue
            if nid not in self.ours:
                continue  # another program's notification
            handler = self.on_action
            if handler is not None:
                try:
                    handler(nid, str(key))
                except Exception:
                    log.exception("the notification's action %r failed", key)
