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
from ..errors import ConfigError
from ..model import Event, EventKind, Snapshot
from ..rules import Policy, Verdict
from ..sinks import Dispatcher, build, validate
from .monitor import Monitor, Poll
from .notify import sd_notify

log = logging.getLogger("portbell")

HEARTBEAT_S = 15.0  # how often the record learns the daemon is alive when nothing happens
CONFIG_CHECK_S = 5.0  # how often the config file's stamp is looked at (SIGHUP reloads at once)
PRUNE_S = 3600.0


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
        self.dispatcher = Dispatcher(build(config.sinks))
        self._delivered = self._replay_undelivered()
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
        self.policy = Policy(config.rules + self._decisions, config.notify_loopback)
        self._heartbeat_at = 0.0
        self._prune_at = 0.0
        self.last_sample_at: datetime | None = None
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
            try:
                records = self._commit(poll)
                self.committed = snap
            except (sqlite3.Error, OSError) as err:
                # Not committed: diff against the last commit next time, so nothing is lost.
                log.error("cannot write the record (%s); will retry next poll", err)
                self.monitor.current = self.committed
                records = []
            self.first_poll = False
            if self.out is not None:
                for rec in records:
                    self.out(rec)
        self.dispatcher.dispatch(records, snap)  # also on a failed sample: held records are retried
        self._note_delivered(records)
        self._housekeeping(snap)
        return records

    def _commit(self, poll: Poll) -> list:
        snap = poll.snapshot
        if poll.baseline:
            if self.committed is None:  # the very first start: a silent baseline of opened events
                events = [(Event(EventKind.OPENED, snap.taken_at, li), Verdict(False, "baseline: listening when portbell first started")) for li in snap.sorted()]
                return self.store.record(snap, events, baseline=True)
            self.store.rebaseline(snap)  # coverage changed: new truth, no news
            return []
        if not poll.events:
            return []
        self._refresh_decisions()
        now = self.clock()
        decided = [(e, self.policy.decide(e, self.store, now)) for e in poll.events]
        return self.store.record(snap, decided, found_at_start=self.first_poll)

    # -------------------------------------------------------------- sinks after a crash

    def _replay_undelivered(self) -> int:
        """Records committed but not handed to every sink when the last daemon stopped
        (kill -9 between the commit and the sinks, or a sink failing at exit) go to the
        sinks now: at least once, in order. Without sinks, nothing is owed."""
        last = self._newest = self.store.last_id()
        marker = self.store.meta("sinks_delivered")
        if not self.dispatcher.sinks or marker is None or not marker.isdigit():
            self._set_delivered(last)
            return last
        owed = self.store.events(after_id=int(marker))
        if owed:
            log.warning("handing %d records the sinks did not get before the last stop to them now", len(owed))
            self.dispatcher.dispatch(owed, None)
        return self._set_delivered(self.dispatcher.delivered_through(last))

    def _note_delivered(self, records: list) -> None:
        if not self.dispatcher.sinks:
            return
        if records:
            self._newest = records[-1].id
        through = self.dispatcher.delivered_through(self._newest)
        if through != self._delivered:
            self._delivered = self._set_delivered(through)

    def _set_delivered(self, record_id: int) -> int:
        try:
            self.store.set_meta("sinks_delivered", str(record_id))
        except (sqlite3.Error, OSError) as err:
            log.warning("cannot note what the sinks received: %s", err)
        return record_id

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
            except (sqlite3.Error, OSError) as err:
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
            "notes": list(getattr(self.sampler, "notes", None) or ()),  # what the view is missing, for status
        }
        try:
            self.store.heartbeat(info)
        except (sqlite3.Error, OSError) as err:
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

    def _refresh_decisions(self) -> None:
        """Before deciding anything: decisions (trust, mute) written since by the CLI or the tray."""
        version = self.store.data_version()
        if version != self._data_version:  # another connection committed: maybe a decision
            self._data_version = version
            decisions = self.store.decisions()
            if decisions != self._decisions:
                self._decisions = decisions
                self.policy = Policy(self.config.rules + decisions, self.config.notify_loopback)

    def reload(self) -> bool:
        if self.config_path is None:
            return False
        try:
            config = load(self.config_path, sinks_check=validate)
        except ConfigError as err:
            log.error("the new configuration is invalid; keeping the previous one:\n%s", err)
            return False
        old = self.config
        self.config = config
        self.policy = Policy(config.rules + self._decisions, config.notify_loopback)
        if config.sinks != old.sinks:
            self.dispatcher.close(stopping=False)  # a reload: the new sinks take over (the textfile stays up)
            self.dispatcher = Dispatcher(build(config.sinks))
        log.warning("configuration reloaded from %s", self.config_path)
        return True

    def close(self) -> None:
        self._heartbeat(self.committed)  # the record says when we last sampled
        self.dispatcher.close()


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
