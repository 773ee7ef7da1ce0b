"""CPU time per call of the two Celery variants: their pinned worker and web processes, and their broker.

    .venv/bin/python -m bench.celery_cpu [--concurrency 64] [--seconds 8] [--rounds 2]
    # the stack and RabbitMQ up first: python -m stack up && python -m stack up rabbitmq

Starts ``celery`` and ``celery-rabbitmq`` as the load test does (each pinned to CPU 0, 32 worker
threads, wrk on CPU 1), and in turn, round after round, runs wrk against the 50 ms query after a
2 s warm-up; reads each process's user + system time from ``/proc/<pid>/stat`` before and after,
and prints it per answered request.  The broker (Redis or RabbitMQ's ``beam.smp``) is found by its
listening port and is not pinned.  Only the servers' logs are written (``bench/results/logs/``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

from app.settings import load_settings
from bench import report, servers, wrk
from stack import rabbitmq

PATH = "/mysql/sleep?s=0.05"
VARIANTS = ["celery", "celery-rabbitmq"]
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def listener(port: int) -> int | None:
    """The pid of the process listening on a loopback TCP port, if ``ss`` can tell."""
    try:
        out = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=5,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r"pid=(\d+)", out)
    return int(found.group(1)) if found else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    broker_port = {"celery": load_settings().redis.port, "celery-rabbitmq": rabbitmq.PORT}
    started = servers.start_all(VARIANTS, report.RESULTS / "logs", cpu=0, threads=32, mysql_pool=32)
    try:
        for round_ in range(args.rounds):
            for name in VARIANTS:
                server = started[name]
                url = server.url + PATH
                wrk.run(url, seconds=2, connections=args.concurrency, cpu=1)
                servers.settle(server)
                pids = [proc.pid for proc in server.procs]   # [worker, web]
                broker = listener(broker_port[name])
                before = [cpu_s(pid) for pid in pids], cpu_s(broker) if broker else 0.0
                result = wrk.run(url, seconds=args.seconds, connections=args.concurrency, cpu=1)
                after = [cpu_s(pid) for pid in pids], cpu_s(broker) if broker else 0.0
                servers.settle(server)
                per = 1000 / max(result.requests, 1)
                worker, web = ((a - b) * per for a, b in zip(after[0], before[0], strict=True))
                broker_ms = f"{(after[1] - before[1]) * per:.2f}" if broker else "?"
                print(f"round {round_ + 1} {name:<16} c={args.concurrency} {result.requests_per_s:6.0f} req/s "
                      f"p99 {result.p99_ms:6.0f} ms | CPU ms per call: worker {worker:.2f} + web {web:.2f} "
                      f"= {worker + web:.2f} pinned, broker {broker_ms}", flush=True)
    finally:
        for server in started.values():
            server.stop()


if __name__ == "__main__":
    main()
