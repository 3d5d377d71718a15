"""Units, inferred owners and forwarders as the command line shows them (issue 10, phase 2).

Real cgroups with real root listeners in them (test_units' fixture), and the commands run as
nobody: `ls` has the UNIT column, `who` a unit line, an inferred owner is marked, and an owner
nobody can name is called by its unit, with the count of processes that could be it.
"""

from __future__ import annotations

import contextlib
import io
import json
from datetime import datetime, timezone

from portbell.daemon.cli import main
from portbell.daemon.model import Event, EventKind, Listener
from portbell.daemon import words

from conftest import as_nobody, is_root
from test_units import IDLE, LISTEN, cgroups, needs_cgroup  # noqa: F401  (the fixture)


def run_as_nobody(*commands: tuple[str, ...]) -> list[dict]:
    """Each command through the command line's main(), as nobody: its exit code, stdout and stderr."""

    def work():
        results = []
        for argv in commands:
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(argv))
            results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
        return results

    return as_nobody(work)


@needs_cgroup
def test_ls_and_who_show_the_unit_and_mark_the_inferred_owner_for_an_unprivileged_user(cgroups):
    cg = cgroups()
    proc, port = cg.spawn(LISTEN, "127.0.0.1", "0")
    ls, who, filtered, other = run_as_nobody(
        ("ls", "--port", str(port)), ("who", str(port)), ("ls", "--unit", "portbell-test-*.service", "--port", str(port)),
        ("ls", "--unit", "cups.service", "--port", str(port)),
    )
    header, row = ls["out"].splitlines()
    assert header.split()[6] == "UNIT" and row[header.index("UNIT"):].startswith(cg.name), ls["out"]
    assert f"  unit     {cg.name}" in who["out"]
    assert f"(pid {proc.pid}) (inferred: the only process of the socket's user in its unit)" in who["out"]
    assert cg.name in filtered["out"] and other["out"].startswith("Nothing listens")
    # the partial view says what it cannot see and both ways to see it
    assert "run as root, or run the system-wide daemon" in ls["err"]


@needs_cgroup
def test_an_owner_nobody_can_name_is_called_by_its_unit_with_the_count(cgroups):
    cg = cgroups()
    proc, port = cg.spawn(LISTEN, "127.0.0.1", "0")
    cg.spawn(IDLE)  # a second root process there: none is guessed
    ls_json, who = run_as_nobody(("ls", "--json", "--port", str(port)), ("who", str(port)))
    li = Listener.from_dict(json.loads(ls_json["out"])["listeners"][0])
    assert li.candidates == 2 and li.owners[0].pid is None
    assert words.owners_tag(li) == f"{cg.name} (root, 2 processes)"
    assert f"not visible: the socket belongs to uid 0 (root), in {cg.name} (2 processes of that user there" in who["out"]
    line = words.event_line(Event(EventKind.OPENED, datetime.now(timezone.utc), li))
    assert line.endswith(f"{cg.name} (root, 2 processes)")


def test_the_partial_view_sentence_never_tells_root_to_run_as_root(home):
    from test_daemon import DaemonProc, sampled_once

    assert "run as root" not in words.partial_view(True).lower()
    assert "run as root" in words.partial_view(False) and "system-wide daemon" in words.partial_view(False)
    d = DaemonProc("--interval", "0.2", "--config", "/dev/null", folder=home)  # /dev/null: no configuration
    sampled_once(home)
    code, _out, err = d.stop()
    assert code == 0 and "portbell daemon (pid" in err
    if is_root():
        assert "run as root" not in err
    else:
        assert words.partial_view(False) in err


def test_unit_and_forward_lines_of_who_and_the_no_socket_sentence():
    from portbell.daemon.model import Container, Exposure, Forward, Owner, Transport, Unit, UnitKind

    web = Container("cd" * 32, runtime="docker", name="shop-web-1", image="nginx:1.25")
    proxy = Owner(pid=901, uid=0, name="docker-proxy", user="root", via="cmdline")
    li = Listener(Transport.TCP, 4, "0.0.0.0", 8080, Exposure.ALL_INTERFACES, owners=(proxy,), forward=Forward("docker-proxy", "172.17.0.2", 80, web))
    assert words.owners_tag(li) == "docker-proxy (901, by command line)"
    assert words.listener_block(li)[1] == "  forward  -> 172.17.0.2:80 (shop-web-1), by docker-proxy"
    nat = Listener(Transport.TCP, 4, "0.0.0.0", 8081, Exposure.ALL_INTERFACES, forward=Forward("docker", "172.17.0.3", 80, web), socket=False,
                   unit=Unit(UnitKind.CONTAINER, web.short_id, container=web))
    assert "  socket   published by Docker, no socket on this machine" in words.listener_block(nat)
    assert words.unit_column(nat) == "shop-web-1 (container, nginx:1.25) (no socket)"
    cupsd = Owner(pid=812, uid=0, name="cupsd", user="root", via="cgroup")
    assert words.owner_tag(cupsd) == "cupsd (812, by unit)"
