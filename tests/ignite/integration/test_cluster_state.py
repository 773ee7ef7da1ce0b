"""Cluster state (ops 5000/5001) against real nodes.

Switching state is tried on the secure node: it is a cluster of its own, so
the shared node's caches (and the other tests using them) never notice.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from app.settings import Settings
from drivers.ignite import Client, ClusterState
from drivers.ignite.errors import LocalProtocolError, ServerError
from stack.services import SecureIgniteNode

NODE = SecureIgniteNode.stack()


@pytest.fixture
async def secure_client(settings: Settings) -> AsyncIterator[Client]:
    async with Client([(NODE.host, NODE.port)], username=NODE.USERNAME, password=NODE.PASSWORD,
                      ssl=NODE.ssl_context(), connect_timeout_s=2.0) as c:
        yield c


async def test_the_shared_node_reports_an_active_cluster(client: Client) -> None:
    assert await client.get_cluster_state() is ClusterState.ACTIVE


async def test_a_read_only_cluster_refuses_writes_and_serves_reads_until_active_again(
        secure_client: Client) -> None:
    cache = await secure_client.create_cache(f"state_{uuid.uuid4().hex[:10]}")
    try:
        await cache.put(1, "written while active")
        await secure_client.set_cluster_state(ClusterState.ACTIVE_READ_ONLY)
        try:
            assert await secure_client.get_cluster_state() is ClusterState.ACTIVE_READ_ONLY
            with pytest.raises(ServerError, match=r"(?i)read-only") as caught:
                await cache.put(2, "refused")
            assert caught.value.status == 1
            assert await cache.get(1) == "written while active"
        finally:
            await secure_client.set_cluster_state(ClusterState.ACTIVE)
        assert await secure_client.get_cluster_state() is ClusterState.ACTIVE
        await cache.put(2, "accepted")
        assert await cache.get(2) == "accepted"
    finally:
        await cache.destroy()


async def test_setting_an_unknown_state_is_refused_before_sending(secure_client: Client) -> None:
    with pytest.raises(LocalProtocolError):
        await secure_client.set_cluster_state(7)  # type: ignore[arg-type]
    assert await secure_client.get_cluster_state() is ClusterState.ACTIVE
