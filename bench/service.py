"""wrk against the service: ``/now``, a Redis read, a MySQL point select and ``/fanout``, 1 and N workers.

    .venv/bin/python -m bench.service [--seconds 5] [--connections 64] [--workers 2]

Needs ``wrk`` (Debian: ``apt-get install -y wrk``) and the local stack (``python -m stack up``);
it seeds the items itself.  Loopback only; every run is bounded by ``--seconds``; the servers it
starts are stopped with SIGTERM.  In the same run it measures a bare Tornado hello-world
(``bench/hello.py``): with ``taskset`` available, single-process servers are pinned to CPU 0 and wrk
to CPU 1, so the hello-world and the one-worker service get the same core.  Multi-worker runs are
not pinned (the load generator shares the machine).  Results go to ``bench/results/service.json``
and ``service.md``; the service's access log is off during the runs (``--access-log`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.servers import stop_process

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
ENDPOINTS = {"now": "/now", "redis_read": "/redis/kv/items:1", "mysql_item": "/mysql/items/1",
             "fanout": "/fanout/1"}


@dataclass
class Run:
    target: str
    endpoint: str
    workers: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


def _start(cmd: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **env})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                pass
            break
        except urllib.error.HTTPError:
            break  # it answers (the service has no "/": 404)
        except OSError:
            time.sleep(0.1)
    time.sleep(1.0)  # every worker up
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc, 20)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: int, connections: int, cpu: int | None) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, errors) of one wrk run."""
    out = subprocess.run([*_pin(cpu), "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|timeout|read|write|connect) (\d+)", out))
    return rps, p50, p99, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="the N of the multi-worker runs")
    parser.add_argument("--access-log", action="store_true", help="keep the service's access log on")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("error: wrk is not installed (Debian/Ubuntu: sudo apt-get install -y wrk)", file=sys.stderr)
        return 2
    seeded = subprocess.run([sys.executable, "-m", "app", "seed"], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    if seeded.returncode != 0:
        print(f"error: seeding failed (is the stack up?): {seeded.stderr}", file=sys.stderr)
        return 2
    env = {"ASYNCSTACK_SERVER__ACCESS_LOG": "true" if args.access_log else "false",
           "ASYNCSTACK_MYSQL__POOL_MAX": str(args.connections), "ASYNCSTACK_REDIS__POOL_MAX": str(args.connections)}
    runs: list[Run] = []

    def record(target: str, endpoint: str, workers: int, url: str, cpu: int | None) -> None:
        rps, p50, p99, errors = wrk(url, args.seconds, args.connections, cpu)
        runs.append(Run(target, endpoint, workers, round(rps, 1), round(p50, 3), round(p99, 3), errors))
        print(f"{target:8} {endpoint:11} workers={workers}  {rps:9.1f} req/s  p50 {p50:7.2f} ms  "
              f"p99 {p99:7.2f} ms  errors {errors}", flush=True)

    port = _free_port()
    hello = _start([*_pin(0), sys.executable, "-m", "bench.hello", str(port)], port, {})
    try:
        record("hello", "hello", 1, f"http://127.0.0.1:{port}/", 1)
    finally:
        _stop(hello)
    for workers in (1, args.workers):
        port = _free_port()
        pin = 0 if workers == 1 else None
        server = _start([*_pin(pin), sys.executable, "-m", "app", "serve", "--port", str(port),
                         "--workers", str(workers)], port, env)
        try:
            for name, path in ENDPOINTS.items():
                record("service", name, workers, f"http://127.0.0.1:{port}{path}", 1 if pin == 0 else None)
        finally:
            _stop(server)

    def rps(endpoint: str, workers: int) -> float:
        return next(r.requests_per_s for r in runs if r.endpoint == endpoint and r.workers == workers)

    hello_rps = rps("hello", 1)
    summary = {
        "redis_read_vs_hello": round(rps("redis_read", 1) / hello_rps, 3),
        **{f"{e}_{args.workers}_workers_vs_1": round(rps(e, args.workers) / rps(e, 1), 3) for e in ENDPOINTS},
    }
    print(json.dumps(summary, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"seconds": args.seconds, "connections": args.connections, "cpus": os.cpu_count(),
            "pinned": bool(shutil.which("taskset")), "access_log": args.access_log}
    (RESULTS / "service.json").write_text(json.dumps({"meta": meta, "runs": [asdict(r) for r in runs],
                                                      "summary": summary}, indent=2))
    lines = ["| target | endpoint | workers | req/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.target} | {r.endpoint} | {r.workers} | {r.requests_per_s} | {r.p50_ms} | {r.p99_ms} | "
              f"{r.errors} |" for r in runs]
    (RESULTS / "service.md").write_text("\n".join(lines) + "\n\n" + json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
