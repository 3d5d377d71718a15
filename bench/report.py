"""Turning a run's results into targets and a markdown report. Imports: the standard library.

Works on the plain dict that is also written as JSON, so what is printed and
what is saved cannot disagree.
"""

from __future__ import annotations

# The sampler targets of PRODUCT.md, "Performance". The daemon-level ones (CPU
# share at a 1 s interval, resident memory) are measured elsewhere.
IDLE_CPU_LIMIT_MS = 0.15
IDLE_RATIO_MIN = 50
ESTABLISHED_RATIO_MIN = 500
ATTRIBUTION_LIMIT_MS = 5.0

OPENERS = ("new process", "old process")
BUSY_LISTENERS = 50  # listeners of other programs beyond which a scale is not what its name says


def ratio(scale: dict) -> float | None:
    """How many times cheaper (CPU, medians) a sockdiag sample is than psutil.net_connections()."""
    sockdiag = scale["sockdiag"]["cpu_ms"]["median"]
    baseline = scale["net_connections"]["cpu_ms"]["median"]
    return baseline / sockdiag if sockdiag > 0 else None


def targets(scales: dict[str, dict], asked: list[str]) -> list[dict]:
    out = [
        _at_most("steady-state sockdiag sample, idle (CPU median)", scales.get("idle"),
                 lambda s: s["sockdiag"]["cpu_ms"]["median"], IDLE_CPU_LIMIT_MS, "ms"),
        _at_least("cheaper than psutil.net_connections, idle", scales.get("idle"), ratio, IDLE_RATIO_MIN),
        _at_least("cheaper than psutil.net_connections, 10,000 established connections",
                  scales.get("established"), ratio, ESTABLISHED_RATIO_MIN),
    ]
    for opener in OPENERS:
        for name in asked:
            out.append(_attributed(name, scales.get(name), opener))
    return out


def _target(text: str, limit: str, measured: float | None, verdict: str, note: str = "") -> dict:
    return {"target": text, "limit": limit, "measured": measured, "verdict": verdict, "note": note}


def _at_most(text, scale, pick, limit, unit) -> dict:
    if scale is None:
        return _target(text, f"<= {limit} {unit}", None, "SKIP", "scale not measured")
    value = pick(scale)
    return _target(text, f"<= {limit} {unit}", value, "PASS" if value <= limit else "FAIL")


def _at_least(text, scale, pick, minimum) -> dict:
    if scale is None:
        return _target(text, f">= {minimum}x", None, "SKIP", "scale not measured")
    value = pick(scale)
    ok = value is not None and value >= minimum
    return _target(text, f">= {minimum}x", value, "PASS" if ok else "FAIL")


def _attributed(name: str, scale: dict | None, opener: str) -> dict:
    article = "an" if opener[0] in "aeiou" else "a"
    text = f"new listener opened by {article} {opener} attributed to its pid, {name} (wall median)"
    limit = f"<= {ATTRIBUTION_LIMIT_MS:g} ms, right pid in the first sample"
    if scale is None:
        return _target(text, limit, None, "SKIP", "scale not measured")
    found = scale["attribution"][opener]
    wall = found["wall_ms"]["median"]
    if wall is None:
        return _target(text, limit, None, "FAIL", "no repetition completed")
    right_first = found["first_sample_ok"] == found["reps"]
    note = "" if right_first else f"right pid in the first sample {found['first_sample_ok']}/{found['reps']} times"
    ok = wall <= ATTRIBUTION_LIMIT_MS and right_first
    return _target(text, limit, wall, "PASS" if ok else "FAIL", note)


# --- markdown ---------------------------------------------------------------------------


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.3f}"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}"


def _median_p90(timing: dict) -> str:
    cpu = timing["cpu_ms"]
    return f"{ms(cpu['median'])} ({ms(cpu['p90'])})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def main_table(scales: dict[str, dict]) -> list[str]:
    header = [
        "scale",
        "sockdiag median ms (p90)",
        "psutil sampler ms (p90)",
        "psutil.net_connections ms (p90)",
        "ratio",
        "new-listener attribution ms (cpu/wall)",
    ]
    rows = []
    for name, scale in scales.items():
        found = scale["attribution"]["new process"]
        times = ratio(scale)
        rows.append([
            name,
            _median_p90(scale["sockdiag"]),
            _median_p90(scale["psutil_sampler"]),
            _median_p90(scale["net_connections"]),
            f"{times:.0f}x" if times else "-",
            f"{ms(found['cpu_ms']['median'])} / {ms(found['wall_ms']['median'])}",
        ])
    return _table(header, rows)


