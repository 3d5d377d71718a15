"""The tray's reach into the desktop: clipboard, opener, the daemon's start, the session.

Every program is run with an argument list, never through a shell. Programs
that outlive the call (an opener, the daemon) are started detached and reaped
later by `Children.reap()`, so none is left a zombie while the tray runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import webbrowser
from pathlib import Path

from ..daemon.errors import Unavailable

log = logging.getLogger("portbell.tray")

class Children:
    """Programs started detached, remembered so they are reaped once they exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], *, os_name: str = os.name, popen=subprocess.Popen, **kw) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        if os_name == "posix":
            kw.setdefault("start_new_session", True)
        elif os_name == "nt":  # no console, and not in the tray's group: it outlives the tray
            kw.setdefault("creationflags", DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP)
        proc = popen(argv, **kw)
        self.procs.append(proc)
        return proc

    def reap(self) -> None:
        self.procs = [p for p in self.procs if p.poll() is None]


# ------------------------------------------------------------------ waking on news


class FolderWatch:
    """A file descriptor that becomes readable when a file in a folder is written, created, moved in
    or deleted: Linux inotify, through ctypes. The daemon appends to the record's WAL file on every
    commit, so the tray sleeps until there is news instead of waking to poll."""

    MASK = 0x2 | 0x8 | 0x80 | 0x100 | 0x200  # IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_DELETE

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, folder: Path) -> FolderWatch | None:
        """None where inotify is not available (other systems, no libc symbol, no permission)."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                return None
            if libc.inotify_add_watch(fd, os.fsencode(str(folder)), cls.MASK) < 0:
                os.close(fd)
                return None
            return cls(fd)
        except (OSError, AttributeError):
            return None

    def fileno(self) -> int:
        return self.fd

    def drain(self) -> None:
        try:
            while os.read(self.fd, 65536):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        os.close(self.fd)


# ------------------------------------------------------------------ clipboard


def clipboard_commands(env=None) -> list[list[str]]:
    """The candidates, best first, for this platform and session."""
    env = os.environ if env is None else env
    if sys.platform == "darwin":
        return [["pbcopy"]]
    if sys.platform == "win32":
        return [["clip"]]
    out = []
    if env.get("WAYLAND_DISPLAY"):
        out.append(["wl-copy"])
    if env.get("DISPLAY"):
        out += [["xclip", "-selection", "clipboard", "-in"], ["xsel", "--clipboard", "--input"]]
    return out


def copy(text: str) -> str:
    """Put `text` on the clipboard; returns the program used, or raises Unavailable."""
    candidates = clipboard_commands()
    for argv in candidates:
        exe = shutil.which(argv[0])
        if exe is None:
            continue
        try:
            # xclip, xsel and wl-copy fork a child that serves the selection and keeps running:
            # give it no pipe to hold but stdin, which is closed once written.
            done = subprocess.run(
                [exe, *argv[1:]],
                input=text.encode(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=5,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as err:
            log.warning("%s failed: %s", argv[0], err)
            continue
        if done.returncode == 0:
            return argv[0]
        log.warning("%s exited with status %d", argv[0], done.returncode)
    names = " or ".join(a[0] for a in candidates) or "a clipboard program"
    raise Unavailable(f"no clipboard program works here: install {names}")


# ------------------------------------------------------------------ opening things


def opener_command(env=None) -> list[str] | None:
    if sys.platform == "darwin":
        return ["open"]
    if sys.platform == "win32":
        return None  # os.startfile
    exe = shutil.which("xdg-open")
    return [exe] if exe else None


def open_path(path: Path, children: Children) -> None:
    """Open a file with the desktop's default program; Unavailable when there is none."""
    if sys.platform == "win32":
        os.startfile(str(path))  # type: ignore[attr-defined]
        return
    argv = opener_command()
    if argv is None:
        raise Unavailable(f"no program to open files (install xdg-utils); the file is {path}")
    children.spawn([*argv, str(path)])


def open_url(url: str) -> None:
    if not webbrowser.open(url):
        raise Unavailable(f"no web browser found to open {url}")


# ------------------------------------------------------------------ the daemon


DETACHED_PROCESS = 0x00000008  # Windows process creation flags (subprocess has them only there)
CREATE_NEW_PROCESS_GROUP = 0x00000200


def daemon_argv() -> list[str]:
    return [sys.executable, "-m", "portbell.daemon", "daemon", "--quiet"]


def daemon_running(lock_file: Path) -> int | None:
    from ..daemon.service import InstanceLock

    return InstanceLock.holder(lock_file)


LAUNCH_AGENT = "portbell.daemon"  # packaging/macos/portbell.daemon.plist's Label


def start_daemon(children: Children, log_file: Path, *, platform: str = sys.platform, run=subprocess.run, home: Path | None = None) -> subprocess.Popen | None:
    """Start `portbell daemon --quiet` detached (its own session: it outlives the tray).

    On macOS with the daemon's LaunchAgent installed, launchd is asked to start it instead
    (`launchctl kickstart`): a second daemon of the tray's would make the agent's exit "already
    running" at every start, and launchd restart it forever.
    """
    agent = (home or Path.home()) / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT}.plist"
    if platform == "darwin" and agent.is_file() and hasattr(os, "getuid"):
        try:
            done = run(["launchctl", "kickstart", f"gui/{os.getuid()}/{LAUNCH_AGENT}"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode == 0:
            log.warning("asked launchd to start the portbell daemon (%s)", agent)
            return None
    log_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = children.spawn(daemon_argv(), stderr=fd, close_fds=True)
    finally:
        os.close(fd)
    log.warning("started the portbell daemon (pid %d); its messages go to %s", proc.pid, log_file)
    return proc
