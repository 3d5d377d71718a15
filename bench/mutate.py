"""Mutation testing of portbell's pure and core modules: do the tests fail when the code breaks?

Each mutant is one small change to one module (a comparison swapped, a boundary shifted, `and` for
`or`, a `not` removed, a constant moved by one, True for False, a phrase emptied, a value returned as
None, a call statement removed), written over the module on disk; the tests that cover that module
run in a subprocess (`pytest -x`, a timeout each); then the file is restored. A mutant the tests
notice is killed; one they pass is a survivor, printed with file:line.

    .venv/bin/python bench/mutate.py                    # every module in TARGETS (make mutation)
    .venv/bin/python bench/mutate.py --module rules     # one row of the table (repeatable)
    .venv/bin/python bench/mutate.py --list             # the mutants, without running anything

Restoring is robust: the original text is kept in bench/results/mutation-backup.json while a
mutant is on disk and put back in a `finally` (SIGTERM and SIGHUP included); a run that finds
that file at start (a previous run was killed hard) restores it before anything else.
Exit status: 0 when the score is at least --fail-under (85), 1 below it, 2 when the unmutated tests
fail (no score means anything then).
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BACKUP = RESULTS / "mutation-backup.json"


@dataclass(frozen=True)
class Target:
    """One row: a module (or some of its functions), and the test files that cover it."""

    name: str
    path: str  # relative to the repository
    tests: tuple[str, ...]
    only: tuple[str, ...] = ()  # qualified names (`Store.prune`, `severity`); empty: the whole module
    skip: tuple[str, ...] = ()  # qualified names left alone (data tables, I/O)


# The modules under mutation and the tests that cover each. Paths move with the code: update
# them here (the stop guard's core moved from tray/process.py to daemon/process.py).
TARGETS = (
    Target("addresses", "daemon/addresses.py", ("tests/test_addresses_mut.py", "tests/test_addresses.py")),
    Target("ports", "daemon/ports.py", ("tests/test_ports.py",), skip=("DEV_PORTS", "_run", "ephemeral_range")),
    Target("snapshot", "daemon/snapshot.py", ("tests/test_snapshot_mut.py", "tests/test_snapshot.py")),
    Target("rules", "daemon/rules.py", ("tests/test_rules_mut.py", "tests/test_rules.py")),
    Target("words", "daemon/words/__init__.py", ("tests/test_words.py", "tests/test_words_units.py")),
    Target("alerts", "tray/alerts.py", ("tests/test_alerts.py",)),
    Target("stop guard", "daemon/process.py", ("tests/test_stop_guard.py",), only=("refusal",)),
    Target("menu", "tray/menu.py", ("tests/test_menu.py", "tests/test_tray.py")),
    Target(
        "store",
        "daemon/record/store.py",
        ("tests/test_store_mut.py", "tests/test_store.py"),
        only=("Store.recorded", "Store.record", "Store.record_polls", "Store._record_one", "Store._set_coverage", "Store._remember",
              "Store.prune", "Store.key_seen", "Store.program_seen", "Store.events", "Store.history",
              "Store.last_holder", "Store.current_since"),
    ),
    Target("schema", "daemon/record/schema.py", ("tests/test_store_mut.py", "tests/test_store.py"),
           only=("connect", "check")),
    Target("syslog", "daemon/sinks/_syslog.py", ("tests/test_syslog_format.py",),
           only=("severity", "sd_escape", "header_field", "timestamp", "structured_data", "message")),
    Target("osquery", "daemon/sinks/_osquery.py", ("tests/test_osquery_format.py",), only=("rows", "changes")),
)


# ------------------------------------------------------------------ the operators

COMPARE_SWAP = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In,
}  # fmt: skip
BINOP_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult}
SYMBOL = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.And: "and", ast.Or: "or",
}  # fmt: skip


@dataclass
class Mutant:
    target: Target
    index: int  # its place in the walk of the module, so a fresh parse finds the same node
    line: int
    what: str
    status: str = ""  # killed | survived | timeout
    seconds: float = 0.0


def _is_docstring(node: ast.AST, parents: dict) -> bool:
    parent = parents.get(node)
    if not isinstance(parent, ast.Expr):
        return False
    holder = parents.get(parent)
    body = getattr(holder, "body", None)
    return isinstance(holder, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and bool(body) and body[0] is parent


def _points(tree: ast.Module, target: Target):
    """(node, description, apply) for every mutation point, in a fixed walk order."""
    parents: dict[ast.AST, ast.AST] = {}
    names: dict[ast.AST, str] = {}  # node -> qualified name of the def/class/assignment it is in
    skipped: set[int] = set()  # ids of nodes inside annotations, decorators or f-string pieces

    def visit(node, qual):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
            child_qual = qual
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                child_qual = f"{qual}.{child.name}" if qual else child.name
                for sub in (*child.decorator_list, getattr(child, "returns", None)):
                    if sub is not None:
                        skipped.update(id(n) for n in ast.walk(sub))
            elif isinstance(child, (ast.Assign, ast.AnnAssign)) and not qual:
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                first = next((t.id for t in targets if isinstance(t, ast.Name)), "")
                child_qual = first
            if isinstance(child, ast.arg) and child.annotation is not None:
                skipped.update(id(n) for n in ast.walk(child.annotation))
            if isinstance(child, ast.AnnAssign):
                skipped.update(id(n) for n in ast.walk(child.annotation))
            if isinstance(child, ast.JoinedStr):
                skipped.update(id(n) for n in ast.walk(child) if n is not child and isinstance(n, ast.Constant))
            if isinstance(child, ast.FormattedValue) and child.format_spec is not None:
                skipped.update(id(n) for n in ast.walk(child.format_spec))
            names[child] = child_qual
            visit(child, child_qual)

    visit(tree, "")

    def wanted(node) -> bool:
        qual = names.get(node, "")
        if id(node) in skipped:
            return False
        if any(qual == s or qual.startswith(s + ".") for s in target.skip):
            return False
        return not target.only or any(qual == o or qual.startswith(o + ".") for o in target.only)

    for node in ast.walk(tree):
        if not wanted(node):
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                new = COMPARE_SWAP.get(type(op))
                if new is not None:
                    yield node, f"{SYMBOL[type(op)]} -> {SYMBOL[new]}", _set_op(i, new)
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            yield node, f"{SYMBOL[type(node.op)]} -> {SYMBOL[new]}", _set_attr("op", new)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "not removed", lambda n: n.operand
        elif isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAP:
            new = BINOP_SWAP[type(node.op)]
            yield node, f"{SYMBOL[type(node.op)]} -> {SYMBOL[new]}", _set_attr("op", new)
        elif isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):
                yield node, f"{value} -> {not value}", _const(not value)
            elif isinstance(value, int):
                yield node, f"{value} -> {value + 1}", _const(value + 1)
            elif isinstance(value, float):
                yield node, f"{value} -> {value * 2 or 1.0}", _const(value * 2 or 1.0)
            elif isinstance(value, str) and value and not _is_docstring(node, parents):
                yield node, f"{_clip(value)!r} -> ''", _const("")
        elif isinstance(node, ast.JoinedStr):
            yield node, f"f-string {_clip(ast.unparse(node))} -> ''", _const("")
        elif isinstance(node, ast.Return) and node.value is not None:
            if not isinstance(node.value, ast.Constant):  # constants have their own operators
                yield node, "return value -> None", _set_attr_value("value", ast.Constant(None))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            yield node, f"call removed: {_clip(ast.unparse(node.value))}", lambda n: ast.Pass()


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _set_op(i, new):
    def apply(node):
        node.ops[i] = new()
        return node

    return apply


def _set_attr(name, new):
    def apply(node):
        setattr(node, name, new())
        return node

    return apply


def _set_attr_value(name, value):
    def apply(node):
        setattr(node, name, copy.deepcopy(value))
        return node

    return apply


def _const(value):
    return lambda node: ast.copy_location(ast.Constant(value), node)


def mutants(target: Target) -> list[Mutant]:
    tree = ast.parse((ROOT / target.path).read_text())
    return [Mutant(target, i, getattr(n, "lineno", 0), what) for i, (n, what, _) in enumerate(_points(tree, target))]


def mutated_source(source: str, mutant: Mutant) -> str:
    tree = ast.parse(source)
    for i, (node, _, apply) in enumerate(_points(tree, mutant.target)):
        if i == mutant.index:
            new = apply(node)
            if new is not node:
                _replace(tree, node, new)
            break
    else:
        raise LookupError(f"mutant {mutant.index} not found in {mutant.target.path}")
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _replace(tree, old, new):
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, name, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return
    raise LookupError("node to replace not found")


# ------------------------------------------------------------------ writing and restoring


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".mutant-tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    # a mutant of the same size written within the same second would pass the .pyc's check
    cached = Path(importlib.util.cache_from_source(str(path)))
    cached.unlink(missing_ok=True)


def restore_leftover() -> str | None:
    """Put back a module a previous, killed run left mutated; say which."""
    if not BACKUP.exists():
        return None
    saved = json.loads(BACKUP.read_text())
    _write(ROOT / saved["path"], saved["text"])
    BACKUP.unlink()
    return saved["path"]


class _Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise _Interrupted(signal.Signals(signum).name)


def run_tests(target: Target, timeout_s: float) -> tuple[str, float]:
    """Run the target's tests against what is on disk now: (killed | survived | timeout, seconds)."""
    args = ["-x", "-q", "--no-header", "-p", "no:cacheprovider", "-o", "addopts=", *target.tests]
    start = time.monotonic()
    if FORK:
        code = _forked_pytest(args, timeout_s)
    else:
        try:
            code = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT,
                                  env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=timeout_s, start_new_session=True).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.monotonic() - start
    if code is None:
        return "timeout", seconds
    # 1: a test failed; 2-4: collection or an import failed (a mutant can break an import); 5: no tests ran
    return {0: "survived", 5: "no tests"}.get(code, "killed"), seconds


