"""The sharded Redis tier against the stack's three standalone shards (16380-16382).

Each test writes under a prefix of its own and removes it at the end.  Where a key
landed is checked on each shard directly, with a client of its own.  A node that is
down is a real closed port (nothing listens there: connects are refused); a node that
hangs is a real shard behind the TCP proxy of ``tests.support.proxy`` swallowing
every byte, with a 0.3 s socket timeout in that node's settings.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from app.settings import REDIS_SHARD_PORTS, STACK_HOST, Settings
from drivers.cache.remote.base import RemoteTier
from drivers.cache.remote.shards import ShardedRedisTier, parse_node, parse_nodes
from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, InterfaceError
from drivers.redis import RedisClient, RedisConfig
from drivers.retry import NO_RETRY
from tests.conftest import free_port
from tests.support.proxy import Proxy

SHARDS = [f"{STACK_HOST}:{port}" for port in REDIS_SHARD_PORTS]


@pytest.fixture
async def prefix(settings: Settings) -> AsyncIterator[str]:
    """A key prefix of this test's own; every shard is cleared of it afterwards."""
    mine = f"test:shards:{uuid.uuid4().hex}:"
    yield mine
    for port in REDIS_SHARD_PORTS:
        async with RedisClient(RedisConfig(host=STACK_HOST, port=port)) as raw:
            cursor = b"0"
            while True:
                cursor, keys = await raw.command("SCAN", cursor, "MATCH", mine + "*", "COUNT", 1000)
                if keys:
                    await raw.command("UNLINK", *keys)
                if cursor in (b"0", 0):
                    break


@pytest.fixture
async def tier(prefix: str) -> AsyncIterator[ShardedRedisTier]:
    shards = ShardedRedisTier.from_addresses(SHARDS)
    await shards.start()
    yield shards
    await shards.aclose()


@pytest.fixture
async def raw() -> AsyncIterator[dict[str, RedisClient]]:
    """A client of its own on each shard, by node id."""
    clients = {a: RedisClient(RedisConfig(host=STACK_HOST, port=int(a.rpartition(":")[2]))) for a in SHARDS}
    yield clients
    for client in clients.values():
        await client.aclose()


def keys_on_every_node(tier: ShardedRedisTier, prefix: str, n: int) -> list[str]:
    keys = [f"{prefix}{i}" for i in range(n)]
    assert {tier.node_for(k) for k in keys} == set(tier.nodes), "the test's keys should cover every node"
    return keys


# -- nodes as text -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "host", "port", "weight"), [
    ("127.0.0.1:16380", "127.0.0.1", 16380, 1.0),
    ("cache-a.internal:6379@2", "cache-a.internal", 6379, 2.0),
    (" 10.0.0.5:7000@0.5 ", "10.0.0.5", 7000, 0.5),
    ("[::1]:6379@3", "::1", 6379, 3.0),
])
def test_a_node_is_written_host_port_and_an_optional_weight(spec: str, host: str, port: int, weight: float) -> None:
    config, w = parse_node(spec, RedisConfig(socket_timeout_s=0.7))
    assert (config.host, config.port, w) == (host, port, weight)
    assert config.socket_timeout_s == 0.7, "the other settings come from the base config"


@pytest.mark.parametrize(("spec", "message"), [
    ("", "a node is a 'host:port'"),
    ("localhost", "no port"),
    (":6379", "no port"),
    ("localhost:", "port '' is not a number from 1 to 65535"),
    ("localhost:http", "port 'http' is not a number"),
    ("localhost:70000", "port '70000' is not a number from 1 to 65535"),
    ("localhost:0", "port '0'"),
    ("localhost:6379@", "weight '' is not a number"),
    ("localhost:6379@heavy", "weight 'heavy' is not a number"),
    ("localhost:6379@0", "positive finite number, not '0'"),
    ("localhost:6379@-1", "positive finite number"),
    ("localhost:6379@inf", "positive finite number"),
    ("::1:6379", "IPv6 address is written in brackets"),
    ("[::1:6379", "IPv6 address is written in brackets"),
])
def test_a_malformed_node_is_an_interface_error_that_shows_the_form(spec: str, message: str) -> None:
    with pytest.raises(InterfaceError, match="host:port") as caught:
        parse_node(spec)
    assert message in caught.value.message
    assert caught.value.backend == "redis-shards"


def test_a_node_listed_twice_is_an_interface_error() -> None:
    with pytest.raises(InterfaceError, match=r"node 127\.0\.0\.1:16380 is listed twice"):
        ShardedRedisTier.from_addresses(["127.0.0.1:16380", "127.0.0.1:16381", "127.0.0.1:16380@2"])


