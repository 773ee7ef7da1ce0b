"""A real three-node Ignite cluster from the local stack, and clients that know all three nodes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.settings import IGNITE_CLIENT_PORT, STACK_HOST, Settings
from drivers.ignite import CacheConfig, CacheMode, Client
from drivers.ignite.cache import Cache
from tests.conftest import run_stack

NODES = [(STACK_HOST, IGNITE_CLIENT_PORT + i) for i in range(3)]


@pytest.fixture(scope="session")
def cluster(settings: Settings) -> list[tuple[str, int]]:
    done = run_stack("up", "ignite", "--ignite-nodes", "3")
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
        while client.partition_map(cache) is None:
            await cache.get("wait-for-map")
            await asyncio.sleep(0.05)


async def wait_for_nodes(client: Client, count: int, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while len(client.ready_nodes()) < count:
            await asyncio.sleep(0.05)


@pytest.fixture
async def cclient(cluster: list[tuple[str, int]]) -> AsyncIterator[Client]:
    async with Client(cluster) as c:
        await wait_for_nodes(c, 3)
        yield c


def node_stats(client: Client) -> dict[str, dict[str, Any]]:
    """Each node's state as the client reports it, by address."""
    return {n["address"]: n for n in client.stats()["detail"]["nodes"]}


def requests_by_node(client: Client) -> dict[str, int]:
    """Requests the client has sent to each node so far (its counters survive reconnects)."""
    return {address: int(n["requests"]) for address, n in node_stats(client).items()}


@pytest.fixture
async def singles(cluster: list[tuple[str, int]]) -> AsyncIterator[dict[str, Client]]:
    """One client per node, connected to that node alone: whatever it sends goes to that node."""
    clients = {f"{host}:{port}": Client([(host, port)]) for host, port in cluster}
    for client in clients.values():
        await client.connect()
    yield clients
    for client in clients.values():
        await client.aclose()


@pytest.fixture
async def ccache(cclient: Client) -> AsyncIterator[Cache]:
    """A partitioned cache with one backup (data survives losing one node)."""
    cache = await cclient.create_cache(CacheConfig(name=f"pa_{uuid.uuid4().hex[:10]}",
                                                   cache_mode=CacheMode.PARTITIONED, backups=1))
    yield cache
    await cache.destroy()
