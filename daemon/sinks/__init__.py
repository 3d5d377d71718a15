"""Sinks: where committed events go besides the store, and their configuration (the Dispatcher that
feeds them is in _dispatch).

The daemon commits each poll's events to the store first, then hands the
committed records to the sinks through one Dispatcher:

    problems = sinks.validate(config.get("sinks", {}))     # [] when valid
    dispatcher = sinks.Dispatcher(sinks.build(config.get("sinks", {}), host=None))
    every poll:  dispatcher.dispatch(records, snapshot)    # even with no records
    at the end:  dispatcher.close()

A sink has a `name`, `emit(records, snapshot)` and `close()`. `emit` gets the
records committed since its last successful emit, oldest first, and the
current snapshot (None when the sample failed: keep the last view). It is
called every poll, usually with no records, and must then return at once
unless it follows the snapshot (the Prometheus textfile does, and rewrites
its file when a count changed and at its heartbeat). `emit` never waits long: sockets have
timeouts and the hook runs its program in background threads. When it cannot
deliver it raises (SinkError, with `delivered` = how many of the batch did get
through); the Dispatcher keeps the rest and retries.

Configuration: the `[sinks]` table of the TOML file, one sub-table per sink.
A sink runs when its table is present and `enabled` is not false; with no
`[sinks]` table nothing is sent anywhere.

    [sinks.jsonl]        path = <user state dir>/portbell/events.jsonl, fsync = true,
                         format = "portbell" | "osquery", mode = "0600" | "0640"
    [sinks.syslog]       socket = "/dev/log", facility = "user"   (kern, user, mail, daemon, auth,
                         syslog, lpr, news, uucp, cron, authpriv, ftp, local0..local7)
    [sinks.hook]         argv = [...] (required), timeout_s = 10, max_concurrent = 4,
                         only_alerts = true, max_queued = 1000
    [sinks.prometheus]   path = ".../portbell.prom" (required, must end in .prom)

Every table also takes `enabled` (default true). Paths must be absolute (`~`
is expanded). Each sink module's docstring describes its format.

Delivery is at least once and in order per sink, across crashes, clean stops
and full disks: each sink reads the record from its own cursor (kept in the
store), a record reaches a sink after its commit, and a batch retried after a
partial failure resumes after what the sink reported delivered.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from ..model import Recorded, Snapshot
from ._common import SinkError
from ._dispatch import BACKOFF_MAX_S, BACKOFF_MIN_S, Dispatcher

__all__ = ["Sink", "SinkError", "Dispatcher", "BACKOFF_MIN_S", "BACKOFF_MAX_S", "validate", "build", "default_jsonl_path", "NAMES"]

log = logging.getLogger("portbell.sinks")


class Sink(Protocol):
    name: str

    def emit(self, records: Sequence[Recorded], snapshot: Snapshot | None) -> None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- configuration

_REQUIRED = object()
FACILITY_NAMES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    *(f"local{i}" for i in range(8)),
)  # fmt: skip
Check = Callable[[Any], "str | None"]  # the problem with a value, or None


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _positive_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "must be a whole number of at least 1"


def _positive_number(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and value != float("inf")
    return None if ok else "must be a number of seconds greater than 0"


def _path(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a path (a non-empty string)"
    if not os.path.isabs(os.path.expanduser(value)):
        return f"must be an absolute path (or start with ~), got {value!r}"
    return None


def _prom_path(value: Any) -> str | None:
    problem = _path(value)
    if problem is None and not value.endswith(".prom"):
        return f"must end in .prom (node_exporter's textfile collector reads only *.prom files), got {value!r}"
    return problem


def _argv(value: Any) -> str | None:
    if isinstance(value, str):
        return (
            "must be a non-empty list of strings, not one string: hooks never run through a shell, "
            'so write the program and its arguments as a list, e.g. argv = ["/usr/local/bin/notify", "--urgent"]'
        )
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(a, str) for a in value):
        return "must be a non-empty list of strings"
    if not value[0]:
        return "must start with the program to run, not an empty string"
    return None


def _format(value: Any) -> str | None:
    if value in ("portbell", "osquery"):
        return None
    return (
        'must be "portbell" (portbell\'s columns: exposure, owner, alert) or "osquery" '
        f"(osquery's listening_ports columns and differential rows), not {value!r}"
    )


FILE_MODES = {"0600": 0o600, "600": 0o600, "0o600": 0o600, "0640": 0o640, "640": 0o640, "0o640": 0o640}


def file_mode(value: Any) -> int | None:
    """The mode a `mode` value asks for: "0640", "640", 0o640 (TOML's octal); None when it is not allowed."""
    if isinstance(value, str):
        return FILE_MODES.get(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value in (0o600, 0o640):
        return value
    return None


def _mode(value: Any) -> str | None:
    if file_mode(value) is not None:
        return None
    hint = ""
    if isinstance(value, int) and not isinstance(value, bool) and value in (600, 640):
        hint = f' ({value} is a decimal number here: write "0{value}" or 0o{value})'
    return (
        'must be "0600" (only the daemon\'s user reads the file) or "0640" (its group too, for a log '
        f"shipper running as its own user), as a string or as TOML's octal 0o640; not {value!r}{hint}"
    )


def _facility(value: Any) -> str | None:
    return None if value in FACILITY_NAMES else f"must be one of {', '.join(FACILITY_NAMES)}"


# sink -> key -> (check, default); _REQUIRED keys must be present when the sink is enabled
SPECS: dict[str, dict[str, tuple[Check, Any]]] = {
    "jsonl": {
        "enabled": (_bool, True),
        "path": (_path, None),
        "fsync": (_bool, True),
        "format": (_format, "portbell"),
        "mode": (_mode, "0600"),
    },
    "syslog": {"enabled": (_bool, True), "socket": (_path, "/dev/log"), "facility": (_facility, "user")},
    "hook": {
        "enabled": (_bool, True),
        "argv": (_argv, _REQUIRED),
        "timeout_s": (_positive_number, 10.0),
        "max_concurrent": (_positive_int, 4),
        "only_alerts": (_bool, True),
        "max_queued": (_positive_int, 1000),
    },
    "prometheus": {"enabled": (_bool, True), "path": (_prom_path, _REQUIRED)},
}
NAMES = tuple(SPECS)  # also the order sinks are built and served in


def _unknown(where: str, key: str, allowed) -> str:
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{where}.{key}: unknown key (allowed: {', '.join(allowed)}){hint}"


def validate(tables: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a `[sinks]` table, one sentence each naming its key; [] when valid."""
    if not isinstance(tables, Mapping):
        return ["sinks: must be a table, e.g. [sinks.jsonl]"]
    problems: list[str] = []
    for name, table in tables.items():
        where = f"sinks.{name}"
        spec = SPECS.get(name)
        if spec is None:
            problems.append(_unknown("sinks", name, SPECS).replace("unknown key", "unknown sink"))
            continue
        if not isinstance(table, Mapping):
            problems.append(f"{where}: must be a table, e.g. [{where}]")
            continue
        for key, value in table.items():
            if key not in spec:
                problems.append(_unknown(where, key, spec))
                continue
            problem = spec[key][0](value)
            if problem:
                problems.append(f"{where}.{key}: {problem}")
        if table.get("enabled", True) is not False:
            for key, (_, default) in spec.items():
                if default is _REQUIRED and key not in table:
                    problems.append(f"{where}.{key}: required when {where} is enabled")
    return problems


def default_jsonl_path() -> Path:
    from ..paths import state_dir

    return state_dir() / "events.jsonl"


def _options(name: str, table: Mapping[str, Any]) -> dict[str, Any]:
    return {key: table.get(key, default) for key, (_, default) in SPECS[name].items() if key != "enabled"}


def build(tables: Mapping[str, Any], *, host: str | None = None) -> list[Sink]:
    """The enabled sinks, in NAMES order. Call validate() first: an invalid table raises ValueError here."""
    problems = validate(tables)
    if problems:
        raise ValueError("invalid [sinks] configuration: " + "; ".join(problems))
    made: list[Sink] = []
    for name in NAMES:
        table = tables.get(name)
        if table is None or table.get("enabled", True) is False:
            continue
        opts = _options(name, table)
        if name == "jsonl":
            from ._jsonl import JsonLinesSink

            path = Path(os.path.expanduser(opts["path"])) if opts["path"] else default_jsonl_path()
            made.append(JsonLinesSink(path, host=host, fsync=opts["fsync"], format=opts["format"], mode=file_mode(opts["mode"])))
        elif name == "syslog":
            from ._syslog import SyslogSink

            made.append(SyslogSink(os.path.expanduser(opts["socket"]), facility=opts["facility"], host=host))
        elif name == "hook":
            from ._hook import HookSink

            made.append(
                HookSink(
                    opts["argv"],
                    timeout_s=float(opts["timeout_s"]),
                    max_concurrent=opts["max_concurrent"],
                    only_alerts=opts["only_alerts"],
                    max_queued=opts["max_queued"],
                )
            )
        elif name == "prometheus":
            from ._prometheus import PrometheusSink

            made.append(PrometheusSink(os.path.expanduser(opts["path"])))
    return made
