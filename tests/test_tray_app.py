"""The tray's composition without a desktop: pystray's dummy backend, a real record written by a real
store (or a real daemon), a notifier that remembers. Plus the lifecycle: no display, starting the daemon."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest

from portbell.daemon.session import graphical_session

from conftest import wait_for
from portbell.daemon.addresses import classify
from portbell.daemon.model import Event, EventKind, Listener, Owner, Transport, snapshot_of
from portbell.daemon.rules import Verdict
from portbell.daemon.service import InstanceLock
from portbell.daemon.record import Store
from portbell.tray import menu, system
from portbell.tray.menu import Action


@pytest.fixture(scope="module")
def pystray_dummy():
    """pystray with its dummy backend: menus are built, nothing is shown."""
    if "pystray" in sys.modules:
        pytest.skip("pystray was imported with another backend in this process")
    os.environ["PYSTRAY_BACKEND"] = "dummy"
    try:
        import pystray
    finally:
        del os.environ["PYSTRAY_BACKEND"]
    return pystray


class FakeIcon:
    def __init__(self):
        self.menus, self.images, self.titles = [], [], []

    menu = property(lambda self: self.menus[-1], lambda self, m: self.menus.append(m))
    icon = property(lambda self: self.images[-1], lambda self, i: self.images.append(i))
    title = property(lambda self: self.titles[-1], lambda self, t: self.titles.append(t))

    def stop(self):
        self.stopped = True


class FakeNotifier:
    def __init__(self):
        self.sent = []

    def send(self, title, body, *, timeout_s=10, urgency="normal", buttons=()):
        self.sent.append((title, body))
        self.last = dict(urgency=urgency, buttons=buttons)
        return True


class Clock:
    def __init__(self):
        self.mono = 1000.0
        self.wall = datetime.now(timezone.utc).replace(microsecond=0)

    def advance(self, seconds):
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def listener(port, address="0.0.0.0", name="python3", pid=4242):
    o = Owner(pid=pid, uid=os.getuid(), name=name, started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), exe=f"/usr/bin/{name}", user="me")
    return Listener(Transport.TCP, 4, address, port, classify(address), owners=(o,))


class Writer:
    """Plays the daemon: commits polls to the record."""

    def __init__(self, path: Path, clock: Clock):
        self.store = Store.open(path)
        self.clock = clock
        self.listeners: dict = {}

    def baseline(self, *lis):
        self.listeners = {x.key: x for x in lis}
        snap = snapshot_of(lis, self.clock.wall, sampler="test")
        self.store.record(snap, [(Event(EventKind.OPENED, self.clock.wall, x), Verdict(False, "baseline")) for x in lis], baseline=True)

    def open(self, *lis, alert=True):
        for x in lis:
            self.listeners[x.key] = x
        snap = snapshot_of(self.listeners.values(), self.clock.wall, sampler="test")
        self.store.record(snap, [(Event(EventKind.OPENED, self.clock.wall, x), Verdict(alert, "test")) for x in lis])


@pytest.fixture
def tray(home, pystray_dummy):
    from portbell.daemon import paths
    from portbell.tray.app import TrayApp

    clock = Clock()
    writer = Writer(paths.database(), clock)
    notifier = FakeNotifier()
    app = TrayApp(pystray_dummy, notifier=notifier, clock=lambda: clock.mono, now=lambda: clock.wall)
    app.icon = FakeIcon()
    app.menu_dump = str(home / "menu.txt")
    yield app, writer, clock, notifier
    writer.store.close()
    app.close()


def menu_text(home) -> str:
    return (home / "menu.txt").read_text()


def test_the_tray_shows_the_record_and_rings_once_per_burst(tray, home):
    app, writer, clock, notifier = tray
    writer.baseline(listener(5432, "127.0.0.1", "postgres", 900))
    app.tick()
    assert "# 0 exposed, 1 on this machine only" in menu_text(home)
    assert app.icon.titles[-1].startswith("portbell: 0 exposed, 1 on this machine only")
    assert app._shown[1] == ("loopback", 0)
    clock.advance(1)
    writer.open(listener(8000, name="node", pid=1), listener(8001, name="node", pid=2), listener(9000, pid=3))
    app.tick()
    assert app._shown[1] == ("alert", 3) and notifier.sent == []  # coalescing: not yet
    assert "* 3 new alerts: mark as seen" in menu_text(home)
    clock.advance(1)
    app.tick()
    assert notifier.sent == []
    clock.advance(1.1)
    app.tick()
    ((title, body),) = notifier.sent
    assert title == "3 new listeners, 3 exposed"
    assert body.splitlines()[0] == "3 new listeners: node x2, python3"
    app.carry_out(Action("seen"))
    app.tick()
    assert app._shown[1] == ("exposed", 0) and "mark as seen" not in menu_text(home)
    assert app.state.seen_id == writer.store.last_id()


def test_an_idle_tray_does_not_touch_the_toolkit(tray):
    app, writer, clock, _ = tray
    writer.baseline(listener(8000))
    app.tick()
    counts = (len(app.icon.menus), len(app.icon.images), len(app.icon.titles))
    for _ in range(5):
        clock.advance(1)
        app.tick()
    writer.store.heartbeat({"pid": 1})  # the daemon's heartbeat: a commit, but nothing the menu shows
    clock.advance(1)
    app.tick()
    assert (len(app.icon.menus), len(app.icon.images), len(app.icon.titles)) == counts


def test_pause_keeps_quiet_and_resume_rings_again(tray, home):
    app, writer, clock, notifier = tray
    writer.baseline()
    app.tick()
    app.carry_out(Action("pause", ("1h",)))
    writer.open(listener(8000))
    for _ in range(4):
        clock.advance(1)
        app.tick()
    assert notifier.sent == []
    assert "# Notifications paused until" in menu_text(home)
    assert app._shown[1] == ("alert", 1)  # still counted as unseen
    app.carry_out(Action("resume"))
    writer.open(listener(8001))
    for _ in range(4):
        clock.advance(1)
        app.tick()
    assert [t for t, _ in notifier.sent] == ["8001 python3: exposed"]


def test_a_restarted_tray_does_not_replay_old_alerts(tray, pystray_dummy):
    from portbell.tray.app import TrayApp

    app, writer, clock, notifier = tray
    writer.baseline()
    writer.open(listener(8000))  # before any tray ran: history, not news
    app.tick()
    for _ in range(3):
        clock.advance(1)
        app.tick()
    assert notifier.sent == []
    writer.open(listener(8001))
    for _ in range(4):
        clock.advance(1)
        app.tick()
    assert len(notifier.sent) == 1
    again = FakeNotifier()
    second = TrayApp(pystray_dummy, notifier=again, clock=lambda: clock.mono, now=lambda: clock.wall)
    second.icon = FakeIcon()
    for _ in range(4):
        clock.advance(1)
        second.tick()
    assert again.sent == []  # the state file remembers what was notified
    second.close()


def test_trust_from_the_menu_writes_a_decision_the_menu_then_shows(tray, home):
    app, writer, clock, notifier = tray
    x = listener(8000)
    writer.baseline(x)
    app.tick()
    app.carry_out(Action("trust", (x,)))
    (rule,) = writer.store.decisions()
    assert (rule.action, rule.program, rule.ports, rule.source) == ("trust", "/usr/bin/python3", (8000, 8000), "tray")
    assert notifier.sent[-1][0] == "Trusted: port 8000" and f"portbell forget {rule.id}" in notifier.sent[-1][1]
    clock.advance(1)
    app.tick()
    assert "  8000 tcp  python3 (4242)  0.0.0.0  (trusted) >" in menu_text(home)


def test_show_recent_events_writes_them_and_says_when_nothing_can_open_them(tray, home, monkeypatch):
    app, writer, clock, notifier = tray
    writer.baseline(listener(22))
    writer.open(listener(8000))
    app.tick()
    monkeypatch.setattr(system, "opener_command", lambda env=None: None)
    app.carry_out(Action("events"))
    text = (home / "state" / "recent-events.txt").read_text()
    assert "opened   tcp 0.0.0.0:8000" in text and "! test" in text and "(baseline)" in text
    assert "no program to open files" in notifier.sent[-1][1]
    assert app.unseen == 0


def test_open_settings_creates_a_commented_template_that_checks_clean(home):
    from portbell.daemon import config
    from portbell.tray.actions import ensure_config

    path = ensure_config(home / "cfg" / "config.toml")
    text = path.read_text()
    assert all(line.startswith("#") for line in text.splitlines())
    assert "# [notify]" in text and "# cooldown_s = 300" in text
    assert config.load(path) == config.Config(path=path)
    uncommented = "\n".join(line[2:] for line in text.splitlines() if line.startswith("# [notify]") or line.startswith("# cooldown_s"))
    path.write_text(uncommented)
    assert config.load(path).cooldown_s == 300
    path.write_text("[notify]\ncooldown_s = 5\n")
    assert ensure_config(path).read_text() == "[notify]\ncooldown_s = 5\n"  # never overwritten


def test_the_menu_becomes_pystray_objects_whose_clicks_queue_actions(pystray_dummy):
    from portbell.tray.toolkit import to_pystray

    done = []
    items = menu.build(menu.View(listeners=(listener(8000),), autostart=True, uid=os.getuid()), datetime.now(timezone.utc))
    pm = to_pystray(pystray_dummy, items, done.append)
    texts = [i.text for i in pm.items if i is not pystray_dummy.Menu.SEPARATOR]
    assert texts == [it.text for it in items if not it.separator]
    entry = next(i for i in pm.items if i.text.startswith("8000 tcp"))
    copy = next(i for i in entry.submenu.items if i.text == "Copy address")
    copy(None)
    assert done == [Action("copy", ("0.0.0.0:8000",))]
    start = next(i for i in pm.items if i.text == "Start at login")
    assert start.checked is True
    assert next(i for i in pm.items if i.text.startswith("# ") or i.text == menu.EXPOSED_TITLE).enabled is False


def test_autostart_toggle_calls_the_autostart_module_or_is_disabled_without_it(tray, monkeypatch):
    import types

    from portbell.tray import actions as appmod

    app, *_ = tray
    calls = []
    fake = types.ModuleType("portbell.daemon.autostart")
    fake.enable = lambda which: calls.append(("enable", which)) or [Path("/x/portbell-tray.desktop")]
    fake.disable = lambda which: calls.append(("disable", which)) or []
    fake.status = lambda which: [types.SimpleNamespace(path=Path("/x"), active=bool(calls) and calls[-1][0] == "enable", installed=True)]
    monkeypatch.setitem(sys.modules, "portbell.daemon.autostart", fake)
    import portbell.daemon as daemon_pkg

    monkeypatch.setattr(daemon_pkg, "autostart", fake, raising=False)
    app.carry_out(Action("autostart", (True,)))
    assert calls == [("enable", "all")] and app.autostart is True
    app.carry_out(Action("autostart", (False,)))
    assert calls[-1] == ("disable", "all") and app.autostart is False
    monkeypatch.setitem(sys.modules, "portbell.daemon.autostart", None)  # import fails: the item is disabled
    monkeypatch.delattr(daemon_pkg, "autostart")
    assert appmod.autostart_status() is None


# ------------------------------------------------------------------ the record across restarts


def test_the_record_reader_survives_a_daemon_restart_and_a_replaced_file(home):
    from portbell.daemon import paths
    from portbell.tray.state import Record

    record = Record(paths.database())
    assert record.refresh() is False and record.reading is None  # no database yet
    daemon = subprocess.Popen([sys.executable, "-m", "portbell.daemon", "daemon", "--interval", "0.2", "--quiet"], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: record.refresh() or record.reading, what="the first reading")
        first = socket.socket()
        first.bind(("127.0.0.1", 0))
        first.listen()
        wait_for(lambda: record.refresh() and any(li.port == first.getsockname()[1] for li in record.reading.listeners) or None,
                 what="the listener in the record")
        daemon.terminate()
        daemon.wait(10)
        daemon = subprocess.Popen([sys.executable, "-m", "portbell.daemon", "daemon", "--interval", "0.2", "--quiet"], stderr=subprocess.DEVNULL)
        second = socket.socket()
        second.bind(("127.0.0.1", 0))
        second.listen()
        wait_for(lambda: (record.refresh() or True) and any(li.port == second.getsockname()[1] for li in record.reading.listeners),
                 what="a listener recorded by the restarted daemon")
        generation = record.generation
        daemon.terminate()
        daemon.wait(10)
        for suffix in ("", "-wal", "-shm"):  # the file replaced, as when a corrupt one is moved aside
            Path(str(paths.database()) + suffix).unlink(missing_ok=True)
        clock = Clock()
        Writer(paths.database(), clock).baseline(listener(4444, "127.0.0.1"))
        wait_for(lambda: (record.refresh() or True) and record.reading and [li.port for li in record.reading.listeners] == [4444],
                 what="the new file")
        assert record.generation == generation + 1
        first.close()
        second.close()
    finally:
        daemon.terminate()
        daemon.wait(10)
        record.close()


# ------------------------------------------------------------------ lifecycle


def test_without_a_graphical_session_the_tray_says_so_and_exits_1(home):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, "-m", "portbell.daemon", "tray"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "no graphical session" in done.stderr and "DISPLAY" in done.stderr
    assert "pystray" not in done.stderr and "Traceback" not in done.stderr
    assert InstanceLock.holder(home / "state" / "daemon.lock") is None  # and no daemon was started (its lock is beside the record)
    assert graphical_session({"WAYLAND_DISPLAY": "wayland-0"}) is None


def test_the_tray_starts_the_daemon_detached(home):
    from portbell.daemon import paths

    children = system.Children()
    proc = system.start_daemon(children, paths.state_dir() / "daemon.log")
    try:
        wait_for(lambda: InstanceLock.holder(paths.lock_file()) == proc.pid, what="the daemon's lock")
        assert os.getsid(proc.pid) == proc.pid != os.getsid(0)  # its own session: it outlives the tray
        cmd = psutil.Process(proc.pid).cmdline()
        assert cmd[1:] == ["-m", "portbell.daemon", "daemon", "--quiet"] and cmd[0] == sys.executable
    finally:
        proc.terminate()
        proc.wait(10)
    children.reap()
    assert children.procs == []


def test_copy_says_what_to_install_when_there_is_no_clipboard_program(monkeypatch):
    monkeypatch.setattr(system.shutil, "which", lambda name: None)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(system.Unavailable, match="install xclip or xsel"):
        system.copy("127.0.0.1:8000")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_the_worker_sleeps_until_the_records_folder_is_written(tmp_path):
    import select

    watch = system.FolderWatch.open(tmp_path)
    assert watch is not None
    try:
        assert select.select([watch], [], [], 0)[0] == []
        (tmp_path / "portbell.db-wal").write_bytes(b"a commit")
        assert select.select([watch], [], [], 5)[0] == [watch]
        watch.drain()
        assert select.select([watch], [], [], 0)[0] == []
    finally:
        watch.close()


class Probe:
    """The pointer probe (tray/_x11.py) at its seam: says whether a menu is open."""

    def __init__(self):
        self.open = False

    def held(self):
        return self.open

    def close(self):
        pass


def test_a_shown_menu_is_not_swapped_until_it_closes_and_the_icon_still_changes(tray, home):
    app, writer, clock, _ = tray
    app.probe = Probe()
    writer.baseline(listener(5432, "127.0.0.1"))
    app.tick()
    menus = len(app.icon.menus)
    app.probe.open = True
    clock.advance(1)
    writer.open(listener(8000, name="node", pid=1))
    app.tick()
    assert len(app.icon.menus) == menus and "8000 tcp" not in menu_text(home)  # the open menu stays
    assert app._shown[1] == ("alert", 1)  # the icon says it at once
    assert app._menu_retry_at == clock.mono + 0.5  # and the worker looks again soon
    app.probe.open = False
    clock.advance(0.5)
    app.tick()
    assert len(app.icon.menus) == menus + 1 and "8000 tcp" in menu_text(home) and app._menu_retry_at is None


def test_a_short_lived_loopback_listener_never_enters_the_menu_and_a_lasting_one_does(tray, home):
    app, writer, clock, _ = tray
    writer.baseline(listener(5432, "127.0.0.1"))
    app.tick()
    menus = len(app.icon.menus)
    clock.advance(1)
    writer.open(listener(40000, "127.0.0.1", name="lsp"), alert=False)
    app.tick()
    assert len(app.icon.menus) == menus and "40000" not in menu_text(home)
    assert app._settle_at == clock.mono + 3.0
    clock.advance(1)
    writer.open(listener(8000, name="node", pid=1))  # exposed: at once
    app.tick()
    assert "8000 tcp" in menu_text(home) and "40000" not in menu_text(home)
    clock.advance(2)
    app.tick()
    assert "40000 tcp" in menu_text(home) and app._settle_at is None


def test_a_notifications_stop_button_asks_first_and_only_stop_now_stops(tray):
    from portbell.tray.menu import Action

    app, writer, clock, notifier = tray
    app.carry_out(Action("ask-stop", (4242, None, "python3")))
    assert notifier.sent[-1][0] == "Stop python3 (pid 4242)?"
    assert notifier.last["urgency"] == "critical"
    assert notifier.last["buttons"] == (("stop-now", "Stop now", Action("stop", (4242, None, "python3"))), ("cancel", "Cancel", None))
    assert notifier.on_action == app.do  # a click queues the button's action, as the menu does


def test_on_windows_the_daemon_the_tray_starts_is_detached_from_its_console_and_group():
    from portbell.tray import system

    seen = {}

    def popen(argv, **kw):
        seen.update(kw, argv=argv)
        return subprocess.Popen([sys.executable, "-c", "pass"])

    proc = system.Children().spawn(["portbell", "daemon"], os_name="nt", popen=popen)
    proc.wait()
    assert seen["creationflags"] == 0x00000008 | 0x00000200  # DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP
    assert "start_new_session" not in seen


def test_on_macos_with_the_daemons_launch_agent_the_tray_asks_launchd_to_start_it(tmp_path):
    from portbell.tray import system

    calls = []
    agents = tmp_path / "Library" / "LaunchAgents"
    agents.mkdir(parents=True)

    def run(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    class Recording(system.Children):
        def spawn(self, argv, **kw):
            self.spawned = argv
            return subprocess.Popen([sys.executable, "-c", "pass"])

    without = Recording()
    system.start_daemon(without, tmp_path / "d.log", platform="darwin", run=run, home=tmp_path).wait()
    assert without.spawned[-2:] == ["daemon", "--quiet"] and calls == []  # no agent: the tray starts its own
    (agents / "portbell.daemon.plist").write_text("<plist/>")
    with_agent = Recording()
    assert system.start_daemon(with_agent, tmp_path / "d.log", platform="darwin", run=run, home=tmp_path) is None
    assert calls == [["launchctl", "kickstart", f"gui/{os.getuid()}/portbell.daemon"]] and not hasattr(with_agent, "spawned")


def test_a_notifications_stop_button_stops_the_real_process_the_sampler_recorded(tray):
    """The whole path a click takes: a real process, its Owner as the sampler reads it (the exact
    start, from /proc on Linux), through the record into the alert's Stop button, its Stop now, and
    the guard: the process stops. A start one tick off (a reused pid) is refused and signals nothing."""
    from portbell.daemon.samplers._owners import OwnerReader

    app, writer, clock, notifier = tray
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        owner = OwnerReader().read(child.pid)
        assert owner is not None and owner.start is not None and owner.pid == child.pid
        writer.baseline(listener(5432, "127.0.0.1"))
        app.tick()
        clock.advance(1)
        writer.open(Listener(Transport.TCP, 4, "0.0.0.0", 8000, classify("0.0.0.0"), owners=(owner,)))
        app.tick()
        for _ in range(5):
            if notifier.sent:
                break
            clock.advance(1.1)
            app.tick()
        assert notifier.sent, "the alert never rang"
        (stop,) = [action for key, _, action in notifier.last["buttons"] if key == "stop"]
        app.carry_out(stop)  # the notification's Stop: asks first
        ((key, _, stop_now), _) = notifier.last["buttons"]
        assert key == "stop-now" and stop_now.args[0] == child.pid

        app.carry_out(Action("stop", (child.pid, owner.start - 1, owner.name)))  # as if the pid now named another process
        assert notifier.sent[-1][0] == "Not stopped" and "another process" in notifier.sent[-1][1]
        assert child.poll() is None

        app.carry_out(stop_now)
        assert notifier.sent[-1][0] == f"Stopping {owner.name}", notifier.sent[-1]
        code = child.wait(timeout=10)
        assert code == -15 or os.name != "posix"  # SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdin.close()
