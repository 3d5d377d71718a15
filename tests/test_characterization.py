"""What the commands print, held fixed: one staged machine state, every everyday command, golden text.

The layout redesign (issue 9) had to leave every output unchanged. These goldens were written by the
code before it and are compared, byte for byte, with what the commands print now. The machine state
is a replayed snapshot (the sampler seam) and a real record written through the Store; the doctor's
probes are real connections to loopback ports where nothing listens (1 and 3).

When an output changes on purpose, regenerate with `PORTBELL_GOLDEN=write pytest tests/test_characterization.py`
and read the diff before committing it: the diff is the review.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from portbell.daemon import samplers
from portbell.daemon.cli import main
from portbell.daemon.model import Event, EventKind, Exposure, Listener, Owner, Transport, snapshot_of

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)


def _owner(pid, name, uid, user, exe=None, cmd=None, started=T0 - timedelta(hours=1)):
    return Owner(pid=pid, uid=uid, name=name, started_at=started if pid else None, exe=exe, cmdline=cmd, user=user)


ANA = dict(uid=1000, user="ana")
PY = _owner(4242, "python3", exe="/usr/bin/python3.11", cmd=("python3", "-m", "http.server", "8000"), **ANA)
NODE = _owner(5000, "node", exe="/usr/bin/node", cmd=("node", "server.js"), **ANA)
SSHD = _owner(812, "sshd", 0, "root", exe="/usr/sbin/sshd", cmd=("sshd: /usr/sbin/sshd -D",))
CUPS = _owner(700, "cupsd", 0, "root", exe="/usr/sbin/cupsd", cmd=("/usr/sbin/cupsd", "-l"))
NGINX = (_owner(100, "nginx", 0, "root", exe="/usr/sbin/nginx"), _owner(101, "nginx", 33, "www-data", exe="/usr/sbin/nginx"))
AVAHI = _owner(None, None, 107, "avahi")


def _li(transport, address, port, exposure, owners, family=4, dual=False):
    return Listener(Transport(transport), family, address, port, Exposure(exposure), dual, tuple(owners))


BEFORE = [
    _li("tcp", "127.0.0.1", 8000, "loopback", [PY]),
    _li("tcp", "::", 22, "all-interfaces", [SSHD], family=6, dual=True),
    _li("udp", "0.0.0.0", 5353, "all-interfaces", [AVAHI]),
    _li("tcp", "192.168.1.5", 3000, "local-network", [NODE]),
    _li("tcp", "::1", 631, "loopback", [CUPS], family=6),
    _li("tcp", "0.0.0.0", 8080, "all-interfaces", NGINX),
    _li("udp", "127.0.0.1", 3, "loopback", [NODE]),
]
AFTER = [li for li in BEFORE if li.port not in (8000, 22)] + [
    _li("tcp", "0.0.0.0", 9000, "all-interfaces", [NODE]),
    _li("tcp", "::", 22, "all-interfaces", [_owner(813, "sshd", 0, "root", exe="/usr/sbin/sshd")], family=6, dual=True),
]


class Replay:
    """The sampler seam: hands out the staged snapshots; past the last, asks the process to stop (watch)."""

    name = "replay"

    def __init__(self, *states, complete=True):
        self.states = [snapshot_of(s, T0 + timedelta(seconds=i), complete=complete, sampler="replay") for i, s in enumerate(states)]
        self.calls = 0

    def sample(self):
        self.calls += 1
        if self.calls > len(self.states):
            os.kill(os.getpid(), signal.SIGINT)
        return self.states[min(self.calls, len(self.states)) - 1]

    def close(self):
        pass


@pytest.fixture
def staged(home, monkeypatch):
    """The machine state: the replayed sampler, a record with a day of history, UTC for the clock."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    from portbell.daemon import paths
    from portbell.daemon.rules import Verdict

    Store = _store_class()
    store = Store.open(paths.database())
    first = snapshot_of(BEFORE, T0 - timedelta(days=1), sampler="replay")
    store.record(first, [(Event(EventKind.OPENED, first.taken_at, li), Verdict(False, "baseline: listening when portbell first started")) for li in first.sorted()], baseline=True)
    gone = _li("tcp", "127.0.0.1", 1, "loopback", [PY])
    store.record(first, [(Event(EventKind.OPENED, T0 - timedelta(hours=3), gone), Verdict(True, "first time this program listens, on loopback"))])
    store.record(first, [(Event(EventKind.CLOSED, T0 - timedelta(hours=2), gone), Verdict(False, "closed events never alert"))])
    opened = _li("tcp", "0.0.0.0", 9000, "all-interfaces", [NODE])
    store.record(first, [(Event(EventKind.OPENED, T0, opened), Verdict(True, "reachable from other machines (all-interfaces)"))], found_at_start=True)
    store.heartbeat({"pid": 99999, "started_at": (T0 - timedelta(days=1)).isoformat(), "last_sample_at": T0.isoformat(), "interval_s": 1.0, "sampler": "replay", "complete": True, "root": False})
    store.close()
    monkeypatch.setattr(samplers, "open_sampler", lambda prefer=None: (Replay(BEFORE, AFTER), []))
    monkeypatch.setattr(samplers, "sample_once", lambda prefer=None, ports=None: Replay(BEFORE).sample())  # ls, who
    yield
    time.tzset()


