"""Running ``bench/locustfile.py`` headless and reading its CSV stats.

locust writes ``PREFIX_stats.csv`` (one row per request name, and an ``Aggregated`` row),
``PREFIX_failures.csv``, ``PREFIX_exceptions.csv`` and ``PREFIX_stats_history.csv``.  It exits
1 when any request failed; that is a result here (the failures are counted), not an error.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.wrk import pin

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
_NUMBERS = {"Request Count": "requests", "Failure Count": "failures", "Requests/s": "requests_per_s",
            "Median Response Time": "p50_ms", "90%": "p90_ms", "99%": "p99_ms", "Max Response Time": "max_ms",
            "Average Response Time": "mean_ms"}


class LocustError(RuntimeError):
    """locust failed to run or wrote no stats; the message ends with its output."""


def read_stats(path: Path) -> list[dict[str, Any]]:
    """One dict per row of a locust ``_stats.csv``: name, requests, failures, requests/s, latency in ms."""
    rows: list[dict[str, Any]] = []
    with path.open(newline="") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {"name": f"{raw.get('Type', '')} {raw['Name']}".strip()}
            for column, key in _NUMBERS.items():
                value = raw.get(column, "")
                try:
                    number = float(value)
                except ValueError:
                    row[key] = None
                    continue
                row[key] = int(number) if key in ("requests", "failures") else round(number, 2)
            rows.append(row)
    return rows


def run(host: str, csv_prefix: Path, *, users: int = 64, seconds: float = 20.0, cpu: int | None = None,
        locustfile: Path = LOCUSTFILE) -> dict[str, Any]:
    """Run locust headless against ``host`` (loopback only); its stats rows, the ``Aggregated`` row last."""
    if not host.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise LocustError(f"refusing to load a non-loopback address: {host}")
    csv_prefix.parent.mkdir(parents=True, exist_ok=True)
    argv = [*pin(cpu), sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(users),
            "-r", str(users), "-t", f"{max(1, round(seconds))}s", "--host", host, "--csv", str(csv_prefix),
            "--only-summary", "--stop-timeout", "5", "--loglevel", "WARNING"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    except subprocess.TimeoutExpired:
        raise LocustError(f"locust did not finish within {seconds + 60:g} s") from None
    stats = Path(f"{csv_prefix}_stats.csv")
    if done.returncode not in (0, 1) or not stats.exists():
        output = (done.stderr or done.stdout).strip().splitlines()[-10:]
        raise LocustError(f"locust exited {done.returncode} without stats:\n" + "\n".join(output))
    rows = read_stats(stats)
    total = next((r for r in rows if r["name"].endswith("Aggregated")), None)
    return {"host": host, "users": users, "seconds": seconds, "csv": str(stats), "rows": rows, "total": total}
