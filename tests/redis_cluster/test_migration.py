"""Slots migrated for real between primaries (CLUSTER SETSLOT + MIGRATE): MOVED, ASK and TRYAGAIN met by the client.

Every test moves its slot back to where it was, so the cluster is left as found.
"""

from __future__ import annotations

import uuid

import pytest

from app.settings import STACK_HOST
from drivers.errors import BackendError
from drivers.redis import RedisClusterClient, RedisClusterConfig
from drivers.redis.slots import key_slot
from tests.redis_cluster.conftest import on_node, with_settings


def token() -> str:
    return uuid.uuid4().hex[:12]


def owner_and_other(cluster: RedisClusterClient, slot: int) -> tuple[int, int, list[int]]:
    """The port of the slot's primary, the port of another primary, and every primary's port."""
    table = cluster.topology.table
    assert table is not None
    shard = table.shard(slot)
    assert shard is not None
    primaries = [a.port for a in table.primaries]
    return shard.primary.port, next(p for p in primaries if p != shard.primary.port), primaries


async def node_id(port: int) -> bytes:
    node: bytes = await on_node(port, "CLUSTER", "MYID")
    return node


async def begin_migration(slot: int, source: int, target: int) -> None:
    """``slot`` IMPORTING on the target, MIGRATING on the source (the order Redis's documentation gives)."""
    await on_node(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", await node_id(source))
    await on_node(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", await node_id(target))


async def migrate(source: int, target: int, keys: list[bytes] | None = None, slot: int | None = None) -> None:
    """MIGRATE ``keys`` (or every key left in ``slot``) from the source node to the target."""
    if keys is None:
        keys = await on_node(source, "CLUSTER", "GETKEYSINSLOT", slot or 0, 1000)
    if keys:
        await on_node(source, "MIGRATE", STACK_HOST, target, "", 0, 5000, "KEYS", *keys)


async def finish_migration(slot: int, source: int, target: int, primaries: list[int]) -> None:
    """The rest of the slot's keys moved, then ``SETSLOT NODE`` on the target, the source and every other primary."""
    await migrate(source, target, slot=slot)
    owner = await node_id(target)
    for port in [target, source, *(p for p in primaries if p not in (source, target))]:
        await on_node(port, "CLUSTER", "SETSLOT", slot, "NODE", owner)


async def move_slot(slot: int, source: int, target: int, primaries: list[int]) -> None:
    await begin_migration(slot, source, target)
    await finish_migration(slot, source, target, primaries)


async def test_a_moved_slot_is_followed_and_the_table_changed(cluster: RedisClusterClient) -> None:
    key = f"moved:{token()}"
    slot = key_slot(key)
    await cluster.set(key, "here", px=60_000)
    source, target, primaries = owner_and_other(cluster, slot)
    await move_slot(slot, source, target, primaries)
    try:
        assert await cluster.get(key) == b"here"   # the source answered MOVED; followed to the target
        assert cluster.moved == 1
        assert cluster.topology.route[slot] is cluster.topology.links[next(
            a for a in cluster.topology.links if a.port == target)]
        assert await cluster.get(key) == b"here"
        assert cluster.moved == 1                   # the table knew: no second redirect
    finally:
        await move_slot(slot, target, source, primaries)
    assert await cluster.get(key) == b"here"       # and back again
    assert cluster.moved == 2
    await cluster.delete([key])


async def test_a_key_already_migrated_is_asked_for_at_the_target_without_changing_the_table(
        cluster: RedisClusterClient) -> None:
    tag = f"{{ask:{token()}}}"
    gone, stays, new = f"{tag}:gone", f"{tag}:stays", f"{tag}:new"
    slot = key_slot(gone)
    await cluster.batch([("SET", gone, "gone", "PX", 60_000), ("SET", stays, "stays", "PX", 60_000)],
                        idempotent=True)
    source, target, primaries = owner_and_other(cluster, slot)
    route_before, reads_before = cluster.topology.route[slot], cluster.topology.refreshes
    await begin_migration(slot, source, target)
    try:
        await migrate(source, target, [gone.encode()])
        assert await cluster.get(gone) == b"gone"      # ASK from the source; ASKING + GET on the target
        assert cluster.topology.route[slot] is route_before
        assert await cluster.get(stays) == b"stays"    # still on the source: served there
        assert await cluster.set(new, "new", px=60_000)   # a new key of the slot: created on the target
        assert (cluster.asked, cluster.moved) == (2, 0)
        assert cluster.topology.route[slot] is route_before
        assert cluster.topology.refreshes == reads_before   # an ASK is no news about the table: not read again
        assert await on_node(target, "CLUSTER", "COUNTKEYSINSLOT", slot) == 2   # gone and new
        assert await on_node(source, "CLUSTER", "COUNTKEYSINSLOT", slot) == 1   # stays
    finally:
        await finish_migration(slot, source, target, primaries)
        await move_slot(slot, target, source, primaries)
    assert await cluster.mget([gone, stays, new]) == [b"gone", b"stays", b"new"]
    await cluster.delete([gone, stays, new])


async def test_a_multi_key_command_on_a_half_migrated_slot_gives_up_after_max_redirects(
        cluster_config: RedisClusterConfig) -> None:
    async with RedisClusterClient(with_settings(cluster_config, max_redirects=3)) as cluster:
        await _half_migrated_mget(cluster)


async def _half_migrated_mget(cluster: RedisClusterClient) -> None:
    tag = f"{{tryagain:{token()}}}"
    gone, stays = f"{tag}:gone", f"{tag}:stays"
    slot = key_slot(gone)
    await cluster.batch([("SET", gone, "1", "PX", 60_000), ("SET", stays, "2", "PX", 60_000)], idempotent=True)
    source, target, primaries = owner_and_other(cluster, slot)
    await begin_migration(slot, source, target)
    try:
        await migrate(source, target, [gone.encode()])
        with pytest.raises(BackendError, match=r"still redirected after 3 redirects \(TRYAGAIN") as caught:
            await cluster.mget([gone, stays])
        assert caught.value.backend == "redis-cluster"
        assert cluster.tried_again == 3
    finally:
        await finish_migration(slot, source, target, primaries)
        await move_slot(slot, target, source, primaries)
    assert await cluster.mget([gone, stays]) == [b"1", b"2"]
    await cluster.delete([gone, stays])