def _store_class():
    from portbell.daemon.record import Store

    return Store


AGO = re.compile(r"\((\d+[dhms] ?)+ ago\)")


def run(*argv) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    text = f"$ portbell {' '.join(argv)}\n{out.getvalue()}"
    if err.getvalue():
        text += f"[stderr]\n{err.getvalue()}"
    return AGO.sub("(AGO)", text + f"[exit {code}]\n")


COMMANDS = {
    "ls": [("ls",), ("ls", "--exposed"), ("ls", "--udp"), ("ls", "--json")],
    "who": [("who", "8000"), ("who", "127.0.0.1:8000"), ("who", "22"), ("who", "5353"), ("who", "9"), ("who", "--json", "8080"), ("who", "[::1]:631")],
    "watch": [("watch", "--interval", "0.1")],
    "doctor": [("doctor", "1"), ("doctor", "127.0.0.1:3"), ("doctor", "--udp", "3"), ("doctor", "--json", "1")],
    "events": [("events",), ("events", "--port", "1"), ("events", "--alerts"), ("events", "--json", "--limit", "2"), ("history", "1")],
    "status": [("status",), ("trust",)],
}


def _check(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("PORTBELL_GOLDEN") == "write":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"the output of {name} changed: regenerate only on purpose (see the docstring)"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_commands_print_what_they_printed_before(staged, name):
    _check(name, "".join(run(*argv) for argv in COMMANDS[name]))


def test_the_tray_shows_what_it_showed_before(staged):
    from portbell.tray import alerts, menu

    view = menu.View(listeners=menu.order(BEFORE), since={li.key: T0 - timedelta(hours=2) for li in BEFORE}, unseen=2, uid=1000, autostart=False)
    now = T0 + timedelta(minutes=5)
    text = [menu.tooltip(view, now), menu.summary(view), menu.as_text(menu.build(view, now))]
    for li in BEFORE[:3]:
        text.append("\n".join(menu.details(li, T0 - timedelta(hours=2), now)))
    from portbell.daemon.model import Recorded

    recs = [Recorded(i, Event(EventKind.OPENED, T0, li), True, "new") for i, li in enumerate(BEFORE, 1)]
    for batch in (recs[:1], recs[1:2], recs):
        notice = alerts.notice(batch)
        text.append(f"{notice.title}\n{notice.body}\nexposed={notice.exposed}")
    _check("tray", "\n---\n".join(text) + "\n")


def test_the_goldens_are_not_empty():
    for path in GOLDEN.glob("*.txt"):
        assert "[exit" in path.read_text() or path.name == "tray.txt"
        assert json.dumps(path.read_text())  # text, nothing binary
