"""`portbell events`, `history`, `status`, `trust` / `mute` / `forget`: the daemon's record and decisions."""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import datetime, timezone

from .. import paths, words
from ..words import tray as phrases
from ..errors import PortbellError, StoreError, UsageError
from ..model import SCHEMA_VERSION, Exposure, Transport, iso, replace
from ..when import parse_since
from ._args import colour, count, duration, pid, port, row_id, stop_on_signals, transport_filter, transport_options, user


def _reader():
    from ..record import Store

    return Store.open(paths.database(), readonly=True)


def _writer():
    from ..record import Store

    return Store.open(paths.database())


def cmd_events(args) -> int:
    now = datetime.now(timezone.utc)
    try:
        since = parse_since(args.since, now) if args.since else None
    except ValueError as err:
        raise UsageError(f"--since: {err}") from None
    stop = threading.Event()
    if args.follow:  # from the start: a TERM while the history prints still ends cleanly
        stop_on_signals(stop)
        print("portbell: following the daemon's record (Ctrl-C stops).", file=sys.stderr, flush=True)
    store = _reader()
    painted = colour(args)
    try:
        # data_version before the query: a commit landing between the two is seen at the next
        # tick instead of being held back until the next commit
        version, floor = store.data_version(), store.last_id()
        records = store.events(since=since, port=args.port, process=args.process, alerts_only=args.alerts, limit=args.limit)
        # The date on every line as soon as one line is not from today (local time).
        dated = not words.all_today((r.event.at for r in records), now)
        for rec in records:
            _print_record(rec, args.json, dated, painted)
        if not args.follow:
            if not records:
                if not args.json:
                    print("No events" + (" in that time" if since else " in the record") + ".", file=sys.stderr)
                return 1  # as `history`: a clean "no"
            return 0
        last = records[-1].id if records else floor
        store = _follow(store, args, version, last, dated, painted, now, stop)
    finally:
        store.close()
    return 0


def _follow(store, args, version, last, dated, painted, now, stop):
    """Print what the daemon commits after `last`, until `stop`; the store it ends with.

    One cheap pragma per tick while nothing is committed. A record replaced by a new one (the
    daemon moved a damaged one aside when it started) is followed from its first event; a record
    that cannot be read for a moment (being replaced, busy) is said once and waited for."""
    trouble = None
    while not stop.wait(0.25):
        if store.replaced():  # against the file it opened: a move during the history's printing counts
            try:
                fresh = _reader()
            except StoreError:
                continue  # none yet, or not a record yet: the daemon is still creating it
            store.close()
            store, version, last = fresh, None, 0
            print("portbell: the record was replaced by a new one (the old one was moved aside); following it.",
                  file=sys.stderr, flush=True)
        try:
            now_version = store.data_version()
            if now_version == version:
                continue
            for rec in store.events(after_id=last, port=args.port, process=args.process, alerts_only=args.alerts):
                dated = dated or not words.all_today([rec.event.at], now)  # past midnight: dates from then on
                _print_record(rec, args.json, dated, painted)
                last = rec.id
            version, trouble = now_version, None
        except StoreError as err:
            if trouble != str(err):
                print(f"portbell: {err}; waiting until it can be read again.", file=sys.stderr, flush=True)
            trouble = str(err)
    return store


def _print_record(rec, as_json: bool, dated: bool = False, painted: bool = False) -> None:
    print(json.dumps(rec.to_dict()) if as_json else words.record_line(rec, dated=dated, colour=painted), flush=True)


def cmd_history(args) -> int:
    wanted = transport_filter(args)
    transport = str(wanted) if wanted is not None else None
    store = _reader()
    try:
        holdings = store.history(args.port, transport)
    finally:
        store.close()
    if args.json:
        print(json.dumps({
            "version": SCHEMA_VERSION,
            "port": args.port,
            "history": [
                {"listener": h.listener.to_dict(), "opened_at": iso(h.opened_at), "closed_at": iso(h.closed_at)}
                for h in holdings
            ],
        }))
        return 0 if holdings else 1
    if not holdings:
        print(f"No listener on port {args.port} in the history.")
        return 1

    def when(moment, open_end):
        if moment is None:
            return "still open" if open_end else "before the history began"
        return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")

    rows = [
        [str(h.listener.transport), h.listener.endpoint, words.owners_list(h.listener),
         when(h.opened_at, False), when(h.closed_at, True)]
        for h in holdings
    ]
    print(words.table(rows, ["PROTO", "ADDRESS", "OWNER", "FROM", "TO"]))
    return 0


