"""A socket's unit, from its cgroup id. Linux only.

sock_diag reports every socket's cgroup id (INET_DIAG_CGROUP_ID) to anyone. On
cgroup v2 that id is the inode number of the cgroup's directory under the
unified hierarchy (mounted on its own, or at /sys/fs/cgroup/unified on a hybrid
system: found in /proc/self/mountinfo), and a directory listing carries inode
numbers (getdents), so one walk of the hierarchy maps every id to its path
without a stat. The map is cached; the hierarchy is walked again only when an
id not seen before shows up, and an id a walk could not find (a cgroup removed
while its socket lives, or outside this cgroup namespace) waits, with a backoff,
before it may cause another walk. A steady sample never touches the hierarchy.

`unit_of(path)` names the unit from the path alone (pure): systemd's naming
(`cups.service`, `session-2.scope`, `app-gnome-firefox-1234.scope`,
`user@1000.service/app.slice/...`, `snap.x.y-<uuid>.scope`,
`app-flatpak-<id>-<n>.scope`) and the container runtimes' (`docker-<id>.scope`,
`/docker/<id>`, `libpod-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
`/kubepods/.../pod<uid>/<id>`, `nerdctl-<id>.scope`). A path that follows no
known scheme is still a unit, of kind `cgroup`, named by its path; the root
cgroup is no unit (None).

`candidates(id, uid)` lists the processes of a uid in a cgroup (cgroup.procs and
/proc/<pid>/status are readable by everyone): the sampler names the only one as an
inferred owner and counts several, never guessing between them.
"""

from __future__ import annotations

import os
import re

from ..model import Container, Unit, UnitKind

MOUNTINFO = "/proc/self/mountinfo"
MAX_CANDIDATES = 64  # a cgroup with more processes is counted, not examined


def cgroup2_mount(mountinfo: str = MOUNTINFO) -> tuple[str, str] | None:
    """(mount point, the hierarchy path it shows) of the cgroup v2 mount, or None.

    The second field is the mount's root inside the hierarchy: `/` normally, a
    container's own cgroup inside a cgroup namespace."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep or right.split(" ", 1)[0] != "cgroup2":
            continue
        fields = left.split()
        if len(fields) >= 5:
            return _unescape_mount(fields[4]), _unescape_mount(fields[3])
    return None


def _unescape_mount(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def systemd_unescape(text: str) -> str:
    r"""`\x2d` -> `-`: systemd escapes unit name characters this way."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTAINER_SCOPE = re.compile(r"(docker|libpod|cri-containerd|crio|nerdctl)-([0-9a-f]{64})\.scope")
_RUNTIME = {"docker": "docker", "libpod": "podman", "cri-containerd": "containerd", "crio": "cri-o", "nerdctl": "containerd"}
_USER_MANAGER = re.compile(r"user@(\d+)\.service")
_APP = re.compile(r"app-(.+?)(?:-[0-9a-f]+\.scope|@[^.]*\.service|\.service|\.scope|\.slice)")
_SNAP = re.compile(r"snap\.([^.]+)\.([^.]+?)(?:-[0-9a-f-]+)?\.(?:scope|service)")
_UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap", ".target")
_LAUNCHERS = ("gnome", "kde", "xfce", "lxqt", "cinnamon", "mate", "budgie", "sway", "hyprland", "dbus", "systemd", "flatpak", "snap")


