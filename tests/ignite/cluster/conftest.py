"""A real three-node Ignite cluster from the local stack, and clients that know all three nodes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from app.settings import IGNITE_CLIENT_PORT, STACK_HOST, Settings
from drivers.ignite import CacheConfig, CacheMode, Client
from drivers.ignite.cache import Cache
from tests.conftest import run_app

NODES = [(STACK_HOST, IGNITE_CLIENT_PORT + i) for i in range(3)]


@pytest.fixture(scope="session")
def cluster(settings: Settings) -> list[tuple[str, int]]:
    done = run_app("stack", "up", "ignite", "--ignite-nodes", "3")
    if done.returncode != 0:
        pytest.fail(f"the three-node cluster did not come up:\n{done.stdout}\n{done.stderr}")
    return NODES


async def wait_for_map(client: Client, cache: Cache, timeout: float = 30.0) -> None:
    """Partition maps are fetched in the background; wait until this cache's is in.

    Right after a node joined (an earlier test restarts one), the cluster may call the map
    not applicable until rebalancing ends; the next reply flagged "topology changed" makes the
    client ask again, so keep sending requests while waiting, as an application would.
    """
    async with asyncio.timeout(timeout):
        while client._router.map_for(cache.cache_id) is None:
            await cache.get("wait-for-map")
            await asyncio.sleep(0.05)


async def wait_for_nodes(client: Client, count: int, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while sum(n.ready for n in client._router.nodes) < count:
            await asyncio.sleep(0.05)


@pytest.fixture
async def cclient(cluster: list[tuple[str, int]]) -> AsyncIterator[Client]:
    async with Client(cluster) as c:
        await wait_for_nodes(c, 3)
        yield c


@pytest.fixture
async def ccache(cclient: Client) -> AsyncIterator[Cache]:
    """A partitioned cache with one backup (data survives losing one node)."""
    cache = await cclient.create_cache(CacheConfig(name=f"pa_{uuid.uuid4().hex[:10]}",
                                                   cache_mode=CacheMode.PARTITIONED, backups=1))
    yield cache
    await cache.destroy()
