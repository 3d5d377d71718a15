"""The optional TOML configuration: loaded, checked key by key, and explained when wrong.

Zero-config works: a missing file means the defaults. Every problem is
reported at once, each with the file, the line where one can be found, the key,
and what is allowed; unknown keys are problems too (they are usually typos).

    [daemon]
    interval_s = 1.0            # seconds between samples (0.1 to 3600)
    retention_days = 90         # events older than this are pruned (1 to 36500)
    retention_rows = 200000     # and at most this many are kept (1000 to 100000000)
    sampler = "auto"            # auto | sockdiag | psutil

    [notify]
    loopback = "first-seen"     # first-seen | always | never
    cooldown_s = 300            # the tray: one notification per listener per this many seconds
    coalesce_s = 2              # the tray: events this close together become one notification

    [[rule]]
    action = "trust"            # trust | mute (required)
    program = "/usr/sbin/sshd"  # glob on the exe path when it has a "/", else on the process name
    port = 22                   # or "8000-8100"
    exposure = "all-interfaces" # or a list of exposures
    transport = "tcp"
    user = "ana"
    unit = "cups.service"       # glob on the unit: a systemd unit, an app, a container's name
    until = 2026-12-31T00:00:00Z  # the rule expires then

    [sinks.jsonl]               # see the README for every sink's keys
    path = "/var/log/portbell/events.jsonl"
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from .addresses import parse_ports
from .errors import ConfigError
from .model import Exposure, Transport, field, value
from .rules import ACTIONS, LOOPBACK_POLICIES, Rule

SAMPLERS = ("auto", "sockdiag", "psutil")


INTERVAL_RANGE_S = (0.1, 3600)  # daemon.interval_s, and the command line's --interval

@value
class Config:
    interval_s: float = 1.0
    retention_days: int = 90
    retention_rows: int = 200_000
    sampler: str = "auto"
    notify_loopback: str = "first-seen"
    cooldown_s: float = 300.0
    coalesce_s: float = 2.0
    rules: tuple[Rule, ...] = ()
    sinks: Mapping[str, Any] = field(factory=dict)
    path: Path | None = None  # the file it came from; None for the defaults

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path) if self.path else None,
            "daemon": {
                "interval_s": self.interval_s,
                "retention_days": self.retention_days,
                "retention_rows": self.retention_rows,
                "sampler": self.sampler,
            },
            "notify": {"loopback": self.notify_loopback, "cooldown_s": self.cooldown_s, "coalesce_s": self.coalesce_s},
            "rules": [r.describe() for r in self.rules],
            "sinks": sorted(self.sinks),
        }


@value
class Problem:
    file: Path
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


# ------------------------------------------------------------------ loading


def load(path: Path, *, sinks_check: Callable[[Mapping[str, Any]], list[str]] | None = None) -> Config:
    """The configuration in `path`, the defaults when it does not exist; ConfigError lists every problem.

    `sinks_check` checks the [sinks.*] tables (sinks.validate: each sink knows its own options, and
    this floor does not reach up into the sinks); without it they are taken as they are, which is
    what the tray, which runs no sink, needs."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Config()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([Problem(path, None, "", f"cannot read it: {err}")]) from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        match = re.search(r"line (\d+)", str(err))
        raise ConfigError([Problem(path, int(match.group(1)) if match else None, "", f"not valid TOML: {err}")]) from err
    except RecursionError as err:  # tomllib recurses once per level of nesting
        raise ConfigError([Problem(path, _deep_line(text), "", f"nested too deeply (more than {MAX_DEPTH} levels of arrays or tables)")]) from err
    checker = _Checker(path, text, sinks_check)
    try:
        config = checker.config(data)
    except Exception as err:  # whatever the reason, a config that cannot be loaded is a ConfigError
        raise ConfigError([*checker.problems, Problem(path, None, "", f"cannot be loaded ({type(err).__name__}: {err})")]) from err
    if checker.problems:  # in the file's line order; problems of no line (the whole file) last
        raise ConfigError(sorted(checker.problems, key=lambda p: (p.line is None, p.line or 0)))
    return config


