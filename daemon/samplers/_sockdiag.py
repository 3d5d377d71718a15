"""Linux sampler: netlink sock_diag dumps with the kernel's state filter.

Three dumps per sample. TCP uses the older TCPDIAG_GETSOCK request, which the
kernel still serves and which walks the listening table once for both families
(a walk costs ~10 us on a 16k-bucket table, most of a sample); UDP needs one
SOCK_DIAG_BY_FAMILY dump per family. Kernels without the older request get two
TCP dumps instead. The kernel filters by
state, so established connections never cross into user space: TCP asks for
LISTEN only, UDP for unconnected (TCP_CLOSE) sockets only. Each reply record
carries the socket's uid and inode, and for IPv6 listening and unconnected
sockets the IPV6_V6ONLY flag, and its cgroup id (INET_DIAG_CGROUP_ID). The
kernel (5.7+) adds the cgroup id to every reply unasked: the request's `ext`
bitmask is a u8 and has no bit for attribute 21, and none is needed. Owners come
from the inode cache in _procfs; units from the cgroup id, cached in _cgroup.

When no process can be seen holding a socket (another user's, without root):
1. the only process of the socket's uid in the socket's cgroup is its inferred
   owner (`via="cgroup"`), unless that process's descriptors were ours to read;
   several are counted (`Listener.candidates`), never guessed between;
2. else a forwarder (docker-proxy, pasta) of the socket's uid whose command line
   names exactly this socket's key is its owner (`via="cmdline"`).
Both are re-derived when the process table is refreshed, never on a steady sample.
A forwarder's listener carries where it forwards to; with the Engine API,
containers get their name, image and compose labels, and ports Docker publishes
with no socket here are listed (`Listener.socket` False).

Structures (linux/inet_diag.h, linux/sock_diag.h, linux/netlink.h):
  nlmsghdr          u32 len, u16 type, u16 flags, u32 seq, u32 pid
  inet_diag_req_v2  u8 family, u8 protocol, u8 ext, u8 pad, u32 states, inet_diag_sockid
  inet_diag_req     u8 family, u8 src_len, u8 dst_len, u8 ext, inet_diag_sockid, u32 states, u32 dbs
  inet_diag_sockid  be16 sport, be16 dport, be32 src[4], be32 dst[4], u32 if, u32 cookie[2]
  inet_diag_msg     u8 family, u8 state, u8 timer, u8 retrans, inet_diag_sockid,
                    u32 expires, u32 rqueue, u32 wqueue, u32 uid, u32 inode
followed by rtattrs (u16 len, u16 type), 4-byte aligned; INET_DIAG_CGROUP_ID (21)
holds a u64 (after an INET_DIAG_PAD attribute when it needs one to be aligned).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from datetime import datetime, timezone
from functools import lru_cache
from collections.abc import Callable

from ..errors import SampleError
from ..model import Listener, Owner, Snapshot, Transport, replace
from ..snapshot import merge
from ._cgroup import Cgroups
from ._engine_api import Engine
from ._enrich import enrich
from ._forwarders import claims, forwarder_name, is_watched
from ._owners import OwnerReader, listener_of
from ._procfs import PROC, Attributor

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18
NLM_F_REQUEST = 0x01
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_LISTEN = 10
TCP_CLOSE = 7
INET_DIAG_SKV6ONLY = 11
INET_DIAG_CGROUP_ID = 21

_NLMSGHDR = struct.Struct("=IHHII")
_REQ = struct.Struct("=BBBBI48s")
_REQ_COMPAT = struct.Struct("=BBBB48sII")
_MSG = struct.Struct("=BBBBHH16s16sI8xIIIII")  # ports are big-endian: ntohs
_RTA = struct.Struct("=HH")
_ERR = struct.Struct("=i")
_U64 = struct.Struct("=Q")

_FLAGS = NLM_F_REQUEST | NLM_F_DUMP
_SEQ = 0x70626C6C  # our requests' sequence number: the kernel echoes it in every reply message


def _request(family: int, protocol: int, states: int) -> bytes:
    body = _REQ.pack(family, protocol, 0, 0, states, bytes(48))
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, _FLAGS, _SEQ, 0) + body


def _request_compat(states: int) -> bytes:
    body = _REQ_COMPAT.pack(socket.AF_UNSPEC, 0, 0, 0, bytes(48), states, 0)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), TCPDIAG_GETSOCK, _FLAGS, _SEQ, 0) + body


_TCP_BOTH = ((Transport.TCP, _request_compat(1 << TCP_LISTEN)),)
_TCP_EACH = (
    (Transport.TCP, _request(socket.AF_INET, socket.IPPROTO_TCP, 1 << TCP_LISTEN)),
    (Transport.TCP, _request(socket.AF_INET6, socket.IPPROTO_TCP, 1 << TCP_LISTEN)),
)
_UDP_EACH = (
    (Transport.UDP, _request(socket.AF_INET, socket.IPPROTO_UDP, 1 << TCP_CLOSE)),
    (Transport.UDP, _request(socket.AF_INET6, socket.IPPROTO_UDP, 1 << TCP_CLOSE)),
)

# one raw record: (transport, family, address, port, v6only, uid, inode, cgroup id or None)
Raw = tuple[Transport, int, str, int, "bool | None", int, int, "int | None"]


def parse(transport: Transport, data: memoryview, out: list[Raw]) -> bool:
    """Append the records in one netlink buffer to `out`; True when the dump is done."""
    offset, end = 0, len(data)
    while offset + _NLMSGHDR.size <= end:
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            raise SampleError(f"malformed netlink message (length {length})", sampler="sockdiag")
        body = offset + _NLMSGHDR.size
        if kind == NLMSG_DONE:
            return True
        if kind == NLMSG_ERROR:
            (code,) = _ERR.unpack_from(data, body)
            raise SampleError(f"sock_diag dump failed: {os.strerror(-code)}", sampler="sockdiag")
        if kind == SOCK_DIAG_BY_FAMILY or kind == TCPDIAG_GETSOCK:
            family, _state, _t, _r, sport, _dport, src, _dst, ifindex, _e, _rq, _wq, uid, inode = _MSG.unpack_from(data, body)
            fam, address = _address(family, src, ifindex)
            v6only = cgroup = None
            attr, stop = body + _MSG.size, offset + length
            while attr + _RTA.size <= stop:
                alen, atype = _RTA.unpack_from(data, attr)
                if alen < _RTA.size:
                    break
                if atype == INET_DIAG_SKV6ONLY:
                    v6only = bool(data[attr + _RTA.size])
                elif atype == INET_DIAG_CGROUP_ID and alen >= _RTA.size + 8:
                    (cgroup,) = _U64.unpack_from(data, attr + _RTA.size)
                attr += (alen + 3) & ~3
            out.append((transport, fam, address, socket.ntohs(sport), v6only, uid, inode, cgroup))
        offset += (length + 3) & ~3
    return False


_DONE_TAIL = struct.Struct("=IHHI")


@lru_cache(maxsize=1024)
def _address(family: int, src: bytes, ifindex: int) -> tuple[int, str]:
    """(4 or 6, the address as text), scoped for link-local IPv6. Few distinct values: cached."""
    if family == socket.AF_INET:
        return 4, socket.inet_ntop(socket.AF_INET, src[:4])
    address = socket.inet_ntop(socket.AF_INET6, src)
    if ifindex and address.startswith("fe80:"):
        address = f"{address}%{_ifname(ifindex)}"
    return 6, address


def _ends_dump(chunk: bytes) -> bool:
    """Whether a buffer ends the dump: its last message is NLMSG_DONE (20 bytes, with our
    sequence number), or its first is an error. Looks at two headers, not every record."""
    if len(chunk) >= 20:
        length, kind, _flags, seq = _DONE_TAIL.unpack_from(chunk, len(chunk) - 20)
        if length == 20 and kind == NLMSG_DONE and seq == _SEQ:
            return True
    return len(chunk) < _NLMSGHDR.size or _NLMSGHDR.unpack_from(chunk, 0)[1] == NLMSG_ERROR


def _ifname(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return str(index)


class SockDiagSampler:
    name = "sockdiag"

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        proc_root: str = PROC,
        engine: Engine | None = None,
        cgroups: Cgroups | None = None,
    ) -> None:
        try:
            self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG)
        except (OSError, AttributeError) as err:
            raise SampleError(f"netlink sock_diag is unavailable: {err}", sampler=self.name) from err
        self._buf = bytearray(1 << 16)
        self._queries = _TCP_BOTH + _UDP_EACH
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._attributor = Attributor(proc_root)
        self._owners = OwnerReader()
        self._cache_key: tuple | None = None
        self._cache: dict = {}
        self._parsed: dict[bytes, tuple[list[bytes], list[Raw]]] = {}  # request -> (reply buffers, records)
        self._built: dict[tuple, Listener] = {}  # (raw record, holders) -> listener
        self._owner_memo: dict[tuple[int, int], Owner | None] = {}  # (pid, start ticks) -> owner
        self._cgroups = cgroups if cgroups is not None else Cgroups(proc_root=proc_root)
        self._engine = engine if engine is not None else Engine()
        self._epoch = -1  # the process table's epoch the inferences below were made at
        self._inferred: dict[tuple[int, int], tuple[int, ...] | int | None] = {}  # (cgroup id, uid) -> candidates
        self._forwarders: dict[tuple[int, int], tuple[str, tuple[str, ...], int | None]] = {}  # (pid, start) -> (name, cmdline, uid)
        self._claims: dict[tuple, int] = {}  # (transport, address or None, port) -> forwarder pid
        self._infer_gen = 0

    @property
    def notes(self) -> list[str]:
        """Sentences saying what this view is missing and why (for `portbell status`)."""
        return [n for n in (self._cgroups.missing, self._engine.missing) if n]

    def close(self) -> None:
        self._sock.close()
        self._attributor.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def dump(self) -> list[Raw]:
        try:
            return self._dump(self._queries)
        except SampleError:
            if self._queries[0] is not _TCP_BOTH[0]:
                raise
            # a kernel without TCPDIAG_GETSOCK: one dump per family from now on
            self._queries = _TCP_EACH + _UDP_EACH
            return self._dump(self._queries)

    def _dump(self, queries) -> list[Raw]:
        raws: list[Raw] = []
        for transport, request in queries:
            try:
                self._sock.send(request)
                chunks = []
                while True:  # read the whole reply; it ends with NLMSG_DONE (or an error)
                    n = self._sock.recv_into(self._buf)
                    chunks.append(bytes(self._buf[:n]))
                    if _ends_dump(chunks[-1]):
                        break
            except OSError as err:
                raise SampleError(f"sock_diag dump failed: {err}", sampler=self.name) from err
            cached = self._parsed.get(request)
            if cached is not None and cached[0] == chunks:
                records = cached[1]  # the same reply as last time (the common case): the same records
            else:
                records = []
                for chunk in chunks:
                    parse(transport, memoryview(chunk), records)
                self._parsed[request] = (chunks, records)
            raws.extend(records)
        return raws

    def sample(self, ports: frozenset[int] | None = None) -> Snapshot:
        """Every listener; with `ports`, only those on these ports: the other sockets' owners are
        never searched for (`portbell who`). The dump itself is the same either way."""
        started = time.perf_counter()
        raws = self.dump()
        if ports is not None:
            raws = [raw for raw in raws if raw[3] in ports]
        holders = self._attributor.attribute({raw[6]: raw[5] for raw in raws})
        if self._attributor.table.epoch != self._epoch:
            self._epoch = self._attributor.table.epoch
            self._reconsider(raws, holders)
        key = (tuple(raws), self._attributor.generation, self._infer_gen, self._engine.generation)
        if key != self._cache_key:
            self._cache_key, self._cache = key, self._rebuild(raws, holders)
        return Snapshot(
            self._cache,
            self._clock(),
            complete=self._complete(raws),
            sampler=self.name,
            duration_s=time.perf_counter() - started,
        )

    def _reconsider(self, raws: list[Raw], holders: dict[int, frozenset[int]]) -> None:
        """After a refresh of the process table: the forwarders, the Engine API (only if the
        container processes changed), and the candidates for sockets nobody is seen holding."""
        table = self._attributor.table
        watched: dict[tuple[int, int], tuple[str, tuple[str, ...], int | None]] = {}
        for proc in table.procs.values():
            if proc.comm and is_watched(proc.comm):
                ident = (proc.pid, proc.start)
                watched[ident] = self._forwarders.get(ident) or self._describe(proc.pid, proc.comm)
        self._forwarders = watched
        claimed: dict[tuple, int] = {}
        for (pid, _start), (name, cmdline, _uid) in watched.items():
            if name:
                for claim in claims(name, cmdline):
                    claimed[claim] = pid
        self._engine.refresh(frozenset(watched))
        inferred: dict[tuple[int, int], tuple[int, ...] | int | None] = {}
        for raw in raws:
            if raw[7] is not None and not holders[raw[6]] and (raw[7], raw[5]) not in inferred:
                self._cgroups.path(raw[7])
                inferred[(raw[7], raw[5])] = self._cgroups.candidates(raw[7], raw[5])
        if inferred != self._inferred or claimed != self._claims:
            self._infer_gen += 1
        self._inferred, self._claims = inferred, claimed

    def _describe(self, pid: int, comm: str) -> tuple[str, tuple[str, ...], int | None]:
        """(forwarder name or "", command line, real uid) of a watched process, read once."""
        try:
            with open(f"{self._attributor.root}/{pid}/cmdline", "rb") as f:
                cmdline = tuple(a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a)
            with open(f"{self._attributor.root}/{pid}/status", "rb") as f:
                uid = next((int(line.split()[1]) for line in f if line.startswith(b"Uid:")), None)
        except (OSError, ValueError, IndexError):
            return "", (), None
        return forwarder_name(comm, cmdline) or "", cmdline, uid

    def _rebuild(self, raws: list[Raw], holders: dict[int, frozenset[int]]) -> dict:
        """Only records not seen with the same holders (and inference) last time are turned into listeners."""
        built: dict[tuple, Listener] = {}
        for raw in raws:
            pids = holders[raw[6]]
            ident = (raw, pids, None if pids else self._inference(raw))
            li = self._built.get(ident)
            built[ident] = li if li is not None else self._listener(raw, pids, ident[2])
        self._built = built
        live = {pid for _, pids, inferred in built for pid in pids} | {i[0] for _, _, i in built if i and i[0]}
        self._owner_memo = {k: v for k, v in self._owner_memo.items() if k[0] in live}
        return enrich(merge(built.values()), self._engine)

    def _inference(self, raw: Raw) -> tuple[int | None, str | None, int | None]:
        """(inferred owner pid or None, how: "cgroup" | "cmdline", the count of candidates or None)."""
        transport, _family, address, port, _v6, uid, _inode, cgroup = raw
        cands = self._inferred.get((cgroup, uid)) if cgroup is not None else None
        count = len(cands) if isinstance(cands, tuple) else cands
        if isinstance(cands, tuple) and len(cands) == 1 and self._hidden(cands[0]):
            return cands[0], "cgroup", 1
        pid = self._claims.get((transport, address, port), self._claims.get((transport, None, port)))
        if pid is not None and self._hidden(pid):
            name, _cmd, fuid = self._forwarders.get((pid, self._start(pid)), ("", (), None))
            if fuid == uid:
                return pid, "cmdline", count
        return None, None, count

    def _hidden(self, pid: int) -> bool:
        """Whether a process's descriptors were not ours to read (so it may hold what we could not see)."""
        proc = self._attributor.table.procs.get(pid)
        if proc is None:
            return False
        if pid in self._attributor.denied:
            return True
        return not self._attributor.root_view and proc.uid != os.geteuid()

    def _start(self, pid: int) -> int:
        proc = self._attributor.table.procs.get(pid)
        return proc.start if proc else -1

    def _owner(self, pid: int, via: str = "fd") -> Owner | None:
        ident = (pid, self._start(pid))
        if ident not in self._owner_memo or ident[1] < 0:
            self._owner_memo[ident] = self._owners.read(pid)
        owner = self._owner_memo[ident]
        return replace(owner, via=via) if owner is not None and owner.via != via else owner

    def _listener(self, raw: Raw, pids: frozenset[int], inferred) -> Listener:
        transport, family, address, port, v6only, uid, _inode, cgroup = raw
        owners = [o for o in map(self._owner, pids) if o is not None]
        candidates = None
        if not owners and inferred is not None:
            pid, via, candidates = inferred
            owner = self._owner(pid, via) if pid is not None else None
            if owner is not None:
                owners = [owner]
        return listener_of(
            transport, family, address, port, owners, uid=uid, v6only=v6only, unit=self._cgroups.unit(cgroup), candidates=candidates,
        )

    def _complete(self, raws: list[Raw]) -> bool:
        """Whether every socket's process was ours to look for: root sees all, a user sees its
        own sockets. A process that hides its descriptors even from root (some pid 1s, some
        containers) is a fact about that process, not about the whole view: the view stays
        complete, and what that process holds shows as an unseen owner (PRODUCT.md, baseline)."""
        if self._attributor.root_view:
            return True
        me = os.geteuid()
        return all(raw[5] == me for raw in raws)
