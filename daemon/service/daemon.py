"""The daemon: one poll samples, diffs against what is committed, decides, commits, then hands the
records to the sinks; around it the heartbeat, reloads, retention and systemd's watchdog."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from .. import __version__
from ..config import load
from ..errors import ConfigError, StoreError
from ..model import Event, EventKind, Snapshot
from ..rules import Pending, Policy, Verdict
from ..sinks import Dispatcher, build, validate
from .monitor import Monitor, Poll
from .notify import sd_notify

log = logging.getLogger("portbell")

HEARTBEAT_S = 15.0  # how often the record learns the daemon is alive when nothing happens
CONFIG_CHECK_S = 5.0  # how often the config file's stamp is looked at (SIGHUP reloads at once)
PRUNE_S = 3600.0
MAX_UNWRITTEN = 100_000  # events kept in memory while the record cannot be written
# What using the record can raise (the Store says StoreError; sqlite3's own from a store that does not):
# the daemon logs it and samples on.
RECORD_FAILS = (StoreError, sqlite3.Error, OSError)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Daemon:
    """One poll: sample, diff against what is committed, decide, commit, then hand to the sinks."""

    def __init__(self, *, store, sampler, config, config_path: Path | None, out: Callable | None = None, clock=utcnow) -> None:
        self.store = store
        self.sampler = sampler
        self.config = config
        self.config_path = config_path
        self.out = out
        self.clock = clock
        self._unwritten: list[tuple] = []  # polls the record could not take yet (a full disk), in order
        self.write_error: str | None = None
        self.note: Callable[[str], None] = lambda text: None  # where `status` learns of failing writes (the lock)
        self._newest = store.last_id()
        self._cursors: dict[str, int] = {}
        self.dispatcher = self._dispatcher(config.sinks)
        self.monitor = Monitor(sampler)
        self.committed = store.recorded()  # what the record says is listening now
        self.monitor.current = self.committed
        self.first_poll = True
        self.started_at = clock()
        self.reload_requested = False
        self._config_stamp = _stamp(config_path)
        self._config_check_at = time.monotonic() + CONFIG_CHECK_S
        self._data_version = store.data_version()
        self._decisions = store.decisions()
        self._read_errors: dict[str, str] = {}  # what the record could not tell, and why (logged once)
        self._heartbeat_at = 0.0
        self._prune_at = 0.0
        self.last_sample_at: datetime | None = None
        self.write_failing_since: datetime | None = None
        self.watchdog_s = int(os.environ.get("WATCHDOG_USEC", "0")) / 2e6
        self._watchdog_at = 0.0

    # -------------------------------------------------------------- one poll

    def step(self) -> list:
        """Returns the records committed by this poll."""
        self._maybe_reload()
        poll = self.monitor.poll()
        records: list = []
        snap = poll.snapshot
        if snap is not None:
            self.last_sample_at = snap.taken_at
            self._unwritten.append(self._decide(poll))
            records = self._write()
            self.first_poll = False
            if self.out is not None:
                for rec in records:
                    self.out(rec)
        if records:
            self._newest = records[-1].id
        self.dispatcher.dispatch(records, snap)  # also on a failed sample: a sink behind reads on
        self._note_cursors()
        self._housekeeping(snap)
        return records

    def _decide(self, poll: Poll) -> tuple:
        """One poll's events with their verdicts: (snapshot, [(event, verdict)], baseline, found_at_start, refresh)."""
        snap = poll.snapshot
        if poll.baseline:  # the very first start: a silent baseline of opened events
            verdict = Verdict(False, "baseline: listening when portbell first started")
            return (snap, [(Event(EventKind.OPENED, snap.taken_at, li), verdict) for li in snap.sorted()], True, False, False)
        decided = []
        if poll.events:
            self._refresh_decisions()
            now, policy = self.clock(), self.policy
            memory = Pending(Remembered(self.store, self._unreadable))  # the record's memory, plus what is decided but not yet in it
            for _, waiting, *_ in self._unwritten:
                for event, _ in waiting:
                    memory.note(event)
            for event in poll.events:
                decided.append((event, policy.decide(event, memory, now)))
                memory.note(event)
        return (snap, decided, False, self.first_poll, poll.refresh)

    def _unreadable(self, what: str, err: Exception | None, meanwhile: str = "") -> None:
        """Log a read of the record that fails, once for each new reason, and when it works again."""
        if err is None:
            if self._read_errors.pop(what, None) is not None:
                log.warning("%s can be read again", what)
            return
        if self._read_errors.get(what) != str(err):
            log.error("cannot read %s: %s; %s", what, err, meanwhile)
        self._read_errors[what] = str(err)

    def _write(self) -> list:
        """Commit every poll not yet in the record, oldest first, in one transaction.

        When the record cannot be written (a full or read-only disk), the polls wait here, in
        order, and are committed when it can: a listener that opened and closed meanwhile is
        still recorded. Bounded: past MAX_UNWRITTEN events they are given up for the net
        difference between the record and the machine (diffed at the next poll), and that is
        logged."""
        polls = [p for p in self._unwritten if p[1] or p[2] or p[4]]
        if not polls:  # nothing new: nothing to write (a steady poll costs no transaction)
            self.committed = self._unwritten[-1][0]
            self._unwritten.clear()
            return []
        try:
            records = self.store.record_polls(polls)
        except RECORD_FAILS as err:
            if self.write_error is None:
                log.error("cannot write the record (%s); keeping what it should hold and retrying every poll", err)
            self.write_failing_since = self.write_failing_since or self.clock()
            if self.write_error != str(err):
                self.note(f"writes failing since {self.write_failing_since.isoformat()}: {err}")
            self.write_error = str(err)
            if sum(len(p[1]) for p in self._unwritten) > MAX_UNWRITTEN:
                log.error("more than %d events wait for the record: keeping only the net difference", MAX_UNWRITTEN)
                self._unwritten.clear()
                self.monitor.current = self.committed  # the next poll diffs against what is recorded
            return []
        if self.write_error is not None:
            log.warning("the record can be written again: committed %d events that waited", len(records))
            self.write_error = self.write_failing_since = None
            self.note("")
        self.committed = self._unwritten[-1][0]
        self._unwritten.clear()
        return records

    # -------------------------------------------------------------- sinks, each from its cursor

    def _dispatcher(self, tables) -> Dispatcher:
        """Sinks read the record from their own cursor (kept in the store as `sink:<name>`): what a
        crash, a clean stop or a failing sink kept from one is read again at the next start. A
        sink new to this record starts at its newest record (it does not get the whole history)."""
        sinks = build(tables)
        cursors = self.store.cursors()
        legacy = self.store.meta("sinks_delivered")  # before cursors were per sink: one marker for all
        if legacy and legacy.isdigit() and not cursors:  # only until the first per-sink cursors are kept
            cursors = {s.name: int(legacy) for s in sinks}
        owed = [s.name for s in sinks if cursors.get(s.name, self._newest) < self._newest]
        if owed:
            log.warning("sinks %s are behind the record: handing them what they did not get before the last stop", ", ".join(owed))
        self._cursors = {s.name: cursors.get(s.name, self._newest) for s in sinks}
        if any(s.name not in cursors for s in sinks):  # a new sink's cursor is kept from its first poll
            try:
                self.store.set_cursors(self._cursors)
            except RECORD_FAILS as err:
                log.warning("cannot note the sinks' cursors: %s", err)
        return Dispatcher(sinks, source=lambda after, limit: self.store.events(after_id=after, first=limit), cursors=self._cursors, newest=self._newest)

    def _note_cursors(self) -> None:
        cursors = self.dispatcher.cursors()
        if cursors != self._cursors:
            try:
                self.store.set_cursors(cursors)
                self._cursors = cursors
            except RECORD_FAILS as err:
                log.debug("cannot note the sinks' cursors: %s", err)

    # -------------------------------------------------------------- upkeep

    def _housekeeping(self, snap: Snapshot | None) -> None:
        self.watchdog()
        mono = time.monotonic()
        if mono >= self._heartbeat_at:
            self._heartbeat(snap)
            self._heartbeat_at = mono + HEARTBEAT_S
        if mono >= self._prune_at:
            self._prune_at = mono + PRUNE_S
            try:
                older = self.clock() - timedelta(days=self.config.retention_days)
                removed = self.store.prune(older_than=older, max_rows=self.config.retention_rows)
                if removed:
                    log.info("pruned %d old events", removed)
            except RECORD_FAILS as err:
                log.warning("cannot prune the history: %s", err)

    def watchdog(self) -> None:
        """Ping systemd's watchdog when one is armed (WATCHDOG_USEC) and half its period passed."""
        mono = time.monotonic()
        if self.watchdog_s and mono >= self._watchdog_at:
            sd_notify("WATCHDOG=1")
            self._watchdog_at = mono + self.watchdog_s

    def _heartbeat(self, snap: Snapshot | None) -> None:
        current = snap or self.committed
        info = {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at.isoformat(),
            "last_sample_at": self.last_sample_at.isoformat() if self.last_sample_at else None,
            "heartbeat_at": self.clock().isoformat(),
            "sampler": current.sampler if current else None,
            "complete": current.complete if current else None,
            "root": hasattr(os, "geteuid") and os.geteuid() == 0,
            "interval_s": self.config.interval_s,
            "failures": self.monitor.failures,
            "config": str(self.config_path) if self.config_path else None,
            "write_error": self.write_error,
            "write_failing_since": self.write_failing_since.isoformat() if self.write_failing_since else None,
            "notes": list(getattr(self.sampler, "notes", None) or ()),  # what the view is missing, for status
        }
        try:
            self.store.heartbeat(info)
        except RECORD_FAILS as err:
            log.warning("cannot write the heartbeat: %s", err)

    # -------------------------------------------------------------- configuration

    def _maybe_reload(self) -> None:
        """A changed config file (looked at every CONFIG_CHECK_S) or SIGHUP reloads the configuration."""
        mono = time.monotonic()
        if not self.reload_requested and mono < self._config_check_at:
            return
        self._config_check_at = mono + CONFIG_CHECK_S
        stamp = _stamp(self.config_path)
        if not self.reload_requested and stamp == self._config_stamp:
            return
        self.reload_requested = False
        self._config_stamp = stamp
        self.reload()

    @property
    def policy(self) -> Policy:
        """The configuration's rules and the record's decisions, as they are now."""
        return Policy(self.config.rules + self._decisions, self.config.notify_loopback)

    def _refresh_decisions(self) -> None:
        """Before deciding anything: decisions (trust, mute) written since by the CLI or the tray."""
        try:
            version = self.store.data_version()
            if version == self._data_version:  # nothing committed since: no decision either
                return
            decisions = self.store.decisions()
        except RECORD_FAILS as err:  # read again at the next event
            self._unreadable("the decisions in the record", err, "deciding with those read before")
            return
        self._unreadable("the decisions in the record", None)
        self._data_version = version  # another connection committed: maybe a decision
        self._decisions = decisions

    def reload(self) -> bool:
        if self.config_path is None:
            return False
        try:
            config = load(self.config_path, sinks_check=validate)
        except ConfigError as err:
            log.error("the new configuration is invalid; keeping the previous one:\n%s", err)
            return False
        except Exception as err:  # config.load promises ConfigError; a daemon never dies of a file
            log.error("cannot load the new configuration (%s: %s); keeping the previous one", type(err).__name__, err)
            return False
        old = self.config
        self.config = config
        if config.sinks != old.sinks:
            self.dispatcher.close(stopping=False)  # a reload: the new sinks take over (the textfile stays up)
            self._note_cursors()
            self.dispatcher = self._dispatcher(config.sinks)
        log.warning("configuration reloaded from %s", self.config_path)
        return True

    def close(self) -> None:
        if self._unwritten:
            self._write()  # one last try for what waited for the disk
        self._heartbeat(self.committed)  # the record says when we last sampled
        self.dispatcher.close()
        self._note_cursors()  # what the sinks did not finish is theirs at the next start


