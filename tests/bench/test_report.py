"""The report: targets checked on given numbers, Markdown tables, plots, other benchmarks folded in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import report


def _run(route: str, variant: str, c: int, rps: float, p99: float, probe_p99: float | None = None,
         censored: bool = False) -> dict[str, Any]:
    probe = None if probe_p99 is None else {"p50_ms": probe_p99 / 2, "p99_ms": probe_p99, "max_ms": probe_p99 * 2,
                                            "ok": 100, "failed": 0, "unanswered": 3 if censored else 0,
                                            "censored": censored}
    wrk = {"requests": int(rps * 8), "seconds": 8.0, "requests_per_s": rps, "p50_ms": p99 / 2, "p90_ms": p99 * 0.8,
           "p99_ms": p99, "max_ms": p99 * 1.5, "mean_ms": p99 / 2, "errors": {}, "error_count": 0}
    return {"route": route, "path": "/x", "variant": variant, "concurrency": c, "wrk": wrk, "probe": probe}


def results() -> dict[str, Any]:
    return {
        "meta": {"date": "2026-01-01 00:00 UTC", "command": "python -m bench", "probe_rate": 100,
                 "machine": {"cpus": 2, "cpu_model": "test cpu", "memory_gib": 4.0}, "setup": ["one line"],
                 "paths": {"slow": "/mysql/sleep?s=0.05", "redis": "/redis/kv/items:1"}},
        "runs": [
            _run("hello", "hello", 256, 4000, 60),
            _run("redis", "project", 256, 3500, 70, 40),
            _run("slow", "project", 256, 3000, 100, 2.4),
            _run("slow", "threadpool", 256, 500, 600, 3.0),
            _run("slow", "celery", 256, 400, 900, 5.0),
            _run("slow", "blocking", 256, 19.0, 7000, 5000, censored=True),
        ],
        "idle_probes": {v: {"p50_ms": 0.4, "p99_ms": 1.0} for v in ("project", "threadpool", "celery", "blocking")},
        "locust": None,
    }


def test_targets_are_checked_against_the_ratios() -> None:
    checked = {t["target"]: t for t in report.targets(results())}
    throughput = checked["slow query, c=256: req/s vs thread pool"]
    assert (throughput["measured"], throughput["met"]) == (6.0, True)
    p99 = checked["slow query, c=256: p99 vs Celery (lower)"]
    assert (p99["measured"], p99["met"]) == (9.0, False)
    probe = checked["`/now` probe p99 during the slow query vs idle, project"]
    assert (probe["measured"], probe["met"]) == (2.4, True)
    blocking = checked["`/now` probe p99 during the slow query vs idle, blocking"]
    assert blocking["measured"] == 5000 and blocking["detail"].startswith("c=256: >= 5,000x")
    redis = checked["Redis read req/s vs bare Tornado hello-world"]
    assert (redis["measured"], redis["met"]) == (0.875, True)


def test_a_missing_run_is_not_measured_rather_than_met() -> None:
    partial = results()
    partial["runs"] = [r for r in partial["runs"] if r["variant"] != "threadpool"]
    throughput = next(t for t in report.targets(partial) if "thread pool" in t["target"])
    assert throughput["met"] is None and throughput["detail"] == "not measured"


def test_write_produces_json_markdown_and_two_pngs(tmp_path: Path) -> None:
    folded = tmp_path / "other"
    folded.mkdir()
    (folded / "ws_broadcast.json").write_text(json.dumps({"clients": 1000, "p99_ms": 12.5}))
    (folded / "ignite_client.json").write_text(json.dumps([
        {"scenario": "get c=64", "client": "this client", "ops_per_s": 78604.6, "cpu_us_per_op": 12.4, "ops": 1}]))
    out = tmp_path / "out"
    written = report.write(results(), out, folded_dir=folded)
    assert [p.name for p in written] == ["bench.json", "bench.md", "routes.png", "probe.png"]
    for png in written[2:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    data = json.loads((out / "bench.json").read_text())
    assert set(data["folded"]) == {"ws_broadcast.json", "ignite_client.json"}
    md = (out / "bench.md").read_text()
    assert "| project | 3,000 | 100 | 2.40 | 0 |" in md          # slow route: req/s, p99, probe p99, errors
    assert "| blocking | 19.0 | 7,000 | ≥ 5,000 | 0 |" in md     # an unanswered probe is a lower bound
    assert "| clients | 1,000 |" in md and "| p99_ms | 12.5 |" in md   # the free-form WebSocket results
    assert "| get c=64 | this client | 78,605 | 12.4 |" in md          # only the chosen Ignite columns
    targets = md.split("## Targets")[1].split("## Throughput")[0]
    assert "| 6.000x | 3,000 vs 500 req/s | met |" in targets
    assert "| 9.000x | 100.0 vs 900.0 ms | **missed** |" in targets


def test_a_folded_result_with_runs_renders_the_runs_as_a_table_then_the_rest() -> None:
    lines = report.generic_table({"meta": {"connections": 10}, "runs": [{"target": "a", "p99_ms": 1.5},
                                                                        {"target": "b", "p99_ms": 250.0}],
                                  "summary": {"ratio": 3.0}})
    assert lines[0] == "| target | p99_ms |"
    assert lines[2:4] == ["| a | 1.50 |", "| b | 250 |"]
    assert "meta:" in lines and "summary:" in lines
    assert "| connections | 10 |" in lines and "| ratio | 3.00 |" in lines
