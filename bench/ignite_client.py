"""This Ignite client against pyignite 0.6.1 (AioClient and sync Client), same node, same run.

    .venv/bin/python -m bench.ignite_client [--node 127.0.0.1:10800] [--seconds 2]

For each scenario and client it prints operations per second and the client
process's CPU time per operation (``time.process_time()`` over the run), then
the ratios.  On a 2-core machine the node shares the CPU with the client, so
throughput can be bound by the node; CPU per operation is the client's own cost.
Every scenario runs for a bounded time and against loopback only.  Results are
also written to ``bench/results/ignite_client.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvloop
from pyignite import AioClient as PyAioClient
from pyignite import Client as PySyncClient

from drivers.ignite import Client

RESULTS = Path(__file__).resolve().parent / "results"
VALUE = "v" * 32  # a small value


@dataclass
class Result:
    scenario: str
    client: str
    ops: int
    seconds: float
    cpu_s: float

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds

    @property
    def cpu_us_per_op(self) -> float:
        return self.cpu_s / self.ops * 1e6


async def _timed(scenario: str, client: str, seconds: float, unit: int,
                 step: Callable[[int], Awaitable[Any]], concurrency: int) -> Result:
    """Run ``step`` from ``concurrency`` workers until ``seconds`` pass; ``unit`` ops per step."""
    stop_at = time.perf_counter() + seconds
    done = 0

    async def worker(w: int) -> None:
        nonlocal done
        i = w
        while time.perf_counter() < stop_at:
            await step(i)
            done += unit
            i += concurrency

    await asyncio.gather(*(worker(w) for w in range(min(concurrency, 4))))  # warm-up
    done = 0
    stop_at = time.perf_counter() + seconds
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return Result(scenario, client, done, time.perf_counter() - t0, time.process_time() - cpu0)


def _timed_sync(scenario: str, seconds: float, unit: int, step: Callable[[int], Any]) -> Result:
    for i in range(200):
        step(i)
    done, i = 0, 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    stop_at = t0 + seconds
    while time.perf_counter() < stop_at:
        step(i)
        done += unit
        i += 1
    return Result(scenario, "pyignite sync", done, time.perf_counter() - t0, time.process_time() - cpu0)


KEYS = 10_000


async def bench_async(label: str, cache: Any, select: Callable[[int], Awaitable[None]], seconds: float) -> list[Result]:
    """The async scenarios for one client: ``cache`` has get/put/get_all/put_all, ``select`` runs the SQL."""
    out: list[Result] = []
    await cache.put_all({i: VALUE for i in range(KEYS)})
    for c in (1, 16, 64):
        out.append(await _timed(f"put c={c}", label, seconds, 1, lambda i: cache.put(i % KEYS, VALUE), c))
        out.append(await _timed(f"get c={c}", label, seconds, 1, lambda i: cache.get(i % KEYS), c))
    for n in (100, 1000):
        batch = {i: VALUE for i in range(n)}
        keys = list(range(n))
        out.append(await _timed(f"put_all {n}", label, seconds, 1, lambda i, b=batch: cache.put_all(b), 4))
        out.append(await _timed(f"get_all {n}", label, seconds, 1, lambda i, k=keys: cache.get_all(k), 4))
    out.append(await _timed("sql 10k rows", label, seconds, 1, select, 1))
    return out


async def bench_ours(host: str, port: int, seconds: float, table: str) -> list[Result]:
    async with Client([(host, port)]) as client:
        cache = await client.get_or_create_cache("bench_ours")

        async def select(i: int) -> None:
            rows = [r async for r in client.sql(f"SELECT id, name FROM {table}", page_size=1024)]
            assert len(rows) == KEYS

        try:
            return await bench_async("this client", cache, select, seconds)
        finally:
            await cache.destroy()


async def bench_py_aio(host: str, port: int, seconds: float, table: str) -> list[Result]:
    client = PyAioClient()
    async with client.connect(host, port):
        cache = await client.get_or_create_cache("bench_pyaio")

        async def select(i: int) -> None:
            async with client.sql(f"SELECT id, name FROM {table}", page_size=1024) as cursor:
                rows = [r async for r in cursor]
            assert len(rows) == KEYS

        try:
            return await bench_async("pyignite aio", cache, select, seconds)
        finally:
            await cache.destroy()


def bench_py_sync(host: str, port: int, seconds: float, table: str) -> list[Result]:
    out: list[Result] = []
    client = PySyncClient()
    client.connect(host, port)
    try:
        cache = client.get_or_create_cache("bench_pysync")
        cache.put_all({i: VALUE for i in range(KEYS)})
        out.append(_timed_sync("put c=1", seconds, 1, lambda i: cache.put(i % KEYS, VALUE)))
        out.append(_timed_sync("get c=1", seconds, 1, lambda i: cache.get(i % KEYS)))
        for n in (100, 1000):
            batch = {i: VALUE for i in range(n)}
            keys = list(range(n))
            out.append(_timed_sync(f"put_all {n}", seconds, 1, lambda i, b=batch: cache.put_all(b)))
            out.append(_timed_sync(f"get_all {n}", seconds, 1, lambda i, k=keys: cache.get_all(k)))

        def select(i: int) -> None:
            with client.sql(f"SELECT id, name FROM {table}", page_size=1024) as cursor:
                assert len(list(cursor)) == KEYS

        out.append(_timed_sync("sql 10k rows", seconds, 1, select))
        cache.destroy()
    finally:
        client.close()
    return out


async def make_table(host: str, port: int) -> str:
    table = f"BENCH_{uuid.uuid4().hex[:8].upper()}"
    async with Client([(host, port)]) as client:
        [r async for r in client.sql(f'CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR) '
                                     'WITH "template=partitioned"')]
        sem = asyncio.Semaphore(64)

        async def insert(i: int) -> None:
            async with sem:
                [r async for r in client.sql(f"INSERT INTO {table} (id, name) VALUES (?, ?)",
                                             query_args=[i, f"name-{i}"])]

        await asyncio.gather(*(insert(i) for i in range(KEYS)))
    return table


async def drop_table(host: str, port: int, table: str) -> None:
    async with Client([(host, port)]) as client:
        [r async for r in client.sql(f"DROP TABLE {table}")]


def report(results: list[Result]) -> str:
    scenarios = list(dict.fromkeys(r.scenario for r in results))
    by = {(r.scenario, r.client): r for r in results}
    lines = ["| scenario | client | ops/s | client CPU µs/op | ops/s vs pyignite aio | CPU/op vs pyignite aio |",
             "|---|---|---:|---:|---:|---:|"]
    for s in scenarios:
        base = by.get((s, "pyignite aio"))
        for client in ("this client", "pyignite aio", "pyignite sync"):
            r = by.get((s, client))
            if r is None:
                continue
            speed = f"{r.ops_per_s / base.ops_per_s:.2f}x" if base else "-"
            cpu = f"{r.cpu_us_per_op / base.cpu_us_per_op:.2f}" if base else "-"
            lines.append(f"| {s} | {client} | {r.ops_per_s:,.0f} | {r.cpu_us_per_op:,.1f} | {speed} | {cpu} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node", default="127.0.0.1:10800")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured time per scenario and client")
    args = parser.parse_args()
    host, port = args.node.rsplit(":", 1)
    node = (host, int(port))
    table = uvloop.run(make_table(*node))
    try:
        results = uvloop.run(bench_ours(*node, args.seconds, table))
        results += uvloop.run(bench_py_aio(*node, args.seconds, table))
        results += bench_py_sync(*node, args.seconds, table)
    finally:
        uvloop.run(drop_table(*node, table))
    text = report(results)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ignite_client.json").write_text(json.dumps(
        [asdict(r) | {"ops_per_s": r.ops_per_s, "cpu_us_per_op": r.cpu_us_per_op} for r in results], indent=2))
    (RESULTS / "ignite_client.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
