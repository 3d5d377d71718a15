"""`portbell daemon`: the long-running service, in the foreground (the service manager supervises it)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

from .. import paths, words
from ..config import INTERVAL_RANGE_S
from ..model import replace
from ._args import colour, seconds, stop_on_signals
from .config import config_path

log = logging.getLogger("portbell")


def cmd_daemon(args) -> int:
    from .. import config as configmod
    from ..sinks import validate
    from .. import samplers
    from ..service import Daemon, InstanceLock, run_daemon
    from ..record import Store

    path = config_path(args)
    config = configmod.load(path, sinks_check=validate)  # ConfigError: exit 2 with every problem listed
    if args.interval is not None:
        config = replace(config, interval_s=args.interval)
    lock = InstanceLock(paths.lock_file())
    lock.acquire()
    try:
        store = Store.open(paths.database(), daemon=True)  # it holds the lock: the record's one daemon
        prefer = args.sampler or (None if config.sampler == "auto" else config.sampler)
        sampler, skipped = samplers.open_sampler(prefer)
        for reason in skipped:
            log.warning("sampler unavailable, falling back: %s", reason)
        sampler = Stamped(sampler, paths.lock_file())
        painted = colour(args, sys.stdout)
        out = None if args.quiet else (lambda rec: print(words.record_line(rec, colour=painted), flush=True))
        if args.json:
            out = lambda rec: print(json.dumps(rec.to_dict()), flush=True)  # noqa: E731
        daemon = Daemon(store=store, sampler=sampler, config=config, config_path=path, out=out)
        daemon.note = lock.note  # failing writes, where `status` finds them even on a full disk
        stop = threading.Event()
        stop_on_signals(stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: setattr(daemon, "reload_requested", True))
        print(
            f"portbell daemon (pid {os.getpid()}): sampling with {sampler.name} every {config.interval_s:g}s; "
            f"record {paths.database()}; config {path if path.exists() else '(none: defaults)'}",
            file=sys.stderr,
            flush=True,
        )
        for note in _view_notes(sampler):
            print(f"portbell daemon: {note}", file=sys.stderr, flush=True)
        run_daemon(daemon, stop)
        sampler.close()
        store.close()
    finally:
        lock.release()
    return 0


class Stamped:
    """The sampler, stamping the instance lock's mtime after every sample that worked: `status`
    tells when the daemon last sampled (the heartbeat in the record is written every 15 s only),
    at the cost of one utime, never a write to the record."""

    def __init__(self, sampler, stamp) -> None:
        self._sampler, self._stamp = sampler, stamp

    def sample(self):
        snap = self._sampler.sample()
        try:
            os.utime(self._stamp)
        except OSError:
            pass  # the lock's directory went away: status falls back to the heartbeat
        return snap

    def __getattr__(self, name):
        return getattr(self._sampler, name)


def _view_notes(sampler) -> list[str]:
    """What this daemon's view misses: the partial-view sentence when it cannot see every owner,
    and the sampler's own notes (no Engine API...)."""
    from ._args import is_root

    notes = [] if is_root() else [f"{words.PARTIAL}: {words.partial_view(False)}"]
    return notes + [words.printable(str(n)) for n in getattr(sampler, "notes", None) or ()]


def add_parser(sub) -> None:
    p = sub.add_parser("daemon", help="the long-running service (foreground; the service manager supervises it)")
    p.add_argument("--interval", type=seconds(*INTERVAL_RANGE_S), metavar="S", help="seconds between samples (overrides the config)")
    p.add_argument("--config", metavar="PATH", help="configuration file (default: `portbell config path`)")
    p.add_argument("--sampler", choices=("sockdiag", "psutil"), help="force a sampler (default: the config's, else the best that works here)")
    p.add_argument("--quiet", action="store_true", help="do not print events")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.set_defaults(func=cmd_daemon)
