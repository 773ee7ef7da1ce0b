"""Partition awareness on a real three-node cluster, checked against the nodes' own view.

The truth comes from the cluster: in a cache without backups, a local peek sent
to each node (through a client connected to that node alone) finds the key only
on the node that owns it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import Annotated, Any

import pytest

from drivers.ignite import CacheConfig, CacheMode, Client, hints
from drivers.ignite.cache import Cache
from drivers.ignite.protocol.cache_config import CacheKeyConfiguration
from tests.ignite.cluster.conftest import requests_by_node, wait_for_map


@dataclasses.dataclass
class OrderKey:
    order: int
    region: Annotated[int, hints.Int]


def keys_of(kind: str, n: int) -> list[Any]:
    if kind == "long":
        return [i * 7919 - 50_000 for i in range(n)]
    if kind == "int":
        return [hints.Int(i * 31 - 1000) for i in range(n)]
    if kind == "string":
        return [f"key-{i}-😀𝄞-{i * i}" for i in range(n)]
    if kind == "uuid":
        return [uuid.UUID(int=(i * 0x9E3779B97F4A7C15) % (1 << 128)) for i in range(n)]
    if kind == "complex":
        return [OrderKey(i, i % 5) for i in range(n)]
    raise AssertionError(kind)


async def primary_by_server(singles: dict[str, Client], cache: Cache, key: Any) -> str:
    """The address of the node that holds ``key``, as the nodes themselves say (local peeks)."""
    found = await asyncio.gather(*(c.cache(cache.name).local_peek(key) for c in singles.values()))
    owners = [address for address, value in zip(singles, found, strict=True) if value is not None]
    assert len(owners) == 1, (key, owners)
    return owners[0]


def routed_node(client: Client, cache: Cache, key: Any) -> str:
    address = client.primary_address(cache, key)
    assert address is not None, f"no primary chosen for {key!r}"
    return address


@pytest.mark.parametrize("template", ["pa_default", "parts1000", "parts7"])
@pytest.mark.parametrize("kind", ["long", "int", "string", "uuid", "complex"])
async def test_single_key_requests_go_to_the_primary_node(cclient: Client, singles: dict[str, Client],
                                                          template: str, kind: str) -> None:
    cache = await cclient.get_or_create_cache(f"{template}_{kind}_{uuid.uuid4().hex[:6]}")
    try:
        keys = keys_of(kind, 400)
        await cache.put_all([(k, i) for i, k in enumerate(keys)])
        await wait_for_map(cclient, cache)
        pmap = cclient.partition_map(cache)
        assert pmap is not None
        assert pmap.partitions == {"pa_default": 1024, "parts1000": 1000, "parts7": 7}[template]
        truth = await asyncio.gather(*(primary_by_server(singles, cache, k) for k in keys))
        ours = [routed_node(cclient, cache, k) for k in keys]
        mismatches = [(k, o, t) for k, o, t in zip(keys, ours, truth, strict=True) if o != t]
        assert not mismatches, mismatches[:5]
        assert len(set(truth)) == 3 or template == "parts7"  # keys spread over the nodes
    finally:
        await cache.destroy()


async def test_requests_are_sent_on_the_primarys_connection(cclient: Client, ccache: Cache) -> None:
    keys = list(range(300))
    await ccache.put_all({k: k for k in keys})
    await wait_for_map(cclient, ccache)
    target = cclient.ready_nodes()[1]
    mine = [k for k in keys if routed_node(cclient, ccache, k) == target]
    assert mine
    before = requests_by_node(cclient)
    assert await asyncio.gather(*(ccache.get(k) for k in mine)) == mine
    after = requests_by_node(cclient)
    assert after[target] - before[target] == len(mine)
    assert sum(after.values()) - sum(before.values()) == len(mine)


async def test_grouped_batches_equal_per_key_calls(cclient: Client, ccache: Cache) -> None:
    keys = [*range(0, 3000, 3), *(f"s{i}😀" for i in range(300))]
    await ccache.put_all({k: f"v{k}" for k in keys})
    await wait_for_map(cclient, ccache)
    asked = [*keys, "missing-1", 10**12]
    before = requests_by_node(cclient)
    got = await ccache.get_all(asked)
    after = requests_by_node(cclient)
    assert all(after[a] - before[a] == 1 for a in after), (before, after)  # one request per node
    singles = await asyncio.gather(*(ccache.get(k) for k in asked))
    assert got == {k: v for k, v in zip(asked, singles, strict=True) if v is not None}
    assert await ccache.contains_keys(keys) is True
    assert await ccache.contains_keys([*keys, "missing-1"]) is False
    await ccache.remove_keys(keys[:500])
    assert await ccache.get_size() == len(keys) - 500
    await ccache.clear_keys(keys[500:])
    assert await ccache.get_size() == 0


async def test_affinity_key_field_of_complex_keys_decides_the_node(cclient: Client,
                                                                   singles: dict[str, Client]) -> None:
    cache = await cclient.create_cache(CacheConfig(
        name=f"affinity_{uuid.uuid4().hex[:8]}", cache_mode=CacheMode.PARTITIONED, backups=0,
        key_configurations=(CacheKeyConfiguration("OrderKey", "region"),)))
    try:
        keys = [OrderKey(order, region) for region in range(6) for order in range(40)]
        await cache.put_all([(k, k.order) for k in keys])
        await wait_for_map(cclient, cache)
        pmap = cclient.partition_map(cache)
        assert pmap is not None and pmap.key_fields  # the cluster told us about the affinity field
        truth = await asyncio.gather(*(primary_by_server(singles, cache, k) for k in keys))
        ours = [routed_node(cclient, cache, k) for k in keys]
        assert ours == truth
        by_region: dict[int, set[str]] = {}
        for key, node in zip(keys, truth, strict=True):
            by_region.setdefault(key.region, set()).add(node)
        assert all(len(nodes) == 1 for nodes in by_region.values())  # colocated by region
    finally:
        await cache.destroy()


async def test_stats_report_nodes_latency_and_maps(cclient: Client, ccache: Cache) -> None:
    await ccache.put_all({k: k for k in range(100)})
    await wait_for_map(cclient, ccache)
    await asyncio.gather(*(ccache.get(k) for k in range(100)))
    stats = cclient.stats()
    detail = stats["detail"]
    assert [n["state"] for n in detail["nodes"]] == ["ready"] * 3
    assert all(n["node_id"] for n in detail["nodes"])
    assert sum(detail["latency_counts"]) >= 100
    assert len(detail["latency_counts"]) == len(detail["latency_buckets"]) + 1
    assert detail["partition_map_refreshes"] >= 1
    assert detail["partition_map_version"][0] > 0
    assert stats["requests"] >= 100
