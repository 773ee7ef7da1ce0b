"""What each of the cache's settings does, on the real Redis of the stack (or none, where none is needed)."""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import pytest

from app.settings import Settings
from drivers.cache import Cache, CacheConfig, InvalidationBus, RedisTier
from drivers.errors import InterfaceError
from drivers.redis import RedisClient, Subscriber


def ns() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


async def test_max_key_bytes_and_max_value_bytes_refuse_before_any_io() -> None:
    cache = Cache(None, CacheConfig(max_key_bytes=8, max_value_bytes=64))
    with pytest.raises(InterfaceError, match="over the limit of 8"):
        await cache.set("123456789", 1)
    with pytest.raises(InterfaceError, match="over the limit of 64"):
        await cache.set("k", "x" * 100)
    await cache.set("12345678", "x" * 10)
    assert await cache.get("12345678") == "x" * 10


async def test_local_max_bytes_bounds_the_local_tier() -> None:
    cache = Cache(None, CacheConfig(local_max_bytes=1000))
    for i in range(100):
        await cache.set(f"k{i}", "x" * 50)
    assert cache.local.bytes <= 1000 and 10 <= len(cache.local) < 20
    assert await cache.get("k99") == "x" * 50 and await cache.get("k0") is None


async def test_early_refresh_beta_moves_the_refresh_earlier() -> None:
    """With U fixed so that -ln(1 - U) = 1, a read refreshes when delta * beta >= the time left."""
    now = [1_900_000_000.0]
    u = 1 - math.exp(-1)
    for beta, refreshes in ((1.0, False), (10.0, True)):
        cache = Cache(None, CacheConfig(early_refresh_beta=beta, jitter=0.0), clock=lambda: now[0],
                      random=lambda: u)
        cache._started = True
        loads = 0

        async def loader() -> int:
            nonlocal loads
            loads += 1
            await asyncio.sleep(0.1)        # delta: about 0.1 s
            return loads

        await cache.get_or_load("k", loader, ttl=10)
        now[0] += 9.5                         # 0.5 s left: 0.1 * 1 < 0.5 <= 0.1 * 10
        assert await cache.get_or_load("k", loader, ttl=10) == 1      # answered at once either way
        await asyncio.sleep(0.2)
        assert loads == (2 if refreshes else 1), beta
        await cache.aclose()


async def test_lease_wait_s_bounds_the_wait_for_another_holder_and_lease_s_is_its_life(redis: RedisClient) -> None:
    cache = Cache(RedisTier(redis), CacheConfig(namespace=ns(), lease_s=2.0, lease_wait_s=0.3))
    await cache.start()
    try:
        # Another process holds the lease and never finishes.
        assert await redis.command("SET", cache.layout.lease("k"), "other", "PX", 5000) == b"OK"
        began = time.monotonic()
        assert await cache.get_or_load("k", _const(1)) == 1
        waited = time.monotonic() - began
        assert 0.3 <= waited < 1.0 and cache.stats.lease_timeouts == 1
        await redis.command("DEL", cache.layout.lease("k"))

        # Our own lease lives lease_s while the loader runs, and is released after.
        seen: list[int] = []

        async def slow() -> int:
            seen.append(int(await redis.command("PTTL", cache.layout.lease("j"))))
            return 2

        assert await cache.get_or_load("j", slow) == 2
        assert 1500 < seen[0] <= 2000
        assert await redis.get(cache.layout.lease("j")) is None
    finally:
        await cache.invalidate_prefix("")
        await cache.aclose()


async def test_invalidation_channel_carries_one_process_writes_to_the_other(settings: Settings,
                                                                           redis: RedisClient) -> None:
    namespace, channel = ns(), f"{ns()}:invalidate"
    caches = []
    subscribers = []
    for _ in range(2):
        subscriber = Subscriber(settings.redis)
        await subscriber.start()
        subscribers.append(subscriber)
        cache = Cache(RedisTier(redis), CacheConfig(namespace=namespace, invalidation_channel=channel),
                      bus=InvalidationBus(redis, subscriber, channel))
        await cache.start()
        caches.append(cache)
    a, b = caches
    try:
        await a.set("k", 1)
        assert await b.get("k") == 1 and "k" in b.local
        await a.set("k", 2)
        await subscribers[1].barrier()          # what was published before now has arrived
        assert "k" not in b.local and await b.get("k") == 2
        await a.invalidate_prefix("")
        await subscribers[1].barrier()
        assert len(b.local) == 0 and b.stats.invalidations["received"] == 3      # two sets, one prefix
        assert a.stats.invalidations.get("received") is None        # its own messages are not received
    finally:
        for cache in caches:
            await cache.aclose()
        for subscriber in subscribers:
            await subscriber.aclose()


def _const(value: int):  # type: ignore[no-untyped-def]
    async def loader() -> int:
        return value
    return loader