@pytest.mark.parametrize("weight", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_a_node_given_an_unusable_weight_is_an_interface_error(weight: float) -> None:
    with pytest.raises(InterfaceError, match=r"node 127\.0\.0\.1:16380's weight must be a positive") as caught:
        ShardedRedisTier([(RedisConfig(host="127.0.0.1", port=16380), weight)])
    assert caught.value.backend == "redis-shards"


def test_no_nodes_or_one_string_is_an_interface_error() -> None:
    with pytest.raises(InterfaceError, match="at least one node"):
        ShardedRedisTier([])
    with pytest.raises(InterfaceError, match="not one string"):
        parse_nodes("127.0.0.1:16380")


def test_the_tier_is_a_remote_tier_named_redis_shards() -> None:
    tier = ShardedRedisTier.from_addresses(SHARDS)
    assert isinstance(tier, RemoteTier)
    assert tier.name == "redis-shards"
    assert tier.address == ",".join(SHARDS)


# -- against the three shards ----------------------------------------------------------------------------------------

async def test_values_round_trip_and_batches_keep_the_input_order(tier: ShardedRedisTier, prefix: str) -> None:
    keys = keys_on_every_node(tier, prefix, 60)
    await tier.set_many([(k, f"value of {k}".encode(), 60_000) for k in keys[::2]])
    assert await tier.get(keys[0]) == f"value of {keys[0]}".encode()
    assert await tier.get(keys[1]) is None
    asked = list(reversed(keys))
    assert await tier.get_many(asked) == [f"value of {k}".encode() if i % 2 == 0 else None
                                          for i, k in reversed(list(enumerate(keys)))]
    await tier.delete_many(keys[:10])
    assert await tier.get_many(keys[:12]) == [None] * 10 + [f"value of {keys[10]}".encode(), None]
    assert await tier.get_many([]) == []


async def test_a_batch_spreads_its_keys_over_every_shard_each_key_on_its_node_only(
        tier: ShardedRedisTier, prefix: str, raw: dict[str, RedisClient]) -> None:
    keys = [f"{prefix}{i}" for i in range(300)]
    await tier.set_many([(k, b"x", 60_000) for k in keys])
    held: dict[str, int] = {}
    for node, client in raw.items():
        found = await client.batch([("EXISTS", k) for k in keys])
        assert found == [int(tier.node_for(k) == node) for k in keys]
        held[node] = sum(found)
    assert sum(held.values()) == 300
    assert min(held.values()) > 60, held   # about 100 each


async def test_values_get_their_ttl_on_their_node(tier: ShardedRedisTier, prefix: str,
                                                   raw: dict[str, RedisClient]) -> None:
    key = f"{prefix}ttl"
    await tier.set_many([(key, b"v", 5_000)])
    ttl = await raw[tier.node_for(key)].command("PTTL", key)
    assert 0 < ttl <= 5_000


async def test_a_lease_is_taken_once_and_released_only_by_its_holder_on_the_keys_node(
        tier: ShardedRedisTier, prefix: str, raw: dict[str, RedisClient]) -> None:
    lease = f"{prefix}lease"
    assert await tier.acquire(lease, b"first", 10_000)
    assert not await tier.acquire(lease, b"second", 10_000)
    assert await raw[tier.node_for(lease)].get(lease) == b"first"
    await tier.release(lease, b"second")
    assert await raw[tier.node_for(lease)].get(lease) == b"first"
    await tier.release(lease, b"first")
    assert await raw[tier.node_for(lease)].get(lease) is None
    assert await tier.acquire(lease, b"second", 10_000)


async def test_delete_prefix_removes_the_prefix_on_every_shard_and_nothing_else(
        tier: ShardedRedisTier, prefix: str, raw: dict[str, RedisClient]) -> None:
    doomed = keys_on_every_node(tier, prefix + "doomed:", 90)
    kept = [f"{prefix}kept:{i}" for i in range(30)]
    await tier.set_many([(k, b"v", 60_000) for k in doomed + kept])
    assert await tier.delete_prefix(prefix + "doomed:") == 90
    for client in raw.values():
        assert await client.batch([("EXISTS", k) for k in doomed]) == [0] * 90
    assert await tier.get_many(kept) == [b"v"] * 30


async def test_the_groups_of_a_batch_are_sent_to_their_nodes_concurrently(prefix: str) -> None:
    # Each shard behind a proxy that delays every chunk by 0.25 s: one round trip costs 0.5 s.
    async with Proxy((STACK_HOST, REDIS_SHARD_PORTS[0])) as a, Proxy((STACK_HOST, REDIS_SHARD_PORTS[1])) as b, \
            Proxy((STACK_HOST, REDIS_SHARD_PORTS[2])) as c:
        tier = ShardedRedisTier.from_addresses([f"{p.address[0]}:{p.address[1]}" for p in (a, b, c)])
        try:
            await tier.start()
            keys = keys_on_every_node(tier, prefix, 60)
            for proxy in (a, b, c):
                proxy.latency(0.25)
            loop = asyncio.get_running_loop()
            began = loop.time()
            assert await tier.get_many(keys) == [None] * 60
            assert loop.time() - began < 1.0, "three nodes' round trips of 0.5 s each, one after the other"
        finally:
            await tier.aclose()


async def test_a_nodes_error_reply_is_a_backend_error_naming_the_node(
        tier: ShardedRedisTier, prefix: str, raw: dict[str, RedisClient]) -> None:
    key = f"{prefix}a-list"
    await raw[tier.node_for(key)].command("RPUSH", key, "not a string value")
    with pytest.raises(BackendError, match=f"redis-shards: node {tier.node_for(key)}: .*WRONGTYPE") as caught:
        await tier.get(key)
    assert caught.value.backend == "redis-shards"


# -- a node down ----------------------------------------------------------------------------------------------------

async def test_a_node_that_refuses_connections_fails_only_the_keys_placed_on_it(
        prefix: str, raw: dict[str, RedisClient]) -> None:
    dead = f"127.0.0.1:{free_port()}"   # nothing listens there
    tier = ShardedRedisTier.from_addresses([*SHARDS[:2], dead], RedisConfig(connect_timeout_s=0.5, retry=NO_RETRY))
    try:
        with pytest.raises(BackendUnavailable, match=f"node {dead}:") as caught:
            await tier.start()
        assert caught.value.backend == "redis-shards"
        keys = keys_on_every_node(tier, prefix, 60)
        live = [k for k in keys if tier.node_for(k) != dead]
        lost = [k for k in keys if tier.node_for(k) == dead]

        await tier.set_many([(k, b"v", 60_000) for k in live])
        assert await tier.get_many(live) == [b"v"] * len(live)
        assert await tier.get(live[0]) == b"v"

        for call in (tier.get(lost[0]), tier.acquire(lost[0], b"t", 1000), tier.release(lost[0], b"t"),
                     tier.get_many(lost), tier.delete_many(lost[:3])):
            with pytest.raises(BackendUnavailable, match=f"redis-shards: node {dead}: ") as caught:
                await call
            assert caught.value.backend == "redis-shards"
            assert isinstance(caught.value.__cause__, BackendUnavailable)
            assert caught.value.__cause__.backend == "redis"

        mixed = [f"{prefix}mixed:{i}" for i in range(60)]
        with pytest.raises(BackendUnavailable, match=f"redis-shards: node {dead}: "):
            await tier.set_many([(k, b"m", 60_000) for k in mixed])
        # The healthy nodes' groups of the failed batch were written.
        for k in mixed:
            if tier.node_for(k) != dead:
                assert await raw[tier.node_for(k)].get(k) == b"m"
        with pytest.raises(BackendUnavailable, match=f"node {dead}:"):
            await tier.get_many(mixed)
        with pytest.raises(BackendUnavailable, match=f"node {dead}:"):
            await tier.delete_prefix(prefix)
    finally:
        await tier.aclose()


async def test_a_batch_over_two_dead_nodes_names_both(prefix: str) -> None:
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    tier = ShardedRedisTier.from_addresses([SHARDS[0], *dead], RedisConfig(connect_timeout_s=0.5, retry=NO_RETRY))
    try:
        keys = keys_on_every_node(tier, prefix, 60)
        with pytest.raises(BackendUnavailable, match="redis-shards: 2 of 3 nodes failed: ") as caught:
            await tier.get_many(keys)
        assert all(f"node {d}: " in caught.value.message for d in dead)
        assert SHARDS[0] not in caught.value.message
    finally:
        await tier.aclose()


async def test_a_node_that_stops_answering_times_out_only_the_keys_placed_on_it(prefix: str) -> None:
    # A real shard behind a proxy that swallows every byte once switched; that node has a 0.3 s socket timeout.
    async with Proxy((STACK_HOST, REDIS_SHARD_PORTS[2])) as proxy:
        hung = f"{proxy.address[0]}:{proxy.address[1]}"
        nodes = [*(parse_node(s) for s in SHARDS[:2]),
                 parse_node(f"{hung}@1", RedisConfig(socket_timeout_s=0.3, retry=NO_RETRY))]
        tier = ShardedRedisTier(nodes)
        try:
            await tier.start()
            keys = keys_on_every_node(tier, prefix, 60)
            await tier.set_many([(k, b"v", 60_000) for k in keys])
            proxy.blackhole()
            live = [k for k in keys if tier.node_for(k) != hung]
            stuck = next(k for k in keys if tier.node_for(k) == hung)
            slow = asyncio.ensure_future(tier.get(stuck))
            assert await tier.get_many(live) == [b"v"] * len(live)   # answered while the other node hangs
            with pytest.raises(BackendTimeout, match=f"redis-shards: node {hung}: ") as caught:
                await slow
            assert caught.value.backend == "redis-shards"
            assert caught.value.waited_s == pytest.approx(0.3)
            with pytest.raises(BackendTimeout, match=f"node {hung}: "):
                await tier.get_many(keys)
        finally:
            await tier.aclose()
