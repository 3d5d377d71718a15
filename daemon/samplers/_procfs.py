"""Which process holds a socket inode, from /proc. Linux only.

The kernel tells anyone a socket's uid and inode (sock_diag) but not its
process: that takes reading /proc/<pid>/fd. Doing it for every socket on every
sample is what makes `psutil.net_connections()` cost milliseconds, so this
module does it only for inodes it has not seen, in the order most likely to
find them fast:

1. processes of the socket's uid, newest first, stopping when every sought
   inode is found; then processes of other uids (a socket bound by root and
   handed to a process that dropped privileges);
2. from the first holder found, its process-tree neighbours (parent and
   children, and through every further holder), because a socket shared by
   fork lives in one family: nginx's master and workers, a forked test child;
3. what is not found goes into a negative cache with exponential backoff (a
   kernel socket, or a process whose fds we may not read).

The process table (pid -> start time, ppid, uid) is refreshed only when a
process was created since the last look (the last pid in /proc/loadavg moved)
or when a periodic check is due, so an idle machine costs one pread per sample.
"""

from __future__ import annotations

import os

from ..model import value
from ..process import stat_fields

PROC = "/proc"


@value
class Proc:
    """One process as the table knows it."""

    pid: int
    start: int  # start time in clock ticks since boot
    ppid: int
    uid: int  # the owner of /proc/<pid>: its effective uid when it was read (see ProcessTable.restat)
    comm: str = ""  # the kernel's name for it (15 bytes at most), from the same read of stat


