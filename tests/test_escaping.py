"""What a process chose to be called reaches no terminal raw (issue 11, item 8).

A real child renames itself (prctl PR_SET_NAME) and runs with a command line, both holding an
ESC sequence and a newline: `ls`, `who`, `watch`, `events` and the daemon's lines show them
escaped (`\\x1b`, `\\n`), so it can neither clear the screen nor forge a line; JSON keeps them exact.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import LINUX, portbell, wait_for

NAME = "\x1b[2Jx\nsshd"  # 10 bytes: within the kernel's 15
ARG = "\x1b[8mhidden\nloopback sshd"
RENAMED = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)  # PR_SET_NAME
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""

pytestmark = pytest.mark.skipif(not LINUX, reason="prctl(PR_SET_NAME) is Linux's")


@pytest.fixture
def renamed(tmp_path):
    """The child, run from a file: a short command line, so `who` shows it whole."""
    script = tmp_path / "r.py"
    script.write_text(RENAMED)
    proc = subprocess.Popen([sys.executable, str(script), NAME, ARG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    yield proc, port
    proc.stdin.close()
    proc.wait(10)


def assert_escaped(text: str) -> None:
    assert "\x1b" not in text, text
    assert "\\x1b[2Jx\\nsshd" in text, text


def test_ls_and_who_escape_the_name_and_the_command_line(renamed):
    proc, port = renamed
    ls = portbell("ls", "--port", str(port), check=True).stdout
    assert_escaped(ls)
    assert len(ls.splitlines()) == 2  # the header and one row: the newline forged no line
    who = portbell("who", str(port), check=True).stdout
    assert_escaped(who)
    assert "\\x1b[8mhidden\\nloopback sshd" in who
    assert not [line for line in who.splitlines() if line.startswith("loopback sshd")]


def test_json_keeps_what_the_process_said_exactly(renamed):
    proc, port = renamed
    doc = json.loads(portbell("ls", "--json", "--port", str(port), check=True).stdout)
    (owner,) = doc["listeners"][0]["owners"]
    assert owner["name"] == NAME and owner["cmdline"][-1] == ARG


def test_watch_and_the_daemon_and_events_escape_it(renamed, home):
    from test_cli import Lines

    proc, port = renamed
    daemon = subprocess.Popen([sys.executable, "-m", "portbell.daemon", "daemon", "--interval", "0.2"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: portbell("events", "--port", str(port)).returncode == 0, what="the daemon to record the child")
    finally:
        daemon.terminate()
        out, _ = daemon.communicate(timeout=10)
    (line,) = [line for line in out.splitlines() if f"127.0.0.1:{port} " in line]
    assert_escaped(line)
    events = portbell("events", "--port", str(port), check=True).stdout
    assert_escaped(events)
    assert len(events.splitlines()) == 1
    watch = subprocess.Popen([sys.executable, "-m", "portbell.daemon", "watch", "--interval", "0.2", "--port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        watch.stderr.readline()  # the baseline: the child is in it, so stop it to see its closed event
        proc.stdin.close()
        proc.wait(10)
        line = Lines(watch).next(10)
        assert "closed" in line
        assert_escaped(line)
    finally:
        watch.terminate()
        watch.wait(10)


def test_phrases_for_notifications_carry_no_control_character(renamed):
    from portbell.daemon import words
    from portbell.daemon.model import Event, EventKind, Recorded
    from portbell.daemon.samplers import create

    _, port = renamed
    with create("sockdiag") as sampler:
        li = next(li for li in sampler.sample().listeners.values() if li.port == port)
    rec = Recorded(1, Event(EventKind.OPENED, li.owners[0].started_at, li), True, "new")
    for text in (words.owners_phrase(li), words.owners_tag(li), words.event_sentence(rec), words.first_name(li)):
        assert text.isprintable(), repr(text)


def test_doctors_fix_line_escapes_the_last_holders_command_line_and_name(renamed, tmp_path):
    """The child is sampled for real, then recorded as closed: `portbell doctor` on its port names it
    in the last-listener fix (`start it again: ...`, or `start NAME again` without a command line)."""
    import os
    from datetime import datetime, timedelta, timezone

    from portbell.daemon.model import Event, EventKind, Listener, snapshot_of
    from portbell.daemon.model._valueclass import replace
    from portbell.daemon.record import Store
    from portbell.daemon.rules import Verdict
    from portbell.daemon.samplers import create

    proc, port = renamed
    with create("sockdiag") as sampler:
        li = next(li for li in sampler.sample().listeners.values() if li.port == port)
    assert li.owners[0].name == NAME and li.owners[0].cmdline[-1] == ARG
    proc.stdin.close()
    proc.wait(10)
    nameless = replace(li, owners=(replace(li.owners[0], cmdline=()),))
    for state, was in (("with-cmdline", li), ("name-only", nameless)):
        closed_at = datetime.now(timezone.utc) - timedelta(minutes=5)
        store = Store.open(tmp_path / state / "portbell.db")
        try:
            store.record(snapshot_of([], closed_at), [(Event(EventKind.CLOSED, closed_at, was), Verdict(False, "test"))])
        finally:
            store.close()
        done = portbell("doctor", f"127.0.0.1:{port}", env={**os.environ, "PORTBELL_STATE_DIR": str(tmp_path / state)})
        assert done.returncode == 1, done.stderr
        assert_escaped(done.stdout)
        (fix,) = [line for line in done.stdout.splitlines() if "again" in line]
        if was is li:
            assert "start it again: `" in fix and "\\x1b[8mhidden\\nloopback sshd" in fix, fix
        else:
            assert "start \\x1b[2Jx\\nsshd again" in fix, fix
