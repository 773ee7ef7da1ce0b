"""The service's MySQL pool against aiomysql's and asyncmy's own, same queries, same run: client CPU per query.

    .venv/bin/python -m bench.mysql_pool [--query sleep|point] [--concurrency 256] [--seconds 3] [--rounds 2]

Each round runs ``--concurrency`` loops of one query for ``--seconds`` through aiomysql's ``Pool``
(aiomysql connections), asyncmy's ``Pool`` and ``drivers.mysql.pool.Pool`` (asyncmy connections),
each with as many connections as loops, in turn, and reports queries/s and this process's CPU per
query.  ``sleep`` is ``SELECT SLEEP(0.05)`` (many queries in flight: the pools' bookkeeping),
``point`` a primary-key select of the seeded ``items`` table (the drivers' protocol work).  Needs
the local stack's MariaDB (and ``python -m app seed`` for ``point``).  Results:
``bench/results/mysql_pool_<query>.json``.
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
import asyncmy
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


QUERIES = {"sleep": ("SELECT SLEEP(0.05)", False),
           "point": ("SELECT id, name, price_cents FROM items WHERE id = %s", True)}


async def _run(kind: str, params: dict[str, Any], concurrency: int, seconds: float,
               query_name: str) -> tuple[float, float]:
    theirs: Any = None
    if kind in ("aiomysql", "asyncmy"):
        make = aiomysql.create_pool if kind == "aiomysql" else asyncmy.create_pool
        theirs = await make(minsize=concurrency, maxsize=concurrency, **params)
        acquire: Callable[[], Awaitable[Any]] = theirs.acquire
        release: Callable[[Any], Any] = theirs.release
    else:
        ours = Pool(minsize=concurrency, maxsize=concurrency, recycle_s=3600, **params)
        await ours.fill()
        acquire, release = ours.acquire, ours.release

    sql, keyed = QUERIES[query_name]
    counter = iter(range(1 << 62))

    async def query() -> None:
        conn = await acquire()
        try:
            async with conn.cursor() as cur:
                await cur.execute(sql, (next(counter) % 1000 + 1,) if keyed else None)
                await cur.fetchone()
        finally:
            released = release(conn)
            if released is not None:      # asyncmy's release is a coroutine
                await released

    try:
        return await _loops(query, concurrency, seconds)
    finally:
        if theirs is not None:
            theirs.close()
            await theirs.wait_closed()
        else:
            ours.close()


async def main(concurrency: int, seconds: float, rounds: int, query_name: str) -> dict[str, Any]:
    m = load_settings().mysql
    params = dict(host=m.host, port=m.port, user=m.user, password=m.password, db=m.database, autocommit=True)
    samples: dict[str, list[tuple[float, float]]] = {"aiomysql": [], "asyncmy": [], "own": []}
    for _ in range(rounds):
        for kind, runs in samples.items():
            qps, cpu_us = await _run(kind, params, concurrency, seconds, query_name)
            runs.append((qps, cpu_us))
            print(f"{kind:9} {qps:8.0f} queries/s  {cpu_us:6.1f} µs CPU per query", flush=True)
    result: dict[str, Any] = {
        kind: {"queries_per_s": round(statistics.median(q for q, _ in s)),
               "cpu_us_per_query": round(statistics.median(c for _, c in s), 1)} for kind, s in samples.items()}
    for kind in ("aiomysql", "asyncmy"):
        result[f"cpu_per_query_vs_{kind}_pool"] = round(result["own"]["cpu_us_per_query"]
                                                        / result[kind]["cpu_us_per_query"], 3)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--query", choices=sorted(QUERIES), default="sleep")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    out = uvloop.run(main(args.concurrency, args.seconds, args.rounds, args.query))
    print(json.dumps(out, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"mysql_pool_{args.query}.json").write_text(json.dumps({"meta": vars(args), **out}, indent=2))