def _read_proc(root: str, pid: int) -> Proc | None:
    # One descriptor, read and fstat'ed: the stat file has its process's owner, as /proc/<pid>
    # has (both follow the kernel's dump owner), and skipping the buffered file and the second
    # path lookup makes a refresh of the table a third cheaper (what `portbell who` waits for).
    try:
        fd = os.open(f"{root}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 4096)
            uid = os.fstat(fd).st_uid
        finally:
            os.close(fd)
    except OSError:
        return None
    try:
        comm, ppid, start = stat_fields(data)
    except (IndexError, ValueError):
        return None
    return Proc(pid, start, ppid, uid, comm.decode("utf-8", "replace"))


DENIED = None  # what socket_inodes returns for a process whose descriptors we may not read


def socket_inodes(root: str, pid: int) -> frozenset[int] | None:
    """The socket inodes a process holds; empty when it is gone; DENIED when hidden from us."""
    base = f"{root}/{pid}/fd"
    try:
        names = os.listdir(base)
    except PermissionError:
        return DENIED
    except OSError:
        return frozenset()
    found = set()
    for name in names:
        try:
            link = os.readlink(f"{base}/{name}")
        except PermissionError:  # listable but not readable: hidden from us (seen for root, in containers)
            return DENIED
        except OSError:  # closed meanwhile, or the process exited
            continue
        if link.startswith("socket:["):
            found.add(int(link[8:-1]))
    return frozenset(found)


class ProcessTable:
    def __init__(self, root: str = PROC) -> None:
        self.root = root
        self.procs: dict[int, Proc] = {}
        self._children: dict[int, list[int]] | None = None
        self._order: list[Proc] | None = None
        self._loadavg = os.open(f"{root}/loadavg", os.O_RDONLY | os.O_CLOEXEC)
        self.last_pid = -1
        self.epoch = 0  # bumps at every refresh: what was derived from the table may be stale

    def close(self) -> None:
        os.close(self._loadavg)

    def newest_pid(self) -> int:
        """The last pid the kernel handed out: moves whenever a process or thread is created."""
        data = os.pread(self._loadavg, 128, 0)
        return int(data.rsplit(None, 1)[-1])

    def moved(self) -> bool:
        return self.newest_pid() != self.last_pid

    def refresh(self) -> tuple[set[int], set[int]]:
        """Re-list /proc; returns the pids gone (or reused) and the pids born since the last refresh."""
        newest = self.newest_pid()
        old_newest, self.last_pid = self.last_pid, newest
        listed = {int(n) for n in os.listdir(self.root) if n.isdigit()}
        gone = {pid for pid in self.procs if pid not in listed}
        born: set[int] = set()
        for pid in gone:
            del self.procs[pid]
        for pid in listed:
            have = self.procs.get(pid)
            if have is not None and not _handed_out_since(pid, old_newest, newest):
                continue
            proc = _read_proc(self.root, pid)
            if proc is None:
                self.procs.pop(pid, None)
                if have is not None:
                    gone.add(pid)
            else:
                if have is None or have.start != proc.start:
                    born.add(pid)
                    if have is not None:
                        gone.add(pid)  # the same pid, another process
                self.procs[pid] = proc
        self._children = None
        self._order = None
        self.epoch += 1
        return gone, born

    def restat(self, pid: int) -> Proc | None:
        """Read a process's uid again: a process keeps its pid and start time when it changes
        uid (a root shell that execs a program as another user), so a refresh never re-reads
        it. Returns the updated entry (None when it is gone)."""
        have = self.procs.get(pid)
        if have is None:
            return None
        try:
            uid = os.stat(f"{self.root}/{pid}").st_uid
        except OSError:
            return None
        if uid != have.uid:
            have = self.procs[pid] = Proc(have.pid, have.start, have.ppid, uid, have.comm)
            self._order = None
        return have

    def newest_first(self) -> list[Proc]:
        if self._order is None:
            self._order = sorted(self.procs.values(), key=lambda p: (p.start, p.pid), reverse=True)
        return self._order

    def children(self, pid: int) -> list[int]:
        if self._children is None:
            kids: dict[int, list[int]] = {}
            for proc in self.procs.values():
                kids.setdefault(proc.ppid, []).append(proc.pid)
            self._children = kids
        return self._children.get(pid, [])


class _Changed:
    """Iterates over `others`, yielding those whose uid, read again now, is `uid`."""

    def __init__(self, table: ProcessTable, uid: int, others: list[Proc]) -> None:
        self.table, self.uid, self.others = table, uid, others

    def __iter__(self):
        for proc in self.others:
            now = self.table.restat(proc.pid)
            if now is not None and now.uid == self.uid:
                yield now


def _handed_out_since(pid: int, old: int, new: int) -> bool:
    """Whether `pid` may have been given to a new process between two reads of the last pid."""
    if old < 0 or old == new:
        return False
    if new > old:
        return old < pid <= new
    return pid > old or pid <= new  # the pid counter wrapped


class Attributor:
    """Maps socket inodes to the pids holding them, caching what it found."""

    VERIFY_EVERY = 30  # samples between process-table refreshes when nothing asks for one
    MIN_REFRESH_GAP = 5  # samples between refreshes caused only by processes being created
    # Samples between full searches for a socket nobody is seen holding. Between
    # them, every newborn process is still checked for it (see _refresh), and the
    # cheap search (fd counts, see _fds) runs at each backoff step.
    MAX_BACKOFF = 1024
    # Samples during which a new process's fds are always read in full: starting up, it
    # opens and closes files, so its fd count says little (a socket can replace a .pyc).
    YOUNG = 30

    def __init__(self, root: str = PROC) -> None:
        self.root = root
        self.table = ProcessTable(root)
        self.holders: dict[int, frozenset[int]] = {}
        self._retry: dict[int, tuple[int, int]] = {}  # inode -> (sample number of next try, backoff)
        self._sample = 0
        self._last_refresh = -10**9
        self.generation = 0  # bumps whenever `holders` changes
        self.root_view = os.geteuid() == 0
        # pid -> (start, fd count, socket inodes) from the last read of its fd table
        self._fd_cache: dict[int, tuple[int, int, frozenset[int]]] = {}
        self.denied: set[int] = set()  # processes whose descriptors we were refused
        self._recent: dict[int, int] = {}  # pid -> sample when a socket it held went away
        self._young: dict[int, int] = {}  # pid -> sample when it was first seen

    def close(self) -> None:
        self.table.close()

    def attribute(self, wanted: dict[int, int]) -> dict[int, frozenset[int]]:
        """`wanted` maps each live socket inode to its uid; returns inode -> holder pids
        (empty for a socket no visible process holds)."""
        self._sample += 1
        for inode in [i for i in self.holders if i not in wanted]:
            for pid in self.holders.pop(inode):
                self._recent[pid] = self._sample  # it closed a socket: it may be opening another
            self.generation += 1
        if len(self._recent) > 256:
            self._recent = dict(sorted(self._recent.items(), key=lambda kv: kv[1])[-128:])
        for inode in [i for i in self._retry if i not in wanted]:
            del self._retry[inode]

        since = self._sample - self._last_refresh
        refreshed = False
        if since >= self.VERIFY_EVERY or (since >= self.MIN_REFRESH_GAP and self.table.moved()):
            self._refresh()
            refreshed = True

        due = {}
        for inode, uid in wanted.items():
            if inode in self.holders:
                continue
            retry_at, backoff = self._retry.get(inode, (0, 0))
            if retry_at <= self._sample:
                due[inode] = uid
        if due:
            if not refreshed:
                self._refresh()
            # A first search trusts fd counts; the second retry and those at the longest
            # backoff read every descriptor again (a process may have closed one fd and
            # opened the socket between two reads, keeping its count).
            thorough = any(self._retry.get(i, (0, 0))[1] in (2, self.MAX_BACKOFF) for i in due)
            self._find(due, thorough=thorough)
        return {inode: self.holders.get(inode, frozenset()) for inode in wanted}

    def _refresh(self) -> None:
        self._last_refresh = self._sample
        first = self.table.last_pid < 0
        gone, born = self.table.refresh()
        if first:
            # The processes found at start are not newborn: they have long since opened
            # their files, so their fd counts can be trusted like anyone's. (Counting them
            # young made every retry for a socket nobody can name re-read every descriptor
            # of every process during the first YOUNG samples.)
            born = set()
        for pid in gone:
            self._fd_cache.pop(pid, None)
            self._recent.pop(pid, None)
        self._young = {p: n for p, n in self._young.items() if self._sample - n < self.YOUNG and p not in gone}
        self._young.update((pid, self._sample) for pid in born)
        self.denied -= gone
        holding = self._holder_pids()
        changed: dict[int, frozenset[int]] = {}
        for inode, pids in self.holders.items():
            keep = pids - gone
            if keep != pids:
                changed[inode] = keep
        # Newborn processes: a holder's child inherits its sockets, and a socket
        # nobody was seen holding may belong to a process that just started.
        for pid in born:
            if not self._retry and self.table.procs[pid].ppid not in holding:
                continue
            for inode in self._fds(pid):
                pids = changed.get(inode, self.holders.get(inode))
                if pids is not None and pid not in pids:
                    changed[inode] = pids | {pid}
                elif pids is None and inode in self._retry:
                    changed[inode] = self._family(inode, pid)
                    del self._retry[inode]
        for inode, pids in changed.items():
            if pids:
                self.holders[inode] = pids
            else:  # every holder left, yet the socket lives: look again
                del self.holders[inode]
        if changed:
            self.generation += 1

    def _holder_pids(self) -> set[int]:
        return {pid for pids in self.holders.values() for pid in pids}

    def _fds(self, pid: int, thorough: bool = False) -> frozenset[int]:
        """A process's socket inodes. Linux 6.2+ reports a process's open fd count as the
        size of /proc/<pid>/fd: when it has not changed since the last read, the cached
        set is reused and the readlinks are skipped (`thorough` reads them anyway)."""
        proc = self.table.procs.get(pid)
        start = proc.start if proc else -1
        cached = self._fd_cache.get(pid)
        count = -1
        if not thorough and pid not in self._young:
            try:
                count = os.stat(f"{self.root}/{pid}/fd").st_size
            except OSError:
                count = -1
            if cached is not None and count > 0 and cached[0] == start and cached[1] == count:
                return cached[2]
        inodes = socket_inodes(self.root, pid)
        if inodes is DENIED:
            self.denied.add(pid)
            return frozenset()
        if count < 0:
            try:
                count = os.stat(f"{self.root}/{pid}/fd").st_size
            except OSError:
                count = 0
        self._fd_cache[pid] = (start, count, inodes)
        return inodes

    def _find(self, unseen: dict[int, int], thorough: bool = False) -> None:
        missing = set(unseen)
        uids = set(unseen.values())
        order = self.table.newest_first()
        procs = self.table.procs
        me = os.geteuid()
        # Likeliest first: processes that just closed a socket (a server re-opening one:
        # read in full, since closing one fd and opening another keeps the fd count),
        # then everyone newest first, the socket's uid before the others. (Processes
        # already listening are not tried first: a busy server's fd count always moves,
        # so it would be read in full for every new listener anywhere.)
        recent = [procs[p] for p in sorted(self._recent, key=self._recent.get, reverse=True) if p in procs]
        passes = [(recent, True), ([p for p in order if p.uid in uids], thorough)]
        if self.root_view:
            passes.append(([p for p in order if p.uid not in uids], thorough))
        elif me in uids:
            # Processes that were another user when the table read them and may be ours now
            # (a root shell exec'ing a program as us): their uid is read again, lazily, only
            # when a socket of ours is still missing after our own processes were searched.
            passes.append((_Changed(self.table, me, [p for p in order if p.uid != me]), thorough))
        fresh: set[int] = set()  # read in full during this search
        for candidates, full in passes:
            for proc in candidates:
                if not missing:
                    break
                if proc.pid in fresh or (not self.root_view and proc.uid != me):
                    continue
                hits = self._fds(proc.pid, full) & missing
                if full:
                    fresh.add(proc.pid)
                for inode in hits:
                    self.holders[inode] = self._family(inode, proc.pid)
                    missing.discard(inode)
        if len(missing) < len(unseen):
            self.generation += 1
        for inode in missing:
            _, backoff = self._retry.get(inode, (0, 0))
            backoff = min(max(1, backoff * 2), self.MAX_BACKOFF)
            self._retry[inode] = (self._sample + backoff, backoff)
        for inode in unseen:
            if inode not in missing:
                self._retry.pop(inode, None)

    def _family(self, inode: int, first: int) -> frozenset[int]:
        """Every holder of `inode` reachable from `first` through parents and children that hold it."""
        holders = {first}
        frontier = [first]
        seen = {first}
        procs = self.table.procs
        while frontier:
            pid = frontier.pop()
            parent = procs[pid].ppid if pid in procs else 0
            neighbours = [parent] if parent > 0 else []
            if pid != 1:  # pid 1's children are the whole machine
                neighbours += self.table.children(pid)
            for other in neighbours:
                if other in seen:
                    continue
                seen.add(other)
                if inode in self._fds(other):
                    holders.add(other)
                    frontier.append(other)
        return frozenset(holders)