def unit_of(path: str) -> Unit | None:
    """The unit a cgroup path names (see the module docstring); None for the root cgroup."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return None
    container = _container(parts)
    if container is not None:
        return Unit(UnitKind.CONTAINER, container.short_id, path, container=container)
    user_uid = None
    for part in parts:
        m = _USER_MANAGER.fullmatch(part)
        if m:
            user_uid = int(m.group(1))
    for i in range(len(parts) - 1, -1, -1):  # the deepest unit names it
        part = parts[i]
        if not part.endswith(_UNIT_SUFFIXES):
            continue
        if _USER_MANAGER.fullmatch(part) or (part == "init.scope" and i > 0 and _USER_MANAGER.fullmatch(parts[i - 1])):
            part = parts[i - 1] if part == "init.scope" else part
            # the user's systemd itself (its init.scope), or a process sitting directly in it
            return Unit(UnitKind.USER_SERVICE, part, path, uid=user_uid)
        app = _app(part)
        if app is not None:
            return Unit(app[0], app[1], path, uid=user_uid)
        if part.startswith("session-") and part.endswith(".scope"):
            return Unit(UnitKind.SESSION, systemd_unescape(part), path, uid=user_uid)
        if user_uid is not None:
            return Unit(UnitKind.USER_SERVICE, systemd_unescape(part), path, uid=user_uid)
        kind = UnitKind.SCOPE if part.endswith(".scope") else UnitKind.SERVICE
        return Unit(kind, systemd_unescape(part), path)
    if parts[-1].endswith(".slice"):
        app = _app(parts[-1])
        if app is not None:
            return Unit(app[0], app[1], path, uid=user_uid)
        return Unit(UnitKind.SLICE, systemd_unescape(parts[-1]), path, uid=user_uid)
    return Unit(UnitKind.CGROUP, path, path)


def _container(parts: list[str]) -> Container | None:
    for i in range(len(parts) - 1, -1, -1):
        m = _CONTAINER_SCOPE.fullmatch(parts[i])
        if m:
            return Container(m.group(2), _RUNTIME[m.group(1)])
        if _HEX64.fullmatch(parts[i]) and i > 0:  # cgroupfs drivers: /docker/<id>, /kubepods/.../pod<uid>/<id>
            top = parts[0]
            runtime = "docker" if top == "docker" else "kubernetes" if top.startswith("kubepods") else "containerd" if top == "default" else None
            return Container(parts[i], runtime)
    return None


def _app(part: str) -> tuple[UnitKind, str] | None:
    """app[-<launcher>]-<id>[-<random>].scope, app[-<launcher>]-<id>[@<random>].service,
    snap.<name>.<app>[-<uuid>].scope: (kind, the application's name)."""
    m = _SNAP.fullmatch(part)
    if m:
        return UnitKind.SNAP, m.group(1)
    if not part.startswith("app-") or part in ("app.slice",):
        return None
    m = _APP.fullmatch(part)
    if not m:
        return None
    words = m.group(1).split("-")  # dashes inside an application id are escaped as \x2d
    launcher = words[0] if len(words) > 1 and words[0] in _LAUNCHERS else None
    ident = systemd_unescape("-".join(words[1:] if launcher else words))
    if not ident:
        return None
    return (UnitKind.FLATPAK if launcher == "flatpak" else UnitKind.SNAP if launcher == "snap" else UnitKind.APP), ident


def status_uids(root: str, pid: int) -> tuple[int, ...] | None:
    """(real, effective) uid from /proc/<pid>/status, readable by anyone; None when gone."""
    try:
        with open(f"{root}/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    fields = line.split()
                    return int(fields[1]), int(fields[2])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Cgroups:
    """cgroup id -> path and unit, cached; candidate processes in a cgroup."""

    MAX_BACKOFF = 256  # lookups between walks caused by one id no walk could find

    def __init__(self, mountinfo: str = MOUNTINFO, proc_root: str = "/proc") -> None:
        mount = cgroup2_mount(mountinfo)
        self.mount, self.base = mount if mount else (None, "/")
        self.proc_root = proc_root
        self.paths: dict[int, str] = {}  # cgroup id -> path inside the hierarchy
        self._units: dict[int, Unit | None] = {}
        self._missing: dict[int, tuple[int, int]] = {}  # id -> (lookup number of the next walk, backoff)
        self._lookups = 0
        self.walks = 0

    @property
    def available(self) -> bool:
        return self.mount is not None

    @property
    def missing(self) -> str | None:
        """A sentence saying why there are no units, or None."""
        if self.mount is None:
            return "no cgroup v2 hierarchy is mounted here, so listeners have no unit (systemd service, app, container)"
        return None

    def unit(self, cgroup_id: int | None) -> Unit | None:
        if cgroup_id is None or self.mount is None:
            return None
        try:
            return self._units[cgroup_id]
        except KeyError:
            pass
        path = self.path(cgroup_id)
        if path is None:
            return None
        unit = self._units[cgroup_id] = unit_of(path)
        return unit

    def path(self, cgroup_id: int) -> str | None:
        path = self.paths.get(cgroup_id)
        if path is not None or self.mount is None:
            return path
        self._lookups += 1
        retry_at, backoff = self._missing.get(cgroup_id, (0, 0))
        if retry_at > self._lookups:
            return None
        self._walk()
        path = self.paths.get(cgroup_id)
        if path is None:
            backoff = min(max(1, backoff * 2), self.MAX_BACKOFF)
            self._missing[cgroup_id] = (self._lookups + backoff, backoff)
        else:
            self._missing.pop(cgroup_id, None)
        return path

    def _walk(self) -> None:
        """Every cgroup directory's inode (its id) -> its path; ids of removed cgroups are dropped."""
        self.walks += 1
        paths: dict[int, str] = {}
        try:
            paths[os.stat(self.mount).st_ino] = self.base
        except OSError:
            return
        stack = [(self.mount, self.base)]
        while stack:
            directory, rel = stack.pop()
            try:
                with os.scandir(directory) as it:
                    for entry in it:
                        try:
                            if not entry.is_dir(follow_symlinks=False):
                                continue
                        except OSError:
                            continue
                        sub = f"{rel.rstrip('/')}/{entry.name}"
                        paths[entry.inode()] = sub
                        stack.append((entry.path, sub))
            except OSError:  # removed meanwhile, or not ours to list
                continue
        for gone in self.paths.keys() - paths.keys():
            self._units.pop(gone, None)
        self.paths = paths

    def directory(self, cgroup_id: int) -> str | None:
        path = self.paths.get(cgroup_id)
        if path is None or self.mount is None:
            return None
        inside = path[len(self.base):] if self.base != "/" and path.startswith(self.base) else path
        return self.mount.rstrip("/") + "/" + inside.strip("/") if inside.strip("/") else self.mount

    def pids(self, cgroup_id: int) -> list[int] | None:
        """The processes in one cgroup (not its children), or None when it cannot be read."""
        directory = self.directory(cgroup_id)
        if directory is None:
            return None
        try:
            with open(f"{directory}/cgroup.procs", "rb") as f:
                return [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            return None

    def candidates(self, cgroup_id: int, uid: int) -> tuple[int, ...] | int | None:
        """The pids of the processes whose real or effective uid is `uid` in the cgroup; an int
        (the number of processes, an upper bound) when there are too many to examine; None
        when the cgroup cannot be read. The root cgroup is never examined: it holds the
        machine's kernel threads and, on a system without systemd, every process."""
        if self.paths.get(cgroup_id) in (None, "/"):
            return None
        pids = self.pids(cgroup_id)
        if pids is None:
            return None
        if len(pids) > MAX_CANDIDATES:
            return len(pids)
        out = []
        for pid in pids:
            uids = status_uids(self.proc_root, pid)
            if uids is not None and uid in uids:
                out.append(pid)
        return tuple(out)
