"""The load test's report: results as JSON, a Markdown summary, and PNG plots (matplotlib, Agg backend).

``write(results, out_dir)`` takes the dict ``bench.suite`` builds — ``meta``, ``runs`` (one per
route, variant and concurrency, each with its wrk numbers and the ``/now`` probe taken during it),
``idle_probes`` (per variant) and ``locust`` — adds the target checks and the latest results of
the other benchmarks found in ``bench/results`` (the Ignite and Redis client comparisons, the
WebSocket fan-out), and writes ``bench.json``, ``bench.md``, ``routes.png`` and ``probe.png``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

ROUTE_TITLES = {"now": "`/now` (no I/O)", "redis": "Redis read", "mysql": "MySQL point select",
                "slow": "slow MySQL query (50 ms)", "fanout": "four-backend fan-out", "hello": "hello-world"}
VARIANT_ORDER = ["project", "strict", "nopause", "unlimited", "before", "threadpool", "celery", "celery-rabbitmq",
                 "blocking", "hello"]
COLORS = {"project": "#2a9d3f", "strict": "#1d6b8f", "nopause": "#b5a33f", "unlimited": "#6fbf73",
          "before": "#9e9e3a",
          "threadpool": "#e07b00", "celery": "#7b3fb5", "celery-rabbitmq": "#d0609a", "blocking": "#c62828",
          "hello": "#777777"}
# Other benchmarks' result files folded into the report: file -> (title, columns to show, or None for all)
FOLDED: dict[str, tuple[str, list[str] | None]] = {
    "ignite_client.json": ("Ignite client vs pyignite (`python -m bench.ignite_client`)",
                           ["scenario", "client", "ops_per_s", "cpu_us_per_op"]),
    "ignite_cluster.json": ("Ignite client on the three-node cluster (`python -m bench.ignite_cluster`)", None),
    "redis_client.json": ("Pipelined Redis connection vs redis.asyncio (`python -m bench.redis_client`)", None),
    "ws_broadcast.json": ("WebSocket fan-out", None),
}


# -- the machine ----------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    """CPU count and model, memory, OS and Python: what the numbers were taken on."""
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), "")
    except OSError:
        pass
    mem_gib = 0.0
    try:
        kib = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal:"))
        mem_gib = round(kib / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model or platform.processor() or "unknown", "memory_gib": mem_gib,
            "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def git_commit(root: Path) -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip()


# -- lookups --------------------------------------------------------------------------------------

def find_run(results: dict[str, Any], route: str, variant: str, concurrency: int) -> dict[str, Any] | None:
    return next((r for r in results.get("runs", []) if r["route"] == route and r["variant"] == variant
                 and r["concurrency"] == concurrency), None)


def _concurrencies(results: dict[str, Any]) -> list[int]:
    return sorted({r["concurrency"] for r in results.get("runs", [])})


def _routes(results: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for r in results.get("runs", []):
        if r["route"] != "hello" and r["route"] not in seen:
            seen.append(r["route"])
    return seen


def _variants(results: dict[str, Any]) -> list[str]:
    present = {r["variant"] for r in results.get("runs", [])}
    return [v for v in VARIANT_ORDER if v in present and v != "hello"]


# -- targets ---------------------------------------------------------------------------------------

def _ratio(value: float) -> str:
    return f"{value:,.0f}x" if value >= 100 else f"{value:.3g}x" if value >= 10 else f"{value:.3f}x"


def _target(name: str, wanted: str, measured: float | None, met: bool | None, detail: str) -> dict[str, Any]:
    return {"target": name, "wanted": wanted, "measured": None if measured is None else round(measured, 3),
            "met": met, "detail": detail}


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, checked on these results; ``met`` is None where a run is missing."""
    out: list[dict[str, Any]] = []
    levels = _concurrencies(results)
    top = 256 if 256 in levels else (levels[-1] if levels else 0)

    project, pool = find_run(results, "slow", "project", top), find_run(results, "slow", "threadpool", top)
    if project and pool and pool["wrk"]["requests_per_s"] > 0:
        ratio = project["wrk"]["requests_per_s"] / pool["wrk"]["requests_per_s"]
        out.append(_target(f"slow query, c={top}: req/s vs thread pool", ">= 5x", ratio, ratio >= 5,
                           f"{project['wrk']['requests_per_s']:,.0f} vs {pool['wrk']['requests_per_s']:,.0f} req/s"))
    else:
        out.append(_target(f"slow query, c={top}: req/s vs thread pool", ">= 5x", None, None, "not measured"))

    celery = find_run(results, "slow", "celery", top)
    if project and celery and project["wrk"]["p99_ms"] > 0:
        ratio = celery["wrk"]["p99_ms"] / project["wrk"]["p99_ms"]
        out.append(_target(f"slow query, c={top}: p99 vs Celery (lower)", ">= 10x lower", ratio, ratio >= 10,
                           f"{project['wrk']['p99_ms']:,.1f} vs {celery['wrk']['p99_ms']:,.1f} ms"))
    else:
        out.append(_target(f"slow query, c={top}: p99 vs Celery (lower)", ">= 10x lower", None, None, "not measured"))

    idle = results.get("idle_probes", {})
    for variant in ("project", "strict", "nopause", "unlimited", "before", "blocking"):
        base = idle.get(variant)
        name = f"`/now` probe p99 during the slow query vs idle, {variant}"
        wanted = "<= 3x" if variant == "project" else "shown"
        probes = [(lv, (find_run(results, "slow", variant, lv) or {}).get("probe")) for lv in levels]
        probes = [(lv, p) for lv, p in probes if p]
        if not (probes and base and base["p99_ms"] > 0):
            out.append(_target(name, wanted, None, None, "not measured"))
            continue
        ratios_by_level = [(lv, p["p99_ms"] / base["p99_ms"], p) for lv, p in probes]
        worst = max(r for _, r, _ in ratios_by_level)
        detail = ", ".join(f"c={lv}: {'>= ' if p['censored'] else ''}{_ratio(r)} ({fmt(p['p99_ms'])} ms)"
                           for lv, r, p in ratios_by_level) + f"; idle {fmt(base['p99_ms'])} ms"
        out.append(_target(name, wanted, worst, worst <= 3 if variant == "project" else None, detail))

    def goodput(run: dict[str, Any]) -> float:
        wrk = run["wrk"]
        return float((wrk["requests"] - wrk["errors"].get("status", 0)) / wrk["seconds"])

    for other, name in (("before", f"slow query, c={top}: goodput vs before the overload work"),
                        ("unlimited", f"slow query, c={top}: goodput with the adaptive limits vs without")):
        base_run = find_run(results, "slow", other, top)
        if project and base_run and goodput(base_run) > 0:
            ratio = goodput(project) / goodput(base_run)
            out.append(_target(name, ">= 0.9", ratio, ratio >= 0.9,
                               f"{goodput(project):,.0f} vs {goodput(base_run):,.0f} answered 2xx/s"))
        else:
            out.append(_target(name, ">= 0.9", None, None, "not measured"))

    ratios = []
    for level in levels:
        redis, hello = find_run(results, "redis", "project", level), find_run(results, "hello", "hello", level)
        if redis and hello and hello["wrk"]["requests_per_s"] > 0:
            ratios.append((level, redis["wrk"]["requests_per_s"] / hello["wrk"]["requests_per_s"]))
    if ratios:
        worst = min(r for _, r in ratios)
        detail = ", ".join(f"c={level}: {r:.3f}" for level, r in ratios)
        out.append(_target("Redis read req/s vs bare Tornado hello-world", ">= 0.8", worst, worst >= 0.8, detail))
    else:
        out.append(_target("Redis read req/s vs bare Tornado hello-world", ">= 0.8", None, None, "not measured"))
    return out