# Forking from a parent that has imported pytest, hypothesis and psutil (never portbell) saves a
# second of start-up per mutant; each child imports portbell afresh, so it sees the mutant.
FORK = hasattr(os, "fork")


def _forked_pytest(args, timeout_s: float) -> int | None:
    pid = os.fork()
    if pid == 0:  # the child: its own process group, so a timeout ends the processes a test started too
        code = 3
        try:
            os.setpgid(0, 0)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            sys.dont_write_bytecode = True
            os.chdir(ROOT)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            import pytest

            code = int(pytest.main(args))
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 3
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)
    finally:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _preload() -> None:
    """What every child needs and no mutant changes: imported once, in the parent."""
    if "portbell" in sys.modules or any(m.startswith("portbell.") for m in sys.modules):
        raise RuntimeError("the parent must not import portbell: its children would not see the mutants")
    import pytest  # noqa: F401

    for name in ("hypothesis", "psutil", "sqlite3", "PIL.Image"):
        try:
            __import__(name)
        except ImportError:
            pass


def run(targets, timeout_s: float, fail_under: float) -> int:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    if FORK:
        _preload()
    started = time.monotonic()
    results: list[Mutant] = []
    for target in targets:
        missing = [t for t in target.tests if not (ROOT / t).exists()]
        if missing or not (ROOT / target.path).exists():
            print(f"{target.name}: missing {', '.join(missing) or target.path}: update TARGETS", file=sys.stderr)
            return 2
        status, base_s = run_tests(target, timeout_s * 3)
        if status != "survived":
            print(f"{target.name}: the tests fail without any mutant ({status}); fix them first", file=sys.stderr)
            return 2
        limit = max(timeout_s, base_s * 5)
        path = ROOT / target.path
        original = path.read_text()
        found = mutants(target)
        print(f"{target.name}: {len(found)} mutants of {target.path}, tests take {base_s:.1f}s", file=sys.stderr)
        for m in found:
            BACKUP.write_text(json.dumps({"path": target.path, "text": original}))
            try:
                _write(path, mutated_source(original, m))
                m.status, m.seconds = run_tests(target, limit)
            finally:
                _write(path, original)
                BACKUP.unlink(missing_ok=True)
            results.append(m)
            if m.status == "survived":
                print(f"  survived {target.path}:{m.line}: {m.what}", file=sys.stderr)
    elapsed = time.monotonic() - started
    return report(results, targets, elapsed, fail_under)


