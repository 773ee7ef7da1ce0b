"""Stampede (breakdown), penetration and avalanche protection, on the real Redis and MySQL of the stack.

Every test uses the default settings unless it says otherwise, a namespace of its own,
and removes what it wrote.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator

import orjson
import pytest

from app.settings import Settings
from drivers.cache import Cache, CacheConfig, RedisTier
from drivers.cache.bloom import LocalBloom
from drivers.mysql import MySQLClient
from drivers.redis import RedisClient
from tests.conftest import ROOT
from tests.support.proxy import Proxy


def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


class Counted:
    """A loader that counts its calls, takes ``seconds``, and answers ``value`` (None: its call count)
    or raises ``ValueError(error)``."""

    def __init__(self, seconds: float = 0.0, value: object = None, error: str | None = None) -> None:
        self.seconds, self.value, self.error = seconds, value, error
        self.calls = 0

    async def __call__(self) -> object:
        self.calls += 1
        if self.seconds:
            await asyncio.sleep(self.seconds)
        if self.error is not None:
            raise ValueError(self.error)
        return self.calls if self.value is None else self.value


async def test_a_thousand_requests_in_two_processes_load_a_cold_key_once(settings: Settings,
                                                                          redis: RedisClient) -> None:
    ns = namespace()
    start_at = time.time() + 1.5          # both processes are up and connected by then
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.cache.stampede_worker", str(settings.redis.port), ns, "hot", str(start_at),
        "1000", cwd=ROOT, stdout=asyncio.subprocess.PIPE) for _ in range(2)]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    reports = [orjson.loads(out.decode().strip().splitlines()[-1]) for out, _ in outputs]
    try:
        assert [p.returncode for p in procs] == [0, 0]
        total = int(await redis.get(f"{ns}:loads") or 0)
        assert total == 1, f"the loader ran {total} times for 2,000 requests: {reports}"
        assert sorted(r["loader_calls"] for r in reports) == [0, 1]
        assert all(r["answers"] == [orjson.dumps({"value": ns}).decode()] for r in reports)
        # The process without the lease polled the remote tier: its requests waited about one load.
        assert max(r["slowest_s"] for r in reports) < 1.0, reports
    finally:
        await redis.command("DEL", f"{ns}:loads", f"{ns}:v:hot")


async def test_a_hot_key_is_refreshed_before_it_expires_and_no_request_waits(redis: RedisClient) -> None:
    """XFetch on (the default): under steady load the value is reloaded early, in the background."""
    cache = Cache(RedisTier(redis), CacheConfig(namespace=namespace()))
    await cache.start()
    loader = Counted(0.1)
    await cache.get_or_load("hot", loader, ttl=1.0)
    latencies: list[float] = []
    stop = time.monotonic() + 3.5

    async def reader() -> None:
        while time.monotonic() < stop:
            began = time.perf_counter()
            await cache.get_or_load("hot", loader, ttl=1.0)
            latencies.append(time.perf_counter() - began)
            await asyncio.sleep(0.001)

    try:
        await asyncio.gather(*(reader() for _ in range(100)))
        snapshot = cache.snapshot()
        # 3.5 TTLs passed.  Each reload started before the value expired; how early depends on the
        # read rate (XFetch: about delta * ln(reads per second * delta) before expiry, some 0.6 s
        # here at thousands of reads per second), so between one and about four reloads per TTL.
        assert 3 <= loader.calls <= 20, loader.calls
        assert snapshot["requests"].get(("local", "stale"), 0) == 0, snapshot["requests"]
        assert snapshot["requests"].get(("local", "miss"), 0) == 1, snapshot["requests"]     # the first read
        # No request waited for a 100 ms load (generous for a loaded 2-core machine).
        assert max(latencies) < 0.05, sorted(latencies)[-5:]
    finally:
        await cache.invalidate_prefix("")
        await cache.aclose()


async def test_without_early_refresh_the_expired_value_is_served_stale_while_one_reload_runs(
        redis: RedisClient) -> None:
    """The stale-while-revalidate path alone (early_refresh off, said here): still no request waits."""
    cache = Cache(RedisTier(redis), CacheConfig(namespace=namespace(), early_refresh=False, jitter=0.0))
    await cache.start()
    loader = Counted(0.1)
    try:
        await cache.get_or_load("k", loader, ttl=0.3)
        await asyncio.sleep(0.35)
        began = time.perf_counter()
        answers = await asyncio.gather(*(cache.get_or_load("k", loader, ttl=0.3) for _ in range(200)))
        assert time.perf_counter() - began < 0.05
        assert set(answers) == {1} and cache.snapshot()["requests"][("local", "stale")] == 200
        await asyncio.sleep(0.15)
        assert loader.calls == 2 and await cache.get_or_load("k", loader, ttl=0.3) == 2
    finally:
        await cache.invalidate_prefix("")
        await cache.aclose()


async def test_a_failing_loader_reaches_every_waiter_and_poisons_nothing(redis: RedisClient) -> None:
    cache = Cache(RedisTier(redis), CacheConfig(namespace=namespace()))
    await cache.start()
    broken = Counted(0.02, error="the database said no")
    try:
        results = await asyncio.gather(*(cache.get_or_load("k", broken) for _ in range(100)), return_exceptions=True)
        assert broken.calls == 1
        assert all(isinstance(r, ValueError) and str(r) == "the database said no" for r in results)
        assert await cache.get("k") is None and "k" not in cache.local
        assert await redis.get(cache.layout.lease("k")) is None        # the lease was released
        assert await cache.get_or_load("k", Counted(value=7)) == 7
        assert cache.stats.loader_errors == 1
    finally:
        await cache.invalidate_prefix("")
        await cache.aclose()


async def test_a_value_read_at_its_expiry_instant_is_not_answered(redis: RedisClient) -> None:
    now = [1_900_000_000.0]
    cache = Cache(RedisTier(redis), CacheConfig(namespace=namespace(), jitter=0.0, stale_s=0.0),
                  clock=lambda: now[0])
    await cache.start()
    try:
        await cache.set("k", "v", ttl=1)
        cache.local.clear()                    # the remote copy decides
        now[0] += 0.999
        assert await cache.get("k") == "v"
        now[0] += 0.001
        assert await cache.get("k") is None
    finally:
        await cache.invalidate_prefix("")
        await cache.aclose()


class Items:
    """Item lookups through a cache, loaded from MySQL's ``items`` table, the queries counted."""

    def __init__(self, mysql: MySQLClient, cache: Cache) -> None:
        self.mysql = mysql
        self.cache = cache
        self.queries = 0

    async def load(self, item_id: int) -> object:
        self.queries += 1
        return await self.mysql.fetchone("SELECT id, name FROM items WHERE id = %s", (item_id,))

    async def ask(self, ids: list[int], bloom: LocalBloom | None = None, cache: Cache | None = None) -> list[object]:
        """``get_or_load`` of each id, a thousand at a time; the answers in order."""
        cache = cache or self.cache
        answers: list[object] = []
        for start in range(0, len(ids), 1000):
            answers += await asyncio.gather(*(cache.get_or_load(f"item:{i}", functools.partial(self.load, i),
                                                                bloom=bloom) for i in ids[start:start + 1000]))
        return answers