# -- other benchmarks' results --------------------------------------------------------------------

def fold(results_dir: Path) -> dict[str, Any]:
    """The latest results of the other benchmarks present in ``results_dir``, with their times."""
    folded: dict[str, Any] = {}
    for name, (title, columns) in FOLDED.items():
        path = results_dir / name
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        folded[name] = {"title": title, "columns": columns, "taken": when, "data": data}
    return folded


# -- Markdown -------------------------------------------------------------------------------------

def fmt(value: Any) -> str:
    """Numbers for tables: thousands separators, fewer decimals as they grow."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def table(header: list[str], rows: list[list[Any]], align: str = "lr") -> list[str]:
    """A Markdown table; ``align`` has one letter per column (l or r), its last letter repeating."""
    letters = [align[min(i, len(align) - 1)] for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in letters) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return lines


def generic_table(data: Any, columns: list[str] | None = None) -> list[str]:
    """A free-form JSON result as a table: rows of dicts, a dict of dicts, or a dict of values.

    ``{"runs": [...], ...}`` (what ``bench.ws_broadcast`` writes) is the runs' table, then each
    other key's own table.
    """
    if isinstance(data, dict) and isinstance(data.get("runs"), list):
        out = generic_table(data["runs"], columns)
        for key, value in data.items():
            if key != "runs":
                out += ["", f"{key}:", "", *generic_table(value)]
        return out
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        keys = columns or list(dict.fromkeys(k for r in data for k in r))
        return table(keys, [[r.get(k) for k in keys] for r in data], align="llr")
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        keys = columns or list(dict.fromkeys(k for v in data.values() for k in v))
        return table(["", *keys], [[name, *[v.get(k) for k in keys]] for name, v in data.items()])
    if isinstance(data, dict):
        return table(["metric", "value"], [[k, v] for k, v in data.items()])
    return ["```", json.dumps(data, indent=2), "```"]


def _probe_cell(probe: dict[str, Any] | None) -> str:
    if not probe:
        return ""
    return ("≥ " if probe["censored"] else "") + fmt(probe["p99_ms"])


def route_table(results: dict[str, Any], route: str) -> list[str]:
    """Variants as rows; req/s and p99 per concurrency; the /now probe p99 at the highest concurrency."""
    levels = _concurrencies(results)
    header = ["variant"]
    for level in levels:
        header += [f"c={level} req/s", f"c={level} p99 ms"]
    header += [f"`/now` probe p99 ms (c={levels[-1]})" if levels else "probe", "errors"]
    rows = []
    variants = _variants(results) + (["hello"] if route == "redis" else [])
    for variant in variants:
        source = "hello" if variant == "hello" else route
        runs = [find_run(results, source, variant, level) for level in levels]
        if not any(runs):
            continue
        row: list[Any] = [variant]
        for run in runs:
            row += [run["wrk"]["requests_per_s"], run["wrk"]["p99_ms"]] if run else ["", ""]
        last = runs[-1]
        row += [_probe_cell(last.get("probe") if last else None),
                sum(r["wrk"]["error_count"] for r in runs if r)]
        rows.append(row)
    return table(header, rows)


def probe_table(results: dict[str, Any]) -> list[str]:
    levels = _concurrencies(results)
    top = levels[-1] if levels else 0
    routes = _routes(results)
    header = ["variant", "idle p99 ms", *[f"{r} c={top}" for r in routes], "unanswered (all runs)"]
    rows = []
    for variant in _variants(results):
        row = _probe_row(results, variant, [(route, top) for route in routes])
        row.append(sum((r.get("probe") or {}).get("unanswered", 0) for r in results["runs"]
                       if r["variant"] == variant))
        rows.append(row)
    return table(header, rows)


def probe_by_level_table(results: dict[str, Any], route: str) -> list[str]:
    """The ``/now`` probe p99 while ``route`` runs, per variant and concurrency, next to the idle value."""
    levels = _concurrencies(results)
    rows = [_probe_row(results, variant, [(route, level) for level in levels]) for variant in _variants(results)]
    return table(["variant", "idle p99 ms", *[f"c={lv}" for lv in levels]], rows)


def _probe_row(results: dict[str, Any], variant: str, runs: list[tuple[str, int]]) -> list[Any]:
    """A variant's idle probe p99, then its probe cell for each (route, concurrency) run."""
    idle = results.get("idle_probes", {}).get(variant)
    row: list[Any] = [variant, idle["p99_ms"] if idle else ""]
    for route, level in runs:
        run = find_run(results, route, variant, level)
        row.append(_probe_cell(run.get("probe") if run else None))
    return row


