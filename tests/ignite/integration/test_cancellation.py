"""Cancelled and timed-out requests never hand their replies to anyone else."""

from __future__ import annotations

import asyncio
import random

from app.settings import Settings
from drivers.ignite import Client
from drivers.ignite.cache import Cache
from drivers.ignite.errors import IgniteTimeout

N = 600


async def test_random_cancellations_never_cross_replies(client: Client, cache: Cache) -> None:
    await cache.put_all({i: f"v{i}" for i in range(N)})
    rng = random.Random(7)
    for _round in range(5):
        tasks = [asyncio.ensure_future(cache.get(i)) for i in range(N)]
        await asyncio.sleep(0)
        victims = rng.sample(range(N), N // 3)
        for i in victims:
            tasks[i].cancel()
            if rng.random() < 0.5:
                await asyncio.sleep(0)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for i, result in enumerate(results):
            if isinstance(result, asyncio.CancelledError):
                assert i in victims
            else:
                assert result == f"v{i}", (i, result)
    # The connection is still in step: a fresh request gets its own reply.
    assert await cache.get(5) == "v5"
    assert client.stats()["in_flight"] == 0


async def test_timed_out_requests_drop_their_late_replies(settings: Settings, cache: Cache) -> None:
    await cache.put_all({i: f"v{i}" for i in range(N)})
    async with Client(settings.ignite.nodes, request_timeout_s=0.002) as hasty:
        view = hasty.cache(cache.name)
        results = await asyncio.gather(*(view.get(i) for i in range(N)), return_exceptions=True)
        timeouts = [r for r in results if isinstance(r, IgniteTimeout)]
        assert timeouts, "a 2 ms deadline on 600 concurrent gets should expire some"
        assert all(isinstance(t, TimeoutError) for t in timeouts)
        for i, result in enumerate(results):
            if not isinstance(result, BaseException):
                assert result == f"v{i}"
        await asyncio.sleep(0.2)   # every late reply has come in by now
        answered = 0
        for i in range(0, N, 50):  # one at a time: each answer must be its own reply, never a late one
            for _attempt in range(100):   # a busy node may miss 2 ms several times in a row
                try:
                    assert await view.get(i) == f"v{i}"
                except IgniteTimeout:
                    continue
                answered += 1
                break
        assert answered > 0, "no single get made its 2 ms deadline in 100 tries of each of 12 keys"
        for _ in range(50):      # a node just started (its JIT cold) may still be answering the burst
            stats = hasty.stats()
            if stats["late_replies"] > 0:
                break
            await asyncio.sleep(0.1)
        assert stats["late_replies"] > 0, stats
        assert stats["in_flight"] == 0