def attribution_table(scales: dict[str, dict]) -> list[str]:
    header = ["scale", "listener opened by", "cpu ms (median)", "wall ms (median)", "wall ms (max)", "right pid in first sample"]
    rows = []
    for name, scale in scales.items():
        for opener in OPENERS:
            found = scale["attribution"][opener]
            rows.append([
                name,
                opener,
                ms(found["cpu_ms"]["median"]),
                ms(found["wall_ms"]["median"]),
                ms(found["wall_ms"]["max"]),
                f"{found['first_sample_ok']}/{found['reps']}",
            ])
    return _table(header, rows)


def details_table(scales: dict[str, dict]) -> list[str]:
    header = [
        "scale",
        "sockdiag samples",
        "sockdiag CPU mean / max ms",
        "sockdiag after a pid was created, median (p90) ms",
        "fresh sampler, first sample CPU ms",
        "psutil samples (sampler / net_connections)",
        "listeners sockdiag / psutil",
    ]
    rows = []
    for name, scale in scales.items():
        sd = scale["sockdiag"]
        same = scale["same_listeners"]
        rows.append([
            name,
            str(sd["n"]),
            f"{ms(sd['cpu_ms']['mean'])} / {ms(sd['cpu_ms']['max'])}",
            _median_p90(scale["sockdiag_pid_moved"]),
            ms(scale["sockdiag_fresh_first"]["cpu_ms"]),
            f"{scale['psutil_sampler']['n']} / {scale['net_connections']['n']}",
            f"{same['sockdiag']} / {same['psutil']} ({same['others']} not ours)"
            + (f", {same['moving']} changing meanwhile" if same["moving"] else "")
            + ("" if same["agree"] else " (differ)"),
        ])
    return _table(header, rows)


def markdown(doc: dict) -> str:
    scales = doc["scales"]
    load = doc["machine"]["loadavg_1min"]
    lines = [f"# portbell sampler benchmark ({doc['mode']} run, {doc['machine']['summary']})", ""]
    found = doc["machine"]["listeners"]
    lines += [f"Machine before/after the run: load average (1 min) {load['start']:.2f} / {load['end']:.2f}, "
              f"listeners {found['start']} / {found['end']}.", ""]
    busy = {name: s["same_listeners"]["others"] for name, s in scales.items()
            if s["same_listeners"]["others"] > BUSY_LISTENERS}
    if busy:
        lines += [f"WARNING: other programs held many listeners during scales {busy}: "
                  "those rows measure a busier machine than their name says.", ""]
    lines += ["CPU time per sample, median (p90), in ms; ratio = psutil.net_connections / sockdiag medians.", ""]
    if scales:
        lines += main_table(scales) + [""]
        lines += ["One new listener: the sample() call that first sees it.", ""]
        lines += attribution_table(scales) + [""]
        lines += ["Details.", ""]
        lines += details_table(scales) + [""]
    lines += ["Targets (PRODUCT.md, Performance; sampler targets only):", ""]
    for t in doc["targets"]:
        measured = "-" if t["measured"] is None else (
            f"{t['measured']:.0f}x" if t["limit"].startswith(">=") else f"{ms(t['measured'])} ms")
        note = f"  [{t['note']}]" if t["note"] else ""
        lines.append(f"    {t['verdict']:4}  {t['target']}: {measured} (target {t['limit']}){note}")
    for name, scale in scales.items():
        for opener in OPENERS:
            for problem in scale["attribution"][opener]["problems"]:
                lines.append(f"    note  {name}, {opener}: {problem}")
        if not scale["same_listeners"]["agree"]:
            lines.append(f"    note  {name}: the samplers disagree: {scale['same_listeners']}")
    lines.append("")
    for name, error in doc["errors"].items():
        lines.append(f"ERROR  {name}: {error}")
    left = doc["teardown"]["leftover_pids"]
    lines.append(f"Teardown: {'no helper process left' if not left else f'LEFTOVER helper processes {left}'}; "
                 f"TCP sockstat after: {doc['teardown']['sockstat_tcp']}.")
    lines.append(f"Run took {doc['duration_s']:.0f} s.")
    return "\n".join(lines)
