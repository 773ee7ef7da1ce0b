"""Redis GET: the pipelined connection against redis.asyncio's pools, same server, same run.

    .venv/bin/python -m bench.redis_client [--address 127.0.0.1:16379] [--seconds 2]

For concurrency 1 and 64 it prints GETs per second and the client process's CPU
time per GET (``time.process_time()`` over the run) for ``RedisClient.get``
(pipelined, with its retry wrapper), the bare ``PipelinedRedis``, and
redis.asyncio with a ``BlockingConnectionPool`` (what ``RedisClient`` used
before) and its default pool; then the CPU ratios against redis.asyncio.
Results are also written to ``bench/results/redis_client.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aredis
import uvloop

from drivers.redis import PipelinedRedis, RedisClient, RedisConfig

RESULTS = Path(__file__).resolve().parent / "results"
KEY = "bench:redis_client"


async def _timed(get: Callable[[], Awaitable[Any]], concurrency: int, seconds: float) -> tuple[float, float]:
    """(GETs per second, CPU µs per GET) from ``concurrency`` workers over ``seconds``."""
    for _ in range(200):
        await get()  # warm up: connections open, caches hot
    stop_at = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await get()
            done += 1

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return done / wall, cpu / done * 1e6


async def main(host: str, port: int, seconds: float) -> list[dict[str, Any]]:
    client = RedisClient(RedisConfig(host=host, port=port, pool_max=64))
    await client.start()
    await client.set(KEY, "v" * 32)
    pipe = PipelinedRedis(RedisConfig(host=host, port=port))
    blocking = aredis.Redis(connection_pool=aredis.BlockingConnectionPool(host=host, port=port, max_connections=64))
    default = aredis.Redis(host=host, port=port)
    contenders: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("RedisClient.get (pipelined)", lambda: client.get(KEY)),
        ("PipelinedRedis.execute", lambda: pipe.execute("GET", KEY)),
        ("redis.asyncio BlockingConnectionPool", lambda: blocking.get(KEY)),
        ("redis.asyncio default pool", lambda: default.get(KEY)),
    ]
    rows: list[dict[str, Any]] = []
    try:
        for concurrency in (1, 64):
            for name, get in contenders:
                ops, cpu_us = await _timed(get, concurrency, seconds)
                rows.append({"client": name, "concurrency": concurrency, "ops_per_s": round(ops),
                             "cpu_us_per_op": round(cpu_us, 1)})
    finally:
        await client.aclose()
        await pipe.aclose()
        await blocking.aclose()
        await default.aclose()
    return rows


def report(rows: list[dict[str, Any]]) -> None:
    print(f"{'client':40} {'conc':>4} {'GET/s':>9} {'CPU µs/GET':>11} {'CPU vs blocking pool':>21}")
    for row in rows:
        base = next(r for r in rows if r["concurrency"] == row["concurrency"]
                    and r["client"] == "redis.asyncio BlockingConnectionPool")
        ratio = row["cpu_us_per_op"] / base["cpu_us_per_op"]
        print(f"{row['client']:40} {row['concurrency']:>4} {row['ops_per_s']:>9,} {row['cpu_us_per_op']:>11.1f} "
              f"{ratio:>21.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:16379")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    host, _, port = args.address.rpartition(":")
    results = uvloop.run(main(host, int(port), args.seconds))
    report(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "redis_client.json").write_text(json.dumps(results, indent=2) + "\n")
