"""Bloom filters: no false negatives, the configured false-positive rate, stable hashing, atomic rebuilds.

``RedisBloom`` runs against the stack's Redis (16379), each test under a key prefix
of its own that is removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from xxhash import xxh3_64_hexdigest, xxh3_128_intdigest

from app.settings import Settings
from drivers.cache.bloom import LocalBloom, RedisBloom, bit_positions, bloom_size, stable_hash
from drivers.errors import InterfaceError
from drivers.redis import RedisClient
from tests.conftest import ROOT

RATE = 0.01
PRESENT = [f"user:{i}:profile" for i in range(10_000)]
ABSENT = [f"nobody:{i}" for i in range(100_000)]


def within_rate(false_positives: int, tried: int, rate: float = RATE) -> bool:
    measured = false_positives / tried
    return rate / 1.5 <= measured <= rate * 1.5


async def keys_under(redis: RedisClient, prefix: str) -> list[bytes]:
    found: list[bytes] = []
    cursor: bytes | int = 0
    while True:
        cursor, keys = await redis.command("SCAN", cursor, "MATCH", prefix + "*", "COUNT", 10_000)
        found += keys
        if cursor in (b"0", 0):
            return found


@pytest.fixture
async def name(redis: RedisClient) -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; whatever is under it is removed afterwards."""
    prefix = f"test:bloom:{uuid.uuid4().hex}"
    yield prefix
    if keys := await keys_under(redis, prefix):
        await redis.command("UNLINK", *keys)


# -- sizes and hashing (no I/O) --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("capacity", "rate", "bits", "hashes"), [
    (1000, 0.01, 9586, 7),
    (1_000_000, 0.01, 9_585_059, 7),
    (1000, 0.001, 14_378, 10),
    (10, 0.5, 15, 1),
])
def test_sizes_follow_the_standard_formulas(capacity: int, rate: float, bits: int, hashes: int) -> None:
    assert bloom_size(capacity, rate) == (bits, hashes)
    assert bits == math.ceil(-capacity * math.log(rate) / math.log(2) ** 2)


@pytest.mark.parametrize(("capacity", "rate"), [(0, 0.01), (-5, 0.01), (1.5, 0.01), (True, 0.01), (10, 0.0),
                                                (10, 1.0), (10, -0.1), (10, "0.01")])
def test_unusable_sizes_are_interface_errors(capacity: int, rate: float) -> None:
    with pytest.raises(InterfaceError, match="Bloom filter's"):
        LocalBloom(capacity, rate)


def test_a_redis_bitmap_past_2_to_the_32_bits_is_an_interface_error() -> None:
    with pytest.raises(InterfaceError, match="over Redis's 4294967296"):
        RedisBloom(RedisClient(), "k", 500_000_000, 0.001)


def test_bit_positions_are_double_hashing_of_xxh3_128_halves() -> None:
    for key in ("a", "user:42", "ключ", ""):
        h = xxh3_128_intdigest(key.encode())
        h1, h2 = h >> 64, (h & (2**64 - 1)) | 1
        assert bit_positions(key, 9586, 7) == [(h1 + i * h2) % 9586 for i in range(7)]


def test_the_stable_hash_fits_rbloom_s_signed_128_bit_range() -> None:
    hashes = [stable_hash(k) for k in PRESENT[:2000]]
    assert all(-(2**127) <= h < 2**127 for h in hashes)
    assert any(h < 0 for h in hashes) and any(h > 0 for h in hashes)


# -- LocalBloom -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local() -> LocalBloom:
    bloom = LocalBloom(len(PRESENT), RATE)
    bloom.add_many(PRESENT)
    return bloom


def test_local_filter_never_misses_an_added_key(local: LocalBloom) -> None:
    assert all(local.might_contain(k) for k in PRESENT)
    single = LocalBloom(100, RATE)
    single.add("one")
    assert "one" in single


def test_local_filter_false_positive_rate_over_100k_absent_keys_is_the_configured_one(local: LocalBloom) -> None:
    false_positives = sum(map(local.might_contain, ABSENT))
    assert within_rate(false_positives, len(ABSENT)), false_positives / len(ABSENT)


def test_local_rebuild_keeps_keys_added_while_it_builds() -> None:
    bloom = LocalBloom(2000, RATE)
    bloom.add_many(["old"])

    def keys() -> Iterator[str]:
        for i in range(1000):
            if i == 500:
                bloom.add_many([f"late:{j}" for j in range(50)])   # as another thread would, mid-build
                bloom.add("later")
            yield f"new:{i}"

    bloom.rebuild(keys())
    assert all(bloom.might_contain(f"late:{j}") for j in range(50))
    assert "later" in bloom and all(f"new:{i}" in bloom for i in range(1000))