def report(results, targets, elapsed: float, fail_under: float) -> int:
    rows, total_killed = [], 0
    print("\nSurvivors:")
    for m in results:
        if m.status not in ("killed", "timeout"):
            print(f"  {m.target.path}:{m.line}: {m.what} ({m.status})")
    print(f"\n{'module':<12} {'file':<26} {'killed':>7} {'total':>6} {'score':>7}")
    for t in targets:
        mine = [m for m in results if m.target is t]
        killed = sum(m.status in ("killed", "timeout") for m in mine)
        total_killed += killed
        score = 100.0 * killed / len(mine) if mine else 100.0
        rows.append({"module": t.name, "path": t.path, "killed": killed, "total": len(mine), "score": round(score, 1)})
        print(f"{t.name:<12} {t.path:<26} {killed:>7} {len(mine):>6} {score:>6.1f}%")
    score = 100.0 * total_killed / len(results) if results else 100.0
    print(f"{'all':<12} {'':<26} {total_killed:>7} {len(results):>6} {score:>6.1f}%")
    print(f"\n{len(results)} mutants in {elapsed / 60:.1f} minutes; score {score:.1f}% (at least {fail_under:g}% wanted)")
    survivors = [{"path": m.target.path, "line": m.line, "what": m.what, "status": m.status}
                 for m in results if m.status not in ("killed", "timeout")]  # fmt: skip
    (RESULTS / "mutation.json").write_text(json.dumps(
        {"score": round(score, 1), "seconds": round(elapsed), "modules": rows, "survivors": survivors}, indent=2))
    return 0 if score >= fail_under else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", help="a row of TARGETS by name (repeatable)")
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per mutant at least (default 30)")
    parser.add_argument("--fail-under", type=float, default=85.0)
    parser.add_argument("--no-fork", action="store_true", help="a fresh interpreter per mutant (slower)")
    args = parser.parse_args(argv)
    global FORK
    FORK = FORK and not args.no_fork
    left = restore_leftover()
    if left:
        print(f"restored {left}: a previous run was stopped with a mutant on disk", file=sys.stderr)
    targets = TARGETS
    if args.module:
        unknown = set(args.module) - {t.name for t in TARGETS}
        if unknown:
            parser.error(f"unknown module {', '.join(sorted(unknown))}; known: {', '.join(t.name for t in TARGETS)}")
        targets = tuple(t for t in TARGETS if t.name in args.module)
    if args.list:
        for t in targets:
            for m in mutants(t):
                print(f"{t.path}:{m.line}: {m.what}")
        return 0
    try:
        return run(targets, args.timeout, args.fail_under)
    except (_Interrupted, KeyboardInterrupt) as err:
        print(f"stopped ({err or 'interrupted'}); every module is restored", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