class Remembered:
    """The record's memory (rules.Memory); when it cannot be read, it has seen nothing (fail toward alerting)."""

    def __init__(self, store, unreadable: Callable) -> None:
        self.store, self.unreadable = store, unreadable

    def key_seen(self, key, program: str) -> bool:
        return self._ask(lambda: self.store.key_seen(key, program))

    def program_seen(self, program: str, exposure, transport, *, random_port: bool) -> bool:
        return self._ask(lambda: self.store.program_seen(program, exposure, transport, random_port=random_port))

    def _ask(self, question: Callable[[], bool]) -> bool:
        try:
            answer = question()
        except RECORD_FAILS as err:
            self.unreadable("what the record remembers", err, "deciding as if nothing was seen before")
            return False
        self.unreadable("what the record remembers", None)
        return answer


def _stamp(path: Path | None):
    if path is None:
        return None
    try:
        st = path.stat()
        return (st.st_mtime_ns, st.st_size, st.st_ino)
    except OSError:
        return None


def run_daemon(daemon: Daemon, stop: threading.Event) -> None:
    """The loop: one step per interval, READY after the first, STOPPING at the end."""
    ready = False
    try:
        while not stop.is_set():
            started = time.monotonic()
            daemon.step()
            if not ready:
                sd_notify("READY=1")
                ready = True
            # Wait out the interval, waking to ping the watchdog when its period is shorter.
            deadline = started + daemon.config.interval_s
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                stop.wait(min(left, daemon.watchdog_s) if daemon.watchdog_s else left)
                daemon.watchdog()
    finally:
        sd_notify("STOPPING=1")
        daemon.close()
