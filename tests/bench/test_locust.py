"""The locust mix runs headless against the service and its CSV stats are read."""

from __future__ import annotations

from pathlib import Path

from bench import locust_runner
from bench.servers import Server


def test_a_short_headless_run_succeeds_on_every_request(bench_servers: dict[str, Server], tmp_path: Path) -> None:
    stats = locust_runner.run(bench_servers["project"].url, tmp_path / "locust", users=4, seconds=3)
    total = stats["total"]
    assert total is not None and total["requests"] > 20
    assert total["failures"] == 0, [r for r in stats["rows"] if r["failures"]]
    names = {r["name"] for r in stats["rows"]}
    assert {"GET /redis/kv/[key]", "GET /mysql/items/[id]"} <= names
    assert (tmp_path / "locust_stats.csv").exists()


def test_read_stats_turns_the_csv_into_numbers(tmp_path: Path) -> None:
    csv = tmp_path / "x_stats.csv"
    csv.write_text("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
                   "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,"
                   "80%,90%,95%,98%,99%,99.9%,99.99%,100%\n"
                   "GET,/now,120,2,3,3.5,1,40,30,60.5,1.0,3,4,4,5,6,7,9,12,40,40,40\n"
                   ",Aggregated,120,2,3,3.5,1,40,30,60.5,1.0,3,4,4,5,6,7,9,12,40,40,N/A\n")
    rows = locust_runner.read_stats(csv)
    assert rows[0] == {"name": "GET /now", "requests": 120, "failures": 2, "requests_per_s": 60.5, "p50_ms": 3.0,
                       "p90_ms": 6.0, "p99_ms": 12.0, "max_ms": 40.0, "mean_ms": 3.5}
    assert rows[1]["name"] == "Aggregated"
