"""Losing a node under load: typed errors, reads continue, nothing hangs, and the node comes back.

The node is stopped for real (``stack down ignite-2``) and started again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from drivers.ignite import Client
from drivers.ignite.cache import Cache
from drivers.ignite.errors import IgniteError
from tests.conftest import run_stack_async
from tests.ignite.cluster.conftest import node_stats, requests_by_node, wait_for_map, wait_for_nodes

KEYS = 2000


async def test_reads_survive_a_node_loss_and_the_node_is_used_again(cclient: Client, ccache: Cache) -> None:
    await ccache.put_all({k: f"v{k}" for k in range(KEYS)})
    await wait_for_map(cclient, ccache)
    victim = next(address for address in node_stats(cclient) if address.endswith(":10802"))
    errors: list[BaseException] = []
    reads_ok: list[float] = []
    stop = asyncio.Event()

    async def reader(worker: int) -> None:
        i = worker
        while not stop.is_set():
            try:
                assert await ccache.get(i % KEYS) == f"v{i % KEYS}"
                reads_ok.append(time.monotonic())
            except IgniteError as exc:
                errors.append(exc)
            i += 16

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            try:
                await ccache.put(KEYS + i % 100, i)
            except IgniteError as exc:
                errors.append(exc)
            i += 1

    tasks = [asyncio.ensure_future(reader(w)) for w in range(16)] + [asyncio.ensure_future(writer())]
    await asyncio.sleep(0.5)
    stopped = await run_stack_async("down", "ignite-2")
    killed_at = time.monotonic()
    assert stopped.returncode == 0, stopped.stderr
    await asyncio.sleep(3.0)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 15)  # nothing hangs

    assert all(isinstance(e, IgniteError) for e in errors)
    after = [t for t in reads_ok if t > killed_at]
    assert after, "no read succeeded after the node was stopped"
    assert after[0] - killed_at < 2.0, f"reads resumed only after {after[0] - killed_at:.1f} s"
    assert node_stats(cclient)[victim]["state"] == "down"

    started = await run_stack_async("up", "ignite", "--ignite-nodes", "3")
    assert started.returncode == 0, started.stdout + started.stderr
    await wait_for_nodes(cclient, 3, timeout=30)
    assert node_stats(cclient)[victim]["reconnects"] >= 1
    deadline = time.monotonic() + 20
    before = requests_by_node(cclient)[victim]
    while time.monotonic() < deadline:  # the refreshed map routes keys to the returning node again
        await asyncio.gather(*(ccache.get(k) for k in range(0, KEYS, 7)))
        if requests_by_node(cclient)[victim] > before:
            break
        await asyncio.sleep(0.2)
    assert requests_by_node(cclient)[victim] > before
    values: list[Any] = await asyncio.gather(*(ccache.get(k) for k in range(KEYS)))
    assert values == [f"v{k}" for k in range(KEYS)]


async def test_an_unreachable_node_never_hangs_a_caller(cluster: list[tuple[str, int]]) -> None:
    # 127.0.0.1:9 refuses at once; the live nodes serve.  connect() returns in bounded time.
    began = time.monotonic()
    async with Client([("127.0.0.1", 9), *cluster], connect_timeout_s=2) as client:
        assert time.monotonic() - began < 5
        cache = await client.get_or_create_cache("unreachable_probe")
        await cache.put(1, 1)
        assert await cache.get(1) == 1
        dead = client.stats()["detail"]["nodes"][0]
        assert dead["state"] == "down" and dead["last_error"]