class _Checker:
    def __init__(self, path: Path, text: str, sinks_check=None) -> None:
        self.path = path
        self.sinks_check = sinks_check
        self.lines = _KeyLines(text)
        self.problems: list[Problem] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.path, self.lines.find(key), key, message))

    def table(self, data: Any, name: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
        if not isinstance(data, Mapping):
            self.problem(name, "must be a table")
            return {}
        for key in data:
            if key not in allowed:
                self.problem(f"{name}.{key}", f"unknown key (allowed: {', '.join(allowed)})")
        return data

    def number(self, table, name, key, default, low, high, kind=float):
        if key not in table:
            return default
        value = table[key]
        ok_types = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types) or not low <= value <= high:
            what = "a whole number" if kind is int else "a number"
            self.problem(f"{name}.{key}", f"must be {what} from {low:g} to {high:g}, not {value!r}")
            return default
        return kind(value)

    def choice(self, table, name, key, default, choices):
        if key not in table:
            return default
        value = table[key]
        if value not in choices:
            self.problem(f"{name}.{key}", f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
            return default
        return value

    def config(self, data: Mapping[str, Any]) -> Config:
        self.table(data, "", ("daemon", "notify", "rule", "sinks"))
        d = self.table(data.get("daemon", {}), "daemon", ("interval_s", "retention_days", "retention_rows", "sampler"))
        n = self.table(data.get("notify", {}), "notify", ("loopback", "cooldown_s", "coalesce_s"))
        rules = data.get("rule", [])
        if not isinstance(rules, list):
            self.problem("rule", "must be an array of tables: write each rule under [[rule]]")
            rules = []
        sinks = data.get("sinks", {})
        if not isinstance(sinks, Mapping):
            self.problem("sinks", "must be a table of sink tables, like [sinks.jsonl]")
            sinks = {}
        else:
            for text in self.sinks_check(sinks) if self.sinks_check else ():
                key, _, message = text.partition(": ")
                self.problem(key, message or text)
        return Config(
            interval_s=self.number(d, "daemon", "interval_s", 1.0, *INTERVAL_RANGE_S),
            retention_days=self.number(d, "daemon", "retention_days", 90, 1, 36500, int),
            retention_rows=self.number(d, "daemon", "retention_rows", 200_000, 1000, 100_000_000, int),
            sampler=self.choice(d, "daemon", "sampler", "auto", SAMPLERS),
            notify_loopback=self.choice(n, "notify", "loopback", "first-seen", LOOPBACK_POLICIES),
            cooldown_s=self.number(n, "notify", "cooldown_s", 300.0, 0, 86400),
            coalesce_s=self.number(n, "notify", "coalesce_s", 2.0, 0, 60),
            rules=tuple(r for i, t in enumerate(rules) if (r := self.rule(t, f"rule[{i + 1}]")) is not None),
            sinks=dict(sinks),
            path=self.path,
        )

    def rule(self, table: Any, name: str) -> Rule | None:
        allowed = ("action", "program", "port", "exposure", "transport", "user", "unit", "until")
        t = self.table(table, name, allowed)
        before = len(self.problems)
        action = t.get("action")
        if action not in ACTIONS:
            self.problem(f"{name}.action", f"is required: one of {', '.join(repr(a) for a in ACTIONS)}, not {action!r}")
        program = t.get("program")
        if program is not None and (not isinstance(program, str) or not program):
            self.problem(f"{name}.program", "must be a glob on the exe path or the process name, like \"/usr/sbin/sshd\" or \"node*\"")
        ports = None
        if "port" in t:
            try:
                ports = parse_ports(t["port"])
            except ValueError as err:
                self.problem(f"{name}.port", str(err))
        exposures = None
        if "exposure" in t:
            raw = t["exposure"] if isinstance(t["exposure"], list) else [t["exposure"]]
            try:
                exposures = tuple(Exposure(e) for e in raw)
            except (ValueError, TypeError):
                self.problem(f"{name}.exposure", f"must be one or a list of {', '.join(repr(e.value) for e in Exposure)}")
        transport = self.choice(t, name, "transport", None, ("tcp", "udp"))
        user = t.get("user")
        if user is not None and not isinstance(user, str):
            self.problem(f"{name}.user", "must be a user name")
        unit = t.get("unit")
        if unit is not None and (not isinstance(unit, str) or not unit):
            self.problem(f"{name}.unit", "must be a glob on the unit's name, like \"cups.service\", \"firefox\" or \"myapp-*\"")
        until = t.get("until")
        if until is not None:
            try:
                until = _as_utc(until)
            except (OverflowError, ValueError):
                self.problem(f"{name}.until", "is out of range: a date-time that lies in or before the year 9999 in UTC")
                until = False
            if until is None:
                self.problem(f"{name}.until", "must be a TOML date or date-time, like 2026-12-31T00:00:00Z")
        if len(self.problems) > before:
            return None
        return Rule(
            action=action,
            program=program,
            ports=ports,
            exposures=exposures,
            transport=Transport(transport) if transport else None,
            user=user,
            unit=unit,
            until=until,
        )


MAX_DEPTH = 100


def _deep_line(text: str) -> int | None:
    """The line where arrays or inline tables nest deeper than MAX_DEPTH (strings and comments skipped)."""
    depth = 0
    for number, line in enumerate(text.splitlines(), 1):
        quote = None
        for char in line:
            if quote:
                quote = None if char == quote else quote
            elif char in "\"'":
                quote = char
            elif char == "#":
                break
            elif char in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return number
            elif char in "]}":
                depth = max(depth - 1, 0)
    return None


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.astimezone()).astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime.combine(value, time()).astimezone().astimezone(timezone.utc)
    return None


class _KeyLines:
    """Finds the line of `table.key` in the TOML text (tomllib gives lines only for syntax errors)."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")

    def __init__(self, text: str) -> None:
        self.index: dict[str, int] = {}
        table, counts = "", {}
        for number, line in enumerate(text.splitlines(), 1):
            header = self._HEADER.match(line)
            if header:
                name = header.group(2).replace('"', "").replace("'", "").replace(" ", "")
                if header.group(1) == "[[":
                    counts[name] = counts.get(name, 0) + 1
                    name = f"{name}[{counts[name]}]"
                table = name
                self.index.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                full = f"{table}.{key.group(1).strip(chr(34) + chr(39))}" if table else key.group(1)
                self.index.setdefault(full, number)

    def find(self, key: str) -> int | None:
        key = key.lstrip(".")
        while key:
            if key in self.index:
                return self.index[key]
            key = key.rpartition(".")[0]
        return None