def cmd_status(args) -> int:
    from ..service import InstanceLock

    pid = InstanceLock.holder(paths.lock_file())
    failing = InstanceLock.note_of(paths.lock_file())  # e.g. "writes failing since ...: disk full"
    info, counts = None, None
    try:
        store = _reader()
        try:
            info, counts = store.daemon_info(), store.counts()
        finally:
            store.close()
    except StoreError as err:
        note = str(err)
    else:
        note = None
    running = pid is not None
    sampled = _last_sample(info) if running else None
    tray = _tray_note(InstanceLock)
    if args.json:
        print(json.dumps({"version": SCHEMA_VERSION, "running": running, "pid": pid, "daemon": info, "counts": counts,
                          "last_sample_at": iso(sampled), "database": str(paths.database()), "tray": tray,
                          "problem": failing}))  # fmt: skip
        return 0 if running else 1
    if tray:
        print(f"The tray is running: pid {tray['pid']}, {phrases.tray_backend_sentence(tray['backend'], tray['menu'], tray['why'])}.")
    if not running:
        print("The portbell daemon is not running. Start it with `portbell daemon` (or `portbell autostart enable`).")
        if info and info.get("last_sample_at"):
            print(f"It last sampled {words.since(datetime.fromisoformat(info['last_sample_at']))} (pid {info.get('pid')}).")
        if note:
            print(note)
        return 1
    print(f"The portbell daemon is running: pid {pid}.")
    if failing:
        print(f"  failing      {failing}; what it sees waits in memory and is recorded when it can write")
    if info and info.get("pid") == pid:
        started = datetime.fromisoformat(info["started_at"])
        print(f"  since        {words.since(started)}")
        print(f"  last sample  {words.since(sampled) if sampled else 'none yet'} (every {info.get('interval_s'):g}s)")
        view = "complete" if info.get("complete") else "partial: " + words.partial_view(bool(info.get("root")))
        print(f"  sampler      {info.get('sampler')}, view {view}")
        for note in info.get("notes") or ():
            print(f"  note         {words.printable(str(note))}")
        if info.get("failures"):
            print(f"  failing      the last {info['failures']} samples failed")
    if counts:
        print(
            f"  record       {words.plural(counts['listeners'], 'listener')} now, {words.plural(counts['events'], 'event')}, "
            f"{words.plural(counts['alerts'], 'alert')} ({paths.database()})"
        )
    return 0


def _tray_note(lock) -> dict | None:
    """What the running tray wrote about its pystray backend (runtime folder, tray.json), or None."""
    folder = paths.runtime_dir()
    holder = lock.holder(folder / "tray.lock")
    if holder is None:
        return None
    try:
        note = json.loads((folder / "tray.json").read_text())
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) and note.get("pid") == holder and {"backend", "menu", "why"} <= set(note) else None


def _last_sample(info: dict | None) -> datetime | None:
    """When the running daemon last sampled: the instance lock's mtime, which it stamps after every
    sample, else the last sample its heartbeat recorded."""
    recorded = info.get("last_sample_at") if info else None
    moments = [datetime.fromisoformat(recorded)] if recorded else []
    if recorded:
        try:
            moments.append(datetime.fromtimestamp(os.stat(paths.lock_file()).st_mtime, timezone.utc))
        except OSError:
            pass
    return max(moments) if moments else None


def _rule_from_args(args, action: str):
    from ..addresses import parse_ports
    from ..rules import Rule

    program, ports = args.program, None
    if args.target:
        if args.target.replace("-", "").isdigit():  # digits are a port (or a range), never a program's name
            try:
                ports = parse_ports(args.target)
            except ValueError:
                raise UsageError(
                    f"{args.target} is not a port: ports are 1-65535, ranges like 8000-8100 with low <= high "
                    f"(for a program named by digits: --program {args.target})"
                ) from None
        else:
            program = program or args.target
    if args.port is not None:
        try:
            ports = parse_ports(args.port)
        except ValueError as err:
            raise UsageError(f"--port {err}") from None
    until = datetime.now(timezone.utc) + args.duration if args.duration else None
    pid = started = None
    if args.until_exit is not None:
        from .. import samplers

        owner = samplers.process(args.until_exit)
        if owner is None:
            raise UsageError(f"--until-exit: no process with pid {args.until_exit}")
        pid, started = owner.pid, owner.started_at
    rule = Rule(
        action=action,
        program=program,
        ports=ports,
        exposures=tuple(Exposure(e) for e in args.exposure) if args.exposure else None,
        transport=Transport(args.transport) if args.transport else None,
        user=args.user,
        unit=args.unit,
        until=until,
        pid=pid,
        started_at=started,
        source="cli",
    )
    if (program, ports, rule.exposures, rule.transport, rule.user, rule.unit, pid) == (None,) * 7:
        raise UsageError(f"say what to {action}: a port (8000 or 8000-8100), a program (node, /usr/bin/python3*), or options")
    return rule