def test_local_rebuild_swaps_at_once_never_missing_a_key_of_both_sets() -> None:
    bloom = LocalBloom(2000, RATE)
    both = [f"both:{i}" for i in range(300)]
    bloom.add_many([f"old:{i}" for i in range(1000)] + both)
    missing: list[str] = []

    def keys() -> Iterator[str]:
        for i in range(1000):
            if i % 100 == 0:   # checks while the new filter is half built
                missing.extend(k for k in both if not bloom.might_contain(k))
            yield f"new:{i}"
        yield from both

    bloom.rebuild(keys())
    assert missing == []
    assert all(k in bloom for k in both) and all(f"new:{i}" in bloom for i in range(1000))
    assert sum(f"old:{i}" in bloom for i in range(1000)) < 50, "the old filter's keys are gone (but false positives)"


async def test_local_rebuild_in_a_thread_leaves_concurrent_checks_no_gap() -> None:
    bloom = LocalBloom(400_000, RATE)
    both = [f"both:{i}" for i in range(200)]
    bloom.add_many([f"old:{i}" for i in range(1000)] + both)
    new = [f"new:{i}" for i in range(300_000)] + both
    building = asyncio.ensure_future(asyncio.to_thread(bloom.rebuild, new))
    rounds, missing = 0, 0
    while not building.done():
        missing += sum(not bloom.might_contain(k) for k in both)
        rounds += 1
        await asyncio.sleep(0)
    await building
    assert rounds > 5, "the checks should have run while the thread was building"
    assert missing == 0
    assert "new:299999" in bloom


def test_a_second_local_rebuild_at_once_is_an_interface_error() -> None:
    bloom = LocalBloom(100, RATE)

    def keys() -> Iterator[str]:
        yield "a"
        bloom.rebuild(["b"])

    with pytest.raises(InterfaceError, match="being rebuilt already"):
        bloom.rebuild(keys())
    bloom.rebuild(["c"])   # the failed rebuild left nothing behind
    assert "c" in bloom


# -- RedisBloom -----------------------------------------------------------------------------------------------------

async def test_redis_filter_never_misses_an_added_key_and_has_the_configured_rate(
        redis: RedisClient, name: str) -> None:
    # Every answer for the 10k added keys and 2k absent ones comes from Redis; the rate over 100k
    # absent keys is read off the bitmap Redis holds (fetched with GET), by the same bit positions.
    bloom = RedisBloom(redis, name, len(PRESENT), RATE)
    await bloom.prepare()
    await bloom.add_many(PRESENT[1:])
    await bloom.add(PRESENT[0])
    assert all(await bloom.might_contain_many(PRESENT))
    assert await bloom.might_contain(PRESENT[0])
    bitmap = await redis.get(name)
    assert bitmap is not None

    def held(key: str) -> bool:   # GETBIT's bit order: bit 0 is the most significant bit of byte 0
        return all(bitmap[p >> 3] >> (7 - (p & 7)) & 1 for p in bit_positions(key, bloom.bits, bloom.hashes))

    assert await bloom.might_contain_many(ABSENT[:2000]) == [held(k) for k in ABSENT[:2000]]
    assert [await bloom.might_contain(k) for k in ABSENT[:300]] == [held(k) for k in ABSENT[:300]]
    false_positives = sum(map(held, ABSENT))
    assert within_rate(false_positives, len(ABSENT)), false_positives / len(ABSENT)


async def test_redis_filter_sizes_its_bitmap_and_refuses_one_of_other_sizes(redis: RedisClient, name: str) -> None:
    bloom = RedisBloom(redis, name, 1000, RATE)
    await bloom.prepare()
    assert await redis.command("STRLEN", name) == 9586 // 8 + 1
    await bloom.add("x")
    await bloom.prepare()   # again: the bits stay
    assert await bloom.might_contain("x")
    with pytest.raises(InterfaceError, match="every process must build it with the same sizes"):
        await RedisBloom(redis, name, 5000, RATE).prepare()


async def test_redis_rebuild_swaps_at_once_under_concurrent_checks(redis: RedisClient, name: str) -> None:
    bloom = RedisBloom(redis, name, 2000, RATE, chunk=50)
    both = [f"both:{i}" for i in range(100)]
    old = [f"old:{i}" for i in range(1000)]
    await bloom.add_many(old + both)
    new = [f"new:{i}" for i in range(1000)] + both
    rebuilding = asyncio.ensure_future(bloom.rebuild(new))
    rounds, missing = 0, 0
    while not rebuilding.done():
        missing += (await bloom.might_contain_many(both)).count(False)
        rounds += 1
    await rebuilding
    assert rounds > 5, "the checks should have run while the rebuild was writing"
    assert missing == 0
    assert all(await bloom.might_contain_many(new))
    assert (await bloom.might_contain_many(old)).count(True) < 50, "the old keys are gone (but false positives)"
    assert await redis.command("PTTL", name) == -1, "the live filter keeps no expiry"
    assert await keys_under(redis, f"{name}:rebuild:") == [], "no staging key is left"


