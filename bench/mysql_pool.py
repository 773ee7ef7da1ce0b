"""The MySQL pool against aiomysql's own, same queries, same run: client CPU per query at high concurrency.

    .venv/bin/python -m bench.mysql_pool [--concurrency 256] [--seconds 3] [--rounds 2]

Each round runs ``--concurrency`` loops of ``SELECT SLEEP(0.05)`` for ``--seconds`` through
aiomysql's ``Pool`` and through ``drivers.mysql.pool.Pool`` (both with as many connections as
loops), alternating, and reports queries/s and this process's CPU per query.  Needs the local
stack's MariaDB.  Results: ``bench/results/mysql_pool.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomysql
import uvloop

from app.settings import load_settings
from drivers.mysql.pool import Pool

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


async def _loops(query: Callable[[], Awaitable[None]], concurrency: int, seconds: float) -> tuple[float, float]:
    """(queries/s, CPU µs per query) of ``concurrency`` loops of ``query`` for ``seconds``."""
    done = 0
    stop = time.monotonic() + seconds

    async def loop() -> None:
        nonlocal done
        while time.monotonic() < stop:
            await query()
            done += 1

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return done / wall, cpu / max(done, 1) * 1e6


async def _run(kind: str, params: dict[str, Any], concurrency: int, seconds: float) -> tuple[float, float]:
    if kind == "aiomysql":
        theirs = await aiomysql.create_pool(minsize=concurrency, maxsize=concurrency, **params)
        acquire: Callable[[], Awaitable[Any]] = theirs.acquire
        release: Callable[[Any], Any] = theirs.release
    else:
        ours = Pool(minsize=concurrency, maxsize=concurrency, recycle_s=3600, **params)
        await ours.fill()
        acquire, release = ours.acquire, ours.release

    async def query() -> None:
        conn = await acquire()
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT SLEEP(0.05)")
                await cur.fetchone()
        finally:
            release(conn)

    try:
        return await _loops(query, concurrency, seconds)
    finally:
        if kind == "aiomysql":
            theirs.close()
            await theirs.wait_closed()
        else:
            ours.close()


async def main(concurrency: int, seconds: float, rounds: int) -> dict[str, Any]:
    m = load_settings().mysql
    params = dict(host=m.host, port=m.port, user=m.user, password=m.password, db=m.database, autocommit=True)
    samples: dict[str, list[tuple[float, float]]] = {"aiomysql": [], "own": []}
    for _ in range(rounds):
        for kind, runs in samples.items():
            qps, cpu_us = await _run(kind, params, concurrency, seconds)
            runs.append((qps, cpu_us))
            print(f"{kind:9} {qps:8.0f} queries/s  {cpu_us:6.1f} µs CPU per query", flush=True)
    result = {kind: {"queries_per_s": round(statistics.median(q for q, _ in s)),
                     "cpu_us_per_query": round(statistics.median(c for _, c in s), 1)} for kind, s in samples.items()}
    result["cpu_per_query_vs_aiomysql_pool"] = round(result["own"]["cpu_us_per_query"]
                                                     / result["aiomysql"]["cpu_us_per_query"], 3)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    out = uvloop.run(main(args.concurrency, args.seconds, args.rounds))
    print(json.dumps(out, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mysql_pool.json").write_text(json.dumps({"meta": vars(args), **out}, indent=2))
