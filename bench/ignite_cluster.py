"""The Ignite client on the stack's three-node cluster: partition awareness, grouped batches, recovery.

    make stack IGNITE_NODES=3 && .venv/bin/python -m bench.ignite_cluster [--seconds 3]

In one run:
- put/get at concurrency 64, partition-aware over three nodes vs one connection to one node
  (the cluster then forwards two thirds of the requests); ops/s, client CPU per op and the
  three nodes' CPU per op (from /proc, all three JVMs summed);
- get_all of 1,000 keys: this client (one request per node, in parallel) vs pyignite's
  partition-aware AioClient;
- recovery: readers at concurrency 16 while node 3 is stopped for real; the time from the stop
  until reads succeed again, and the errors seen meanwhile.  The node is started again at the end.
Loopback only; every phase is bounded in time.  Results also go to bench/results/ignite_cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from pyignite import AioClient as PyAioClient

from app.settings import IGNITE_CLIENT_PORT, STACK_HOST
from drivers.ignite import CacheConfig, CacheMode, Client
from drivers.ignite.errors import IgniteError
from stack.process import STATE

NODES = [(STACK_HOST, IGNITE_CLIENT_PORT + i) for i in range(3)]
RESULTS = Path(__file__).resolve().parent / "results"
TICK = os.sysconf("SC_CLK_TCK")
KEYS = 10_000


def node_cpu_s() -> float:
    """User + system CPU seconds of the three Ignite JVMs of the stack."""
    total = 0
    for i in range(3):
        try:
            pid = int((STATE / f"ignite-{i}" / "pid").read_text().split()[0])
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


async def measure(seconds: float, concurrency: int, step: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    ops = 0
    stop_at = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal ops
        i = w
        while time.perf_counter() < stop_at:
            await step(i)
            ops += 1
            i += concurrency

    cpu0, node0, t0 = time.process_time(), node_cpu_s(), time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"ops_per_s": ops / elapsed, "client_cpu_us_per_op": (time.process_time() - cpu0) / ops * 1e6,
            "nodes_cpu_us_per_op": (node_cpu_s() - node0) / ops * 1e6}


async def routing(seconds: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    name = f"bench_pa_{uuid.uuid4().hex[:6]}"
    async with Client(NODES) as aware, Client(NODES[:1], partition_aware=False) as single:
        cache = await aware.create_cache(CacheConfig(name=name, cache_mode=CacheMode.PARTITIONED))
        await cache.put_all({k: "v" * 32 for k in range(KEYS)})
        await asyncio.sleep(0.5)  # the partition map arrives in the background
        for label, client in (("partition-aware, 3 connections", aware), ("one connection", single)):
            c = client.cache(name)
            await measure(0.5, 64, lambda i, c=c: c.get(i % KEYS))  # warm-up
            out[f"put c=64, {label}"] = await measure(seconds, 64, lambda i, c=c: c.put(i % KEYS, "w" * 32))
            out[f"get c=64, {label}"] = await measure(seconds, 64, lambda i, c=c: c.get(i % KEYS))
        await cache.destroy()
    return out


async def grouped_get_all(seconds: float) -> dict[str, Any]:
    name = f"bench_ga_{uuid.uuid4().hex[:6]}"
    keys = list(range(1000))
    out: dict[str, Any] = {}
    async with Client(NODES) as ours:
        cache = await ours.create_cache(CacheConfig(name=name, cache_mode=CacheMode.PARTITIONED))
        await cache.put_all({k: "v" * 32 for k in keys})
        await asyncio.sleep(0.5)
        assert len(await cache.get_all(keys)) == 1000
        out["get_all 1000, this client"] = await measure(seconds, 4, lambda i: cache.get_all(keys))
        py = PyAioClient(partition_aware=True)
        async with py.connect(NODES):
            pcache = await py.get_cache(name)
            assert len(await pcache.get_all(keys)) == 1000
            out["get_all 1000, pyignite aio (partition aware)"] = await measure(
                seconds, 4, lambda i: pcache.get_all(keys))
        await cache.destroy()
    return out


async def recovery() -> dict[str, Any]:
    name = f"bench_rc_{uuid.uuid4().hex[:6]}"
    async with Client(NODES) as client:
        cache = await client.create_cache(CacheConfig(name=name, cache_mode=CacheMode.PARTITIONED, backups=1))
        await cache.put_all({k: k for k in range(2000)})
        await asyncio.sleep(0.5)
        errors: list[str] = []
        successes: list[float] = []
        stop = asyncio.Event()

        async def reader(w: int) -> None:
            i = w
            while not stop.is_set():
                try:
                    await cache.get(i % 2000)
                    successes.append(time.monotonic())
                except IgniteError as exc:
                    errors.append(type(exc).__name__)
                    await asyncio.sleep(0.01)
                i += 16

        tasks = [asyncio.ensure_future(reader(w)) for w in range(16)]
        await asyncio.sleep(1.0)
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "stack", "down", "ignite-2",
                                                    stdout=subprocess.DEVNULL)
        await proc.wait()
        stopped = time.monotonic()
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*tasks)
        gaps = [b - a for a, b in itertools.pairwise(successes) if a >= began - 0.1]
        result = {"longest gap between successful reads during the stop (s)": max(gaps, default=0.0),
                  "node stop took (s)": stopped - began, "failed calls": len(errors),
                  "error types": sorted(set(errors))}
        await cache.destroy()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "stack", "up", "ignite",
                                                "--ignite-nodes", "3", stdout=subprocess.DEVNULL)
    await proc.wait()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    results.update(uvloop.run(routing(args.seconds)))
    results.update(uvloop.run(grouped_get_all(args.seconds)))
    results["recovery"] = uvloop.run(recovery())
    lines = ["| scenario | ops/s | client CPU µs/op | nodes CPU µs/op |", "|---|---:|---:|---:|"]
    for label, r in results.items():
        if label != "recovery":
            lines.append(f"| {label} | {r['ops_per_s']:,.0f} | {r['client_cpu_us_per_op']:,.1f} | "
                         f"{r['nodes_cpu_us_per_op']:,.1f} |")
    for op in ("put", "get"):
        a = results[f"{op} c=64, partition-aware, 3 connections"]
        s = results[f"{op} c=64, one connection"]
        lines.append(f"\n{op}: partition-aware / one connection = {a['ops_per_s'] / s['ops_per_s']:.2f}x throughput, "
                     f"nodes CPU per op {a['nodes_cpu_us_per_op'] / s['nodes_cpu_us_per_op']:.2f}x")
    ga = results["get_all 1000, this client"]["ops_per_s"] / results[
        "get_all 1000, pyignite aio (partition aware)"]["ops_per_s"]
    lines.append(f"get_all 1000: this client / pyignite = {ga:.1f}x")
    lines.append(f"recovery: {json.dumps(results['recovery'])}")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ignite_cluster.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "ignite_cluster.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
