"""The cache's Redis Cluster tier (``drivers.cache.remote.cluster``) on the stack's cluster.

Each test writes under a prefix of its own and leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from drivers.cache.remote.base import RemoteTier
from drivers.cache.remote.cluster import RedisClusterTier
from drivers.errors import BackendUnavailable
from drivers.redis import RedisClusterClient, RedisClusterConfig
from drivers.redis.slots import key_slot


@pytest.fixture
async def tier(cluster_config: RedisClusterConfig) -> AsyncIterator[RedisClusterTier]:
    tier = RedisClusterTier(RedisClusterClient(cluster_config), own=True)
    await tier.start()
    yield tier
    await tier.aclose()


@pytest.fixture
def prefix() -> str:
    return f"test:cluster-tier:{uuid.uuid4().hex}:"


def requests_per_node(tier: RedisClusterTier) -> dict[str, int]:
    return {a: n["requests"] for a, n in tier.client.stats()["detail"]["nodes"].items()}


async def test_values_round_trip_across_every_node_in_the_callers_order(tier: RedisClusterTier, prefix: str) -> None:
    assert isinstance(tier, RemoteTier) and tier.name == "redis-cluster"
    items = [(f"{prefix}{i}", bytes([i % 256]) * (i % 7) + b"\x00\r\n", 60_000) for i in range(300)]
    await tier.set_many(items)
    keys = [k for k, _, _ in items]
    table = tier.client.topology.table
    assert table is not None and len({table.owners[key_slot(k)].primary for k in keys}) == 3  # type: ignore[union-attr]
    asked = [*keys[::-1], f"{prefix}absent"]
    before = requests_per_node(tier)
    assert await tier.get_many(asked) == [v for _, v, _ in items[::-1]] + [None]
    sent = sum(requests_per_node(tier).values()) - sum(before.values())
    assert sent == len({key_slot(k) for k in asked}), "one MGET per slot"
    assert await tier.get(keys[5]) == items[5][1]
    assert 0 < int(await tier.client.command("PTTL", keys[0])) <= 60_000
    assert tier.client.calls.requests == 4   # set_many, get_many, get, PTTL: one call each
    await tier.delete_many(keys)
    assert await tier.get_many(keys) == [None] * len(keys)


async def test_a_lease_is_held_by_one_caller_and_released_only_by_its_token(tier: RedisClusterTier,
                                                                             prefix: str) -> None:
    key = f"{prefix}lease"
    assert await tier.acquire(key, b"mine", 5_000) is True
    assert await tier.acquire(key, b"theirs", 5_000) is False
    assert 0 < int(await tier.client.command("PTTL", key)) <= 5_000
    await tier.release(key, b"theirs")           # not its holder: the lease stays
    assert await tier.get(key) == b"mine"
    await tier.release(key, b"mine")
    assert await tier.get(key) is None
    assert await tier.acquire(key, b"theirs", 5_000) is True
    await tier.delete_many([key])


async def test_delete_prefix_removes_the_prefix_on_every_primary(tier: RedisClusterTier, prefix: str) -> None:
    await tier.set_many([(f"{prefix}gone:{i}", b"x", 60_000) for i in range(200)]
                        + [(f"{prefix}kept:{i}", b"y", 60_000) for i in range(20)])
    assert await tier.delete_prefix(f"{prefix}gone:") == 200
    assert await tier.get_many([f"{prefix}gone:{i}" for i in range(200)]) == [None] * 200
    assert await tier.delete_prefix(prefix) == 20


async def test_a_closed_tier_fails_with_the_clusters_backend_unavailable(cluster_config: RedisClusterConfig) -> None:
    tier = RedisClusterTier(RedisClusterClient(cluster_config), own=True)
    await tier.start()
    await tier.aclose()
    with pytest.raises(BackendUnavailable) as caught:
        await tier.get_many(["a", "b"])
    assert caught.value.backend == "redis-cluster"