def all_runs_table(results: dict[str, Any]) -> list[str]:
    header = ["route", "variant", "c", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors",
              "probe p50 ms", "probe p99 ms", "probe max ms", "probe unanswered", "RSS MB (idle)", "KB per conn"]
    rows = []
    for r in results.get("runs", []):
        w, p, mem = r["wrk"], r.get("probe") or {}, r.get("memory") or {}
        rows.append([r["route"], r["variant"], r["concurrency"], w["requests"], w["requests_per_s"], w["p50_ms"],
                     w["p90_ms"], w["p99_ms"], w["max_ms"], w["error_count"], p.get("p50_ms", ""),
                     _probe_cell(p) if p else "", p.get("max_ms", ""), p.get("unanswered", ""),
                     f"{mem['rss_peak_mb']:g} ({mem['rss_idle_mb']:g})" if mem else "",
                     mem.get("kb_per_connection", "")])
    return table(header, rows, align="llr")


def markdown(results: dict[str, Any]) -> str:
    meta, m = results.get("meta", {}), results.get("meta", {}).get("machine", {})
    out = ["# Load test: this project and the designs it replaces", ""]
    out += [f"Taken {meta.get('date', '?')} with `{meta.get('command', 'python -m bench')}`"
            f"{' at ' + meta['commit'] if meta.get('commit') else ''}.", ""]
    out += [f"Machine: {m.get('cpus', '?')} CPUs ({m.get('cpu_model', '?')}), {m.get('memory_gib', '?')} GiB, "
            f"{m.get('os', '?')}, Python {m.get('python', '?')}; load average at start "
            f"{', '.join(str(x) for x in m.get('load_average', []))}.", ""]
    for line in meta.get("setup", []):
        out.append(f"- {line}")
    out.append("")
    out += ["## Targets", ""]
    rows = []
    for t in results.get("targets", []):
        verdict = {True: "met", False: "**missed**", None: "—"}[t["met"]]
        rows.append([t["target"], t["wanted"], "" if t["measured"] is None else _ratio(t["measured"]),
                     t["detail"], verdict])
    out += table(["target", "wanted", "measured", "numbers", ""], rows, align="llrl")
    out += ["", "## Throughput and tail latency per route", ""]
    paths = meta.get("paths", {})
    for route in _routes(results):
        out += [f"### {ROUTE_TITLES.get(route, route)}: `{paths.get(route, '')}`", ""]
        out += route_table(results, route)
        out.append("")
    out += ["![throughput and p99 per route](routes.png)", ""]
    rate = meta.get("probe_rate", "?")
    out += [f"## `/now` under load: the fixed-rate probe ({rate} req/s, open loop)", "",
            "p99 in ms from each request's scheduled send; `≥` marks runs where some probe requests were "
            "still unanswered at the deadline (counted at their waiting time, so the value is a lower bound).", ""]
    out += probe_table(results)
    if "slow" in _routes(results):
        out += ["", "During the slow query, by concurrency:", ""]
        out += probe_by_level_table(results, "slow")
    out += ["", "![/now probe p99, idle and under load](probe.png)", ""]
    locust = results.get("locust")
    if locust:
        out += [f"## Locust mix against this project ({locust['users']} users, {fmt(locust['seconds'])} s)", ""]
        out += table(["request", "requests", "failures", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"],
                     [[r["name"], r["requests"], r["failures"], r["requests_per_s"], r["p50_ms"], r["p90_ms"],
                       r["p99_ms"], r["max_ms"]] for r in locust["rows"]])
        out.append("")
    folded = results.get("folded", {})
    if folded:
        out += ["## Other benchmarks (their latest results in bench/results)", ""]
        for name, entry in folded.items():
            out += [f"### {entry['title']}", "", f"`{name}`, written {entry['taken']}.", ""]
            out += generic_table(entry["data"], entry.get("columns"))
            out.append("")
    out += ["## Every run", ""]
    out += all_runs_table(results)
    return "\n".join(out) + "\n"


# -- plots ----------------------------------------------------------------------------------------

def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """``routes.png`` (req/s and p99 against concurrency, per route) and ``probe.png``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plain = FuncFormatter(lambda value, _: f"{value:,.10g}")

    def log_axis(ax: Any) -> None:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(NullFormatter())

    written: list[Path] = []
    routes, levels, variants = _routes(results), _concurrencies(results), _variants(results)
    if routes and levels:
        fig, axes = plt.subplots(2, len(routes), figsize=(3.6 * len(routes), 6.4), squeeze=False)
        for col, route in enumerate(routes):
            top, bottom = axes[0][col], axes[1][col]
            lines = [(v, route) for v in variants] + ([("hello", "hello")] if route == "redis" else [])
            for variant, source in lines:
                runs = [(lv, find_run(results, source, variant, lv)) for lv in levels]
                xs = [lv for lv, r in runs if r]
                if not xs:
                    continue
                style = {"color": COLORS.get(variant), "marker": "o", "label": variant,
                         "linestyle": "--" if variant == "hello" else "-"}
                top.plot(xs, [r["wrk"]["requests_per_s"] for _, r in runs if r], **style)
                bottom.plot(xs, [max(r["wrk"]["p99_ms"], 0.01) for _, r in runs if r], **style)
            top.set_title(ROUTE_TITLES.get(route, route).replace("`", ""), fontsize=10)
            for ax in (top, bottom):
                ax.set_xscale("log", base=2)
                ax.set_xticks(levels, [str(lv) for lv in levels])
                ax.grid(True, alpha=0.3)
            top.set_ylim(bottom=0)
            top.yaxis.set_major_formatter(plain)
            log_axis(bottom)
            bottom.set_xlabel("concurrency (connections)")
            if col == 0:
                top.set_ylabel("requests/s")
                bottom.set_ylabel("p99 latency, ms (log)")
        handles, labels = axes[0][0].get_legend_handles_labels()
        for ax in axes[0]:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
        fig.tight_layout(rect=(0, 0.05, 1, 1))
        path = out_dir / "routes.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    idle = results.get("idle_probes", {})
    if variants and (idle or routes):
        top_level = levels[-1] if levels else 0
        groups = ["idle", *routes]
        width = 0.8 / len(variants)
        fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(groups) + 2), 4.2))
        for i, variant in enumerate(variants):
            values: list[float] = []
            censored: list[bool] = []
            for group in groups:
                probe = idle.get(variant) if group == "idle" else (
                    (find_run(results, group, variant, top_level) or {}).get("probe"))
                values.append(max(probe["p99_ms"], 0.01) if probe else 0.0)
                censored.append(bool(probe and probe.get("censored")))
            positions = [g + (i - (len(variants) - 1) / 2) * width for g in range(len(groups))]
            bars = ax.bar(positions, values, width, color=COLORS.get(variant), label=variant)
            for bar, cut in zip(bars, censored, strict=True):
                if cut:
                    bar.set_hatch("//")
                    ax.annotate("≥", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                                va="bottom", fontsize=8)
        log_axis(ax)
        ax.set_xticks(range(len(groups)), [g if g == "idle" else f"{g}\nc={top_level}" for g in groups])
        ax.set_ylabel("/now probe p99, ms (log)")
        ax.set_title("/now latency from a fixed-rate probe, idle and while each route is under load", fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        path = out_dir / "probe.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# -- all of it -------------------------------------------------------------------------------------

def write(results: dict[str, Any], out_dir: Path, folded_dir: Path | None = RESULTS) -> list[Path]:
    """Add targets and folded results to ``results``; write bench.json, bench.md and the plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results["targets"] = targets(results)
    if folded_dir is not None:
        results["folded"] = fold(folded_dir)
    json_path, md_path = out_dir / "bench.json", out_dir / "bench.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(markdown(results))
    return [json_path, md_path, *plot(results, out_dir)]