def cmd_decide(args) -> int:
    action = args.command
    nothing = not any([args.target, args.program, args.port, args.exposure, args.transport, args.user, args.unit, args.until_exit])
    if nothing:
        return _list_rules(args)
    rule = _rule_from_args(args, action)
    store = _writer()
    try:
        rule_id = store.add_decision(rule)
    finally:
        store.close()
    done = {"trust": "trusted", "mute": "muted"}[action]
    print(f"{done}: {replace(rule, id=rule_id).describe()}. Undo with `portbell forget {rule_id}`.")
    return 0


def _list_rules(args) -> int:
    """The decisions in the record, then the config file's rules; expired ones marked."""
    from .. import config as configmod
    from .config import config_path

    now = datetime.now(timezone.utc)
    decisions, note = (), None
    try:
        store = _reader()
        try:
            decisions = store.decisions()
        finally:
            store.close()
    except PortbellError as err:
        note = str(err)
    path = config_path(args)
    configured = configmod.load(path).rules if path.exists() else ()

    def line(label: str, rule) -> str:
        expired = "" if rule.active(now) else "  (expired)"
        return words.printable(f"{label:>6}  {rule.describe()}  [{rule.source}]{expired}")

    for rule in decisions:
        print(line(str(rule.id), rule))
    for n, rule in enumerate(configured, 1):
        print(line(f"c{n}", rule))
    if not decisions and not configured:
        print("No decisions yet" + (f" ({note})" if note else "") + ". Trust a listener with `portbell trust 8000` or `portbell trust node`.")
    elif configured:
        print(f"(c1... are the rules of {path}; edit that file to change them)")
    return 0


def cmd_forget(args) -> int:
    store = _writer()
    try:
        missing = [rid for rid in args.ids if not store.remove_decision(rid)]
    finally:
        store.close()
    for rid in args.ids:
        if rid not in missing:
            print(f"forgot rule {rid}")
    if missing:
        print(f"portbell: no decision with id {', '.join(map(str, missing))} (list them with `portbell trust`)", file=sys.stderr)
        return 1
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("events", help="the history of listeners opening, closing and changing")
    p.add_argument("--since", metavar="WHEN", help="1h, 2d, or a time like 2026-11-26T09:00")
    p.add_argument("--port", type=port, help="only events of this port")
    p.add_argument("--process", metavar="NAME", help="only events of this program: its name, or its exe's full path")
    p.add_argument("--alerts", action="store_true", help="only events the policy alerted on")
    p.add_argument("--limit", type=count, metavar="N", help="at most the N newest")
    p.add_argument("--json", action="store_true", help="one JSON object per line (version 1)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events as the daemon records them")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("history", help="who held a port, from when to when")
    p.add_argument("port", type=port, help="the port")
    transport_options(p)
    p.add_argument("--json", action="store_true", help="one JSON document (version 1)")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("status", help="is the daemon running, since when, what it sees")
    p.add_argument("--json", action="store_true", help="one JSON document (version 1)")
    p.set_defaults(func=cmd_status)

    for action, text in (("trust", "never alert about matching listeners: they are expected"), ("mute", "stop alerts about matching listeners")):
        p = sub.add_parser(action, help=f"{text} (no arguments: list the decisions)")
        p.add_argument("target", nargs="?", metavar="PORT|PROGRAM", help="8000, 8000-8100, node, /usr/bin/python3*")
        p.add_argument("--program", metavar="GLOB", help="a program: its name (node) or exe path glob (/usr/bin/python3*)")
        p.add_argument("--port", metavar="P|LOW-HIGH", help="a port or a range: 8000, 8000-8100")
        p.add_argument("--exposure", action="append", choices=[e.value for e in Exposure], help="only at this exposure (repeat for several)")
        p.add_argument("--transport", choices=("tcp", "udp"), help="only this transport")
        p.add_argument("--user", type=user, help="only listeners of this user (a user of this machine, by name or uid)")
        p.add_argument("--unit", metavar="GLOB", help="a unit: cups.service, 'app-*', a container's name")
        p.add_argument("--config", metavar="PATH", help="the configuration whose rules are listed too (default: `portbell config path`)")
        p.add_argument("--for", dest="duration", type=duration, metavar="DURATION", help="expire after 30m, 8h, 1d...")
        p.add_argument("--until-exit", type=pid, metavar="PID", help="only while this process lives")
        p.set_defaults(func=cmd_decide)

    p = sub.add_parser("forget", help="remove decisions by id (see `portbell trust`)")
    p.add_argument("ids", type=row_id, nargs="+", metavar="ID", help="the ids `portbell trust` lists")
    p.set_defaults(func=cmd_forget)