async def test_redis_rebuild_keeps_keys_this_process_adds_meanwhile(redis: RedisClient, name: str) -> None:
    bloom = RedisBloom(redis, name, 2000, RATE, chunk=50)
    rebuilding = asyncio.ensure_future(bloom.rebuild(f"new:{i}" for i in range(1000)))
    await asyncio.sleep(0)
    added = 0
    while not rebuilding.done():
        await bloom.add(f"late:{added}")
        added += 1
    await rebuilding
    assert added > 5, "the adds should have run while the rebuild was writing"
    assert all(await bloom.might_contain_many([f"late:{i}" for i in range(added)]))


async def test_a_redis_rebuild_that_fails_leaves_the_filter_and_no_staging_key(redis: RedisClient, name: str) -> None:
    bloom = RedisBloom(redis, name, 1000, RATE, chunk=10)
    await bloom.add("kept")

    def keys() -> Iterator[str]:
        yield from (f"new:{i}" for i in range(50))
        raise RuntimeError("the source of keys broke")

    with pytest.raises(RuntimeError, match="source of keys broke"):
        await bloom.rebuild(keys())
    assert await keys_under(redis, f"{name}:rebuild:") == []
    assert await bloom.might_contain("kept")
    await bloom.rebuild(["again"])   # a failed rebuild leaves none running
    assert await bloom.might_contain("again")


async def test_a_second_redis_rebuild_at_once_is_an_interface_error(redis: RedisClient, name: str) -> None:
    bloom = RedisBloom(redis, name, 1000, RATE, chunk=10)
    first = asyncio.ensure_future(bloom.rebuild(f"k{i}" for i in range(100)))
    await asyncio.sleep(0)
    with pytest.raises(InterfaceError, match="being rebuilt already"):
        await bloom.rebuild(["x"])
    await first
    assert await bloom.might_contain("k99")


# -- another process ------------------------------------------------------------------------------------------------

_CHILD = """
import asyncio, json, sys
from xxhash import xxh3_64_hexdigest
from drivers.cache.bloom import LocalBloom, RedisBloom
from drivers.redis import RedisClient, RedisConfig

host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
present = [f"user:{i}:profile" for i in range(1000)]
asked = present + [f"nobody:{i}" for i in range(2000)]
local = LocalBloom(1000, 0.01)
local.add_many(present)

async def shared():
    client = RedisClient(RedisConfig(host=host, port=port))
    try:
        return await RedisBloom(client, name, 1000, 0.01).might_contain_many(asked)
    finally:
        await client.aclose()

print(json.dumps({"salted": hash("user:1:profile"), "local": [local.might_contain(k) for k in asked],
                  "local_bits": xxh3_64_hexdigest(local.to_bytes()), "redis": asyncio.run(shared())}))
"""


async def test_another_process_with_another_hash_seed_gives_the_same_answers(
        redis: RedisClient, name: str, settings: Settings) -> None:
    present = [f"user:{i}:profile" for i in range(1000)]
    asked = present + [f"nobody:{i}" for i in range(2000)]
    local = LocalBloom(1000, RATE)
    local.add_many(present)
    shared = RedisBloom(redis, name, 1000, RATE)
    await shared.add_many(present)
    seed = "12345" if os.environ.get("PYTHONHASHSEED") != "12345" else "54321"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, settings.redis.host, str(settings.redis.port), name, cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": seed}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    child = json.loads(out)
    assert child["salted"] != hash("user:1:profile"), "the child's str hash should differ from this process's"
    mine = [local.might_contain(k) for k in asked]
    assert any(mine[1000:]), "some false positives make the comparison of absent keys mean something"
    assert child["local"] == mine
    assert child["local_bits"] == xxh3_64_hexdigest(local.to_bytes())
    assert child["redis"] == await shared.might_contain_many(asked)
    assert all(child["redis"][:1000])


async def test_refresh_builds_on_the_loop_in_chunks_and_swaps_at_once() -> None:
    """``refresh`` lets the loop run between chunks; checks meanwhile read the old filter, then the new."""
    bloom = LocalBloom(200_000, 0.01)
    old = [f"old:{i}" for i in range(50_000)]
    bloom.add_many(old)
    new = old[:25_000] + [f"new:{i}" for i in range(100_000)]
    turns = 0
    seen_during: list[bool] = []

    async def ticker() -> None:
        nonlocal turns
        while True:
            turns += 1
            seen_during.append(bloom.might_contain("old:1"))      # in both the old and the new set
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await bloom.refresh(new, chunk=5_000)
    task.cancel()
    assert turns >= 20                  # the loop ran between the chunks: 125k keys in 25 chunks
    assert all(seen_during)             # a key of both sets never tested absent
    assert all(bloom.might_contain(k) for k in new) and bloom.might_contain("new:99999")
    absent_old = sum(bloom.might_contain(k) for k in old[25_000:])
    assert absent_old < 0.05 * 25_000   # the keys only the old set had are gone (false positives aside)
