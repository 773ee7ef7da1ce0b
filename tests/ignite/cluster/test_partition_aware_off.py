"""``partition_aware=False`` (docs/ignite.md): no partition map is asked for, and requests for one key are
spread over the nodes (round robin) instead of all going to the key's primary node."""

from __future__ import annotations

import asyncio
import uuid

from drivers.ignite import Client
from tests.ignite.cluster.conftest import requests_by_node, wait_for_map, wait_for_nodes


async def test_with_partition_awareness_off_one_keys_requests_go_round_the_nodes(
        cluster: list[tuple[str, int]], cclient: Client) -> None:
    cache_name = f"pa_off_{uuid.uuid4().hex[:8]}"
    aware = await cclient.get_or_create_cache(cache_name)
    try:
        await aware.put(42, "x")
        await wait_for_map(cclient, aware)
        primary = cclient.primary_address(aware, 42)
        async with Client(cluster, partition_aware=False) as plain:
            await wait_for_nodes(plain, 3)
            cache = await plain.get_or_create_cache(cache_name)
            before = requests_by_node(plain)
            for _ in range(60):
                assert await cache.get(42) == "x"
            await asyncio.sleep(0.3)       # a map would have been asked for in the background by now
            after = requests_by_node(plain)
            sent = {address: after[address] - before[address] for address in after}
            assert plain.partition_map(cache) is None
            assert plain.primary_address(cache, 42) is None
            assert plain.stats()["detail"]["partition_map_refreshes"] == 0
        assert all(count >= 15 for count in sent.values()), (primary, sent)   # not 60 on the primary
    finally:
        await aware.destroy()