@pytest.fixture
async def items(settings: Settings, redis: RedisClient) -> AsyncIterator[Items]:
    mysql = MySQLClient(settings.mysql)
    await mysql.start()
    cache = Cache(RedisTier(redis), CacheConfig(namespace=namespace()))
    await cache.start()
    yield Items(mysql, cache)
    await cache.invalidate_prefix("")
    await cache.aclose()
    await mysql.aclose()


def absent_ids(seed: int) -> tuple[list[int], list[int]]:
    """500 ids with no row, and 10,000 requests drawn from them."""
    rng = random.Random(seed)
    absent = rng.sample(range(10_000_000, 20_000_000), 500)
    return absent, [rng.choice(absent) for _ in range(10_000)]


async def test_absent_ids_reach_mysql_once_each(items: Items, redis: RedisClient) -> None:
    """Penetration: 10,000 requests for 500 random absent ids are 500 queries, then none."""
    absent, requests = absent_ids(12)
    assert await items.ask(requests) == [None] * len(requests)
    distinct = len(set(requests))
    assert items.queries == distinct     # each absent id was asked once: the negative entry answered the rest
    # Another process (a fresh local tier) finds the negative entries in Redis: no query at all.
    other = Cache(RedisTier(redis), items.cache.config)
    await other.start()
    assert await items.ask(absent[:100], cache=other) == [None] * 100
    assert items.queries == distinct


