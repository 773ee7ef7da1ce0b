"""Redis Cluster: client CPU per GET and per SET, this project's cluster client against redis-py's and standalone Redis.

    .venv/bin/python -m bench.cluster [--ops 20000] [--rounds 7] [--concurrency 64]

Three contenders, in one process, on one event loop (uvloop), in alternating rounds:
- ``RedisClusterClient`` on the stack's cluster (17000-17005): one pipelined connection
  per primary (three);
- redis-py 8's ``redis.asyncio.cluster.RedisCluster`` on the same cluster (a pool per node:
  one connection per command in flight, so it opens up to ``--concurrency`` per node);
- ``RedisClient`` on the standalone Redis (16379): one pipelined connection, the baseline.

Each round runs ``--ops`` operations from ``--concurrency`` tasks and measures the process's
CPU time (``time.process_time``) and wall time; the table shows the median over the rounds of
CPU µs per operation, operations per second, the connections open at the end (``conns``: this
client's include the seed it first read the table from, when that is a replica), and the CPU ratio
to the standalone client.  The keys (1,000, spread over every slot) and 32-byte values are written
before the first round.
Results also go to ``bench/results/cluster.json``.
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

import uvloop
from redis.asyncio.cluster import RedisCluster

from app.settings import REDIS_CLUSTER_PORTS, REDIS_PORT, STACK_HOST
from drivers.redis import RedisClient, RedisClusterClient, RedisClusterConfig, RedisConfig

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = [f"bench:cluster:{i}" for i in range(1000)]
VALUE = b"v" * 32

Op = Callable[[str], Awaitable[Any]]


async def _round(op: Op, ops: int, concurrency: int) -> tuple[float, float]:
    """(CPU µs per operation, operations per second) for ``ops`` calls from ``concurrency`` tasks."""
    per_task = ops // concurrency

    async def worker(offset: int) -> None:
        n = len(KEYS)
        for i in range(per_task):
            await op(KEYS[(offset + i * 7) % n])

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(t * 13) for t in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    done = per_task * concurrency
    return cpu / done * 1e6, done / wall


async def main(ops: int, rounds: int, concurrency: int) -> list[dict[str, Any]]:
    ours = RedisClusterClient(RedisClusterConfig(nodes=((STACK_HOST, REDIS_CLUSTER_PORTS[0]),)))
    theirs = RedisCluster(host=STACK_HOST, port=REDIS_CLUSTER_PORTS[0])
    standalone = RedisClient(RedisConfig(host=STACK_HOST, port=REDIS_PORT, pool_max=1))
    await ours.start()
    await theirs.initialize()
    await standalone.start()

    async def set_ours(key: str) -> None:
        await ours.set(key, VALUE)

    async def set_standalone(key: str) -> None:
        await standalone.set(key, VALUE)

    async def set_theirs(key: str) -> None:
        await theirs.set(key, VALUE)

    contenders: dict[str, dict[str, Op]] = {
        "RedisClusterClient (this project)": {"GET": ours.get, "SET": set_ours},
        "redis-py RedisCluster": {"GET": theirs.get, "SET": set_theirs},
        "RedisClient, standalone (baseline)": {"GET": standalone.get, "SET": set_standalone},
    }
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        await ours.batch([("SET", k, VALUE) for k in KEYS], idempotent=True)
        await standalone.batch([("SET", k, VALUE) for k in KEYS], idempotent=True)
        for table in contenders.values():   # warm up: connections open, code paths hot
            for op in table.values():
                await _round(op, concurrency * 20, concurrency)
        for r in range(rounds):
            order = list(contenders.items())
            if r % 2:
                order.reverse()
            for name, table in order:
                for what, op in table.items():
                    samples.setdefault((name, what), []).append(await _round(op, ops, concurrency))
        links = ours.topology.links.values()
        connections = {"RedisClusterClient (this project)": sum(link.connected for link in links),
                       "redis-py RedisCluster": sum(len(node._connections) for node in theirs.get_nodes()),
                       "RedisClient, standalone (baseline)": 1}
    finally:
        await ours.delete(KEYS)
        await standalone.command("UNLINK", *KEYS, idempotent=True)
        await ours.aclose()
        await theirs.aclose()
        await standalone.aclose()
    rows: list[dict[str, Any]] = []
    for (name, what), values in samples.items():
        rows.append({"client": name, "op": what, "cpu_us_per_op": round(statistics.median(v[0] for v in values), 2),
                     "ops_per_s": round(statistics.median(v[1] for v in values)), "connections": connections[name],
                     "rounds": [round(v[0], 2) for v in values]})
    base = {row["op"]: row["cpu_us_per_op"] for row in rows if row["client"].startswith("RedisClient,")}
    for row in rows:
        row["cpu_vs_standalone"] = round(row["cpu_us_per_op"] / base[row["op"]], 2)
    return rows


def report(rows: list[dict[str, Any]], ops: int, rounds: int, concurrency: int) -> None:
    print(f"{ops} operations per round, {concurrency} tasks, median of {rounds} alternating rounds")
    print(f"{'client':36} {'op':3} {'CPU µs/op':>10} {'ops/s':>8} {'conns':>5} {'CPU vs standalone':>18}")
    for row in sorted(rows, key=lambda r: (r["op"], r["client"])):
        print(f"{row['client']:36} {row['op']:3} {row['cpu_us_per_op']:>10.2f} {row['ops_per_s']:>8} "
              f"{row['connections']:>5} {row['cpu_vs_standalone']:>17.2f}x")


def cli() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--ops", type=int, default=20_000, help="operations per round (default 20000)")
    p.add_argument("--rounds", type=int, default=7, help="rounds per client and operation (default 7)")
    p.add_argument("--concurrency", type=int, default=64, help="concurrent tasks (default 64)")
    args = p.parse_args()
    rows = uvloop.run(main(args.ops, args.rounds, args.concurrency))
    report(rows, args.ops, args.rounds, args.concurrency)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps({"ops": args.ops, "rounds": args.rounds,
                                                      "concurrency": args.concurrency, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    cli()
