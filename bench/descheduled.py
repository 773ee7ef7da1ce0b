"""The shedding scenario on a machine that takes the CPU away now and then: this tree against an earlier commit.

    .venv/bin/python -m bench.descheduled --before c4d4ca8 --rounds 2 --stop-ms 10 --every-ms 40

A hypervisor or another process sometimes keeps a server off the CPU; its event loop then runs
late without having done any work.  Here the server is stopped (SIGSTOP, SIGCONT) for
``--stop-ms`` every ``--every-ms`` while wrk holds the slow query (``GET /mysql/sleep?s=0.05``)
at 256 connections, with a MySQL pool of 256 as in the suite's shedding scenario.  Each round
runs the server from the earlier commit (a temporary git worktree) and from this tree, one after
the other, with the same stack (it must be up) and interpreter.  Printed per run: 2xx/s, non-2xx
answers, and MySQL's limit sampled from ``/metrics`` every 0.5 s.  Written:
``bench/results/descheduled.json``.  Loopback only; every run stops by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import wrk
from bench.ab import worktree

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PORT = 18391
URL = f"http://127.0.0.1:{PORT}/mysql/sleep?s=0.05"


def _limit() -> float | None:
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    found = re.search(r'^backend_limit\{backend="mysql",stat="limit"\} (\S+)$', body, re.M)
    return float(found.group(1)) if found else None


def run_one(tree: Path, stop_s: float, every_s: float, seconds: float) -> dict[str, Any]:
    env = dict(os.environ, ASYNCSTACK_SERVER__ACCESS_LOG="false", ASYNCSTACK_MYSQL__POOL_MAX="256")
    server = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(PORT)], cwd=tree, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = threading.Event()
    try:
        deadline = time.monotonic() + 30
        while _limit() is None:
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit(f"the server in {tree} did not start")
            time.sleep(0.2)
        wrk.run(URL, seconds=2, connections=256)                      # warm-up, not measured
        limits: list[float] = []

        def stop_now_and_then() -> None:
            while not done.is_set():
                if stop_s:
                    os.kill(server.pid, signal.SIGSTOP)
                    try:
                        time.sleep(stop_s)
                    finally:
                        os.kill(server.pid, signal.SIGCONT)
                time.sleep(max(0.0, every_s - stop_s))

        def sample() -> None:
            while not done.wait(0.5):
                value = _limit()
                if value is not None:
                    limits.append(value)

        threads = [threading.Thread(target=stop_now_and_then), threading.Thread(target=sample)]
        for thread in threads:
            thread.start()
        try:
            result = wrk.run(URL, seconds=seconds, connections=256)
        finally:
            done.set()
            for thread in threads:
                thread.join()
        non_2xx = result.errors.get("status", 0)
        return {"ok_per_s": round((result.requests - non_2xx) / result.seconds, 1), "non_2xx": non_2xx,
                "p99_ms": result.p99_ms, "limit_median": statistics.median(limits) if limits else None,
                "limit_min": min(limits, default=None)}
    finally:
        done.set()
        os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier commit")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--stop-ms", type=float, default=10.0, help="how long each stop lasts (0: no stops)")
    parser.add_argument("--every-ms", type=float, default=40.0, help="a stop begins this often")
    parser.add_argument("--seconds", type=float, default=8.0)
    opts = parser.parse_args()
    rows = []
    with worktree(opts.before) as before_tree:
        for i in range(opts.rounds):
            for label, tree in (("before", before_tree), ("after", ROOT)):
                row = {"round": i + 1, "tree": label, "commit": opts.before if label == "before" else "this tree",
                       "stop_ms": opts.stop_ms, "every_ms": opts.every_ms,
                       **run_one(tree, opts.stop_ms / 1000, opts.every_ms / 1000, opts.seconds)}
                print(f"round {row['round']} {label:6s} {row['ok_per_s']:8,.0f} 2xx/s  "
                      f"{row['non_2xx']:5d} non-2xx  "
                      f"p99 {row['p99_ms']:7.1f} ms  MySQL limit median {row['limit_median']} "
                      f"(lowest {row['limit_min']})", flush=True)
                rows.append(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "descheduled.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