async def test_a_hundred_thousand_keys_written_together_expire_spread_over_the_jitter_window(
        redis: RedisClient) -> None:
    """Avalanche: with the default jitter (±10%) the expiry times of one batch are spread evenly."""
    cache = Cache(RedisTier(redis), CacheConfig(namespace=namespace()))
    await cache.start()
    ttl, stale = 100.0, cache.config.stale_s
    keys = [f"k{i}" for i in range(100_000)]
    try:
        written_at = time.time()
        await cache.set_many(dict.fromkeys(keys, 1), ttl=ttl)
        sample = [cache.layout.value(k) for k in keys[::20]]
        envelopes = [cache.codec.decode(blob) for blob in await redis.batch([("GET", k) for k in sample])]
        lives = [env.fresh_until - written_at for env in envelopes]       # each one's TTL as drawn
        assert min(lives) >= 0.9 * ttl and max(lives) <= 1.1 * ttl + 5
        buckets = [0] * 10
        for life in lives:
            buckets[min(9, int((life - 0.9 * ttl) / (0.02 * ttl)))] += 1
        mean = len(lives) / 10
        assert all(abs(b - mean) < 0.15 * mean for b in buckets), buckets
        # Redis drops each copy stale_s after its own expiry, so the deletions are spread the same way.
        # (Its PX counts from when Redis got the SET, a little later than the TTL was drawn: encoding
        # and sending 100k values takes seconds here, and a copy outlives its plan by that much.)
        written_in = time.time() - written_at
        pttls = await redis.batch([("PTTL", k) for k in sample])
        now = time.time()
        for env, pttl in zip(envelopes, pttls, strict=True):
            assert -1.0 < pttl / 1000 - (env.fresh_until + stale - now) < written_in + 1.0
        # Without jitter (said here, to show what it prevents) they would all expire within a second.
        assert max(lives) - min(lives) > 0.15 * ttl
    finally:
        for start in range(0, len(keys), 10_000):
            await redis.command("UNLINK", *(cache.layout.value(k) for k in keys[start:start + 10_000]))
        await cache.aclose()


async def test_a_thousand_cold_requests_in_one_process_load_once_without_a_remote_tier() -> None:
    cache = Cache(None)
    loader = Counted(0.02, value="v")
    assert await asyncio.gather(*(cache.get_or_load("k", loader) for _ in range(1000))) == ["v"] * 1000
    assert loader.calls == 1



async def test_with_a_bloom_filter_absent_ids_reach_mysql_only_as_its_false_positives(items: Items) -> None:
    """Penetration with a filter of the ids that exist: the rest never reach MySQL, or even Redis."""
    rows = await items.mysql.fetchall("SELECT id FROM items")
    bloom = LocalBloom(capacity=max(1000, len(rows)), error_rate=0.01)
    bloom.add_many(f"item:{row[0]}" for row in rows)
    _, requests = absent_ids(13)
    assert await items.ask(requests, bloom) == [None] * len(requests)
    passed = {i for i in requests if bloom.might_contain(f"item:{i}")}
    assert items.queries == len(passed)          # only the filter's false positives were asked, once each
    assert items.queries <= 0.01 * 10_000        # at most its rate times the requests (here: about 5 ids)
    rejected = items.cache.snapshot()["requests"][("bloom", "rejected")]
    assert rejected == sum(1 for i in requests if i not in passed)
    assert await items.ask([7], bloom) == [(7, "item-7")]      # an existing id passes the filter and loads


async def test_a_first_caller_cancelled_during_its_remote_read_leaves_the_others_an_answer(
        settings: Settings) -> None:
    """The first miss reads the remote tier inline; cancelled there, the load goes on for the rest.

    A proxy in front of the real Redis holds every reply 200 ms, so the cancellation lands
    while the first caller's read is in flight.
    """
    async with Proxy((settings.redis.host, settings.redis.port)) as proxy:
        client = RedisClient(dataclasses.replace(settings.redis, port=proxy.port))
        await client.start()
        cache = Cache(RedisTier(client), CacheConfig(namespace=namespace()))
        await cache.start()
        loader = Counted(value="value")
        try:
            proxy.latency(0.2)
            first = asyncio.ensure_future(cache.get_or_load("k", loader))
            await asyncio.sleep(0.05)            # the first caller is inside its remote read
            others = [asyncio.ensure_future(cache.get_or_load("k", loader)) for _ in range(10)]
            await asyncio.sleep(0.01)
            first.cancel()
            answers = await asyncio.wait_for(asyncio.gather(*others), 10)
            assert first.cancelled()
            assert answers == ["value"] * 10 and loader.calls == 1
        finally:
            proxy.normal()
            await cache.invalidate_prefix("")
            await cache.aclose()
            await client.aclose()
