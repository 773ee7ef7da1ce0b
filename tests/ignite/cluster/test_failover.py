"""Losing a node under load: typed errors, reads continue, nothing hangs, and the node comes back.

The node is stopped for real (``stack down ignite-2``) and started again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from drivers.ignite import Client
from drivers.ignite.cache import Cache
from drivers.ignite.errors import IgniteConnectionError
from tests.conftest import run_stack_async
from tests.ignite.cluster.conftest import node_stats, requests_by_node, wait_for_map, wait_for_nodes
from tests.support.proxy import Proxy

KEYS = 2000


async def test_reads_survive_a_node_loss_and_the_node_is_used_again(cluster: list[tuple[str, int]],
                                                                   ccache: Cache) -> None:
    await ccache.put_all({k: f"v{k}" for k in range(KEYS)})
    # The victim is reached through the fault proxy, which holds its replies just before the node is
    # stopped and drops the links with it: the node goes with reads in flight on its connection, every
    # time (a node stopped gracefully may first answer what it has, leaving nothing to retry).
    async with Proxy(cluster[2]) as to_victim, Client([*cluster[:2], to_victim.address]) as client:
        await wait_for_nodes(client, 3)
        cache = client.cache(ccache.name)
        await wait_for_map(client, cache)
        victim = f"{to_victim.address[0]}:{to_victim.address[1]}"
        await _lose_the_node_under_load(client, cache, to_victim, victim)
        started = await run_stack_async("up", "ignite", "--ignite-nodes", "3")
        assert started.returncode == 0, started.stdout + started.stderr
        await wait_for_nodes(client, 3, timeout=30)
        assert node_stats(client)[victim]["reconnects"] >= 1
        deadline = time.monotonic() + 20
        before = requests_by_node(client)[victim]
        while time.monotonic() < deadline:  # the refreshed map routes keys to the returning node again
            await asyncio.gather(*(cache.get(k) for k in range(0, KEYS, 7)))
            if requests_by_node(client)[victim] > before:
                break
            await asyncio.sleep(0.2)
        assert requests_by_node(client)[victim] > before
        values: list[Any] = await asyncio.gather(*(cache.get(k) for k in range(KEYS)))
        assert values == [f"v{k}" for k in range(KEYS)]


async def _lose_the_node_under_load(client: Client, cache: Cache, to_victim: Proxy, victim: str) -> None:
    """16 readers and a writer run while the victim is stopped for real (and started again, whatever happens)."""
    read_errors: list[BaseException] = []
    write_errors: list[BaseException] = []
    reads_ok: list[float] = []
    stop = asyncio.Event()

    async def reader(worker: int) -> None:
        i = worker
        while not stop.is_set():
            try:
                assert await cache.get(i % KEYS) == f"v{i % KEYS}"
                reads_ok.append(time.monotonic())
            except Exception as exc:   # every failure is checked below
                read_errors.append(exc)
            i += 16

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            try:
                await cache.put(KEYS + i % 100, i)
            except Exception as exc:   # every failure is checked below
                write_errors.append(exc)
            i += 1

    tasks = [asyncio.ensure_future(reader(w)) for w in range(16)] + [asyncio.ensure_future(writer())]
    await asyncio.sleep(0.5)
    retries_before = client.stats()["retries"]
    to_victim.hold_replies = True
    async with asyncio.timeout(5):
        while node_stats(client)[victim]["in_flight"] < 3:
            await asyncio.sleep(0.005)
    try:
        stopped = await run_stack_async("down", "ignite-2")
        to_victim.cut()                 # its connection goes with the node, the held replies with it
        to_victim.hold_replies = False
        killed_at = time.monotonic()
        assert stopped.returncode == 0, stopped.stderr
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)  # nothing hangs

        # Reads lost with the node's connection were sent again on another node: no read failed.
        assert read_errors == [], read_errors[:5]
        assert client.stats()["retries"] > retries_before, "no read was retried"
        # A write is never retried: one in flight on the lost connection fails with the connection error.
        assert all(isinstance(e, IgniteConnectionError) for e in write_errors), write_errors[:5]
        after = [t for t in reads_ok if t > killed_at]
        assert after, "no read succeeded after the node was stopped"
        assert after[0] - killed_at < 2.0, f"reads resumed only after {after[0] - killed_at:.1f} s"
        assert node_stats(client)[victim]["state"] == "down"
    except BaseException:
        stop.set()
        to_victim.hold_replies = False
        await run_stack_async("up", "ignite", "--ignite-nodes", "3")   # later tests need all three
        raise


async def test_an_unreachable_node_never_hangs_a_caller(cluster: list[tuple[str, int]]) -> None:
    # The fault proxy, blackholed, accepts the connection and never answers the handshake:
    # only connect_timeout_s ends the attempt (a refused port would fail at once and prove nothing).
    # 3 s, not the default 2 s: a request that waited on the silent address would wait that long,
    # far above what the requests below take on a slow machine (0.8 s on one running at a third of
    # its speed, the cluster still busy with the new cache).
    connect_s = 3.0
    async with Proxy(cluster[0]) as silent:
        silent.blackhole()
        loop = asyncio.get_running_loop()
        client = Client([silent.address, *cluster], connect_timeout_s=connect_s)
        try:
            began = loop.time()
            await asyncio.wait_for(client.connect(), 10)
            took = loop.time() - began
            assert connect_s - 0.002 <= took < connect_s + 0.5, f"connect() took {took:.3f} s with connect_timeout_s=3"
            dead = client.stats()["detail"]["nodes"][0]
            assert dead["state"] == "down"
            assert "within 3 s" in dead["last_error"], dead["last_error"]
            cache = await client.get_or_create_cache("unreachable_probe")
            # The new cache's first write waits on the cluster itself (1.3 s once, on that slow
            # machine): not what is timed.  Then 32 keys, spread over the nodes.
            await cache.put(0, 0)
            keys = range(1, 33)
            began = loop.time()
            await asyncio.gather(*(cache.put(k, k) for k in keys))
            assert await asyncio.gather(*(cache.get(k) for k in keys)) == list(keys)
            assert loop.time() - began < connect_s / 2, "a request waited on the silent node"
        finally:
            await client.aclose()
