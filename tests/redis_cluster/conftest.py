"""The Redis Cluster's tests: the stack's six nodes (``redis-cluster-0..5``) and a client on them."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.settings import REDIS_CLUSTER_PORTS, STACK_HOST, Settings
from drivers.redis import PipelinedRedis, RedisClusterClient, RedisClusterConfig, RedisConfig

NODES = tuple((STACK_HOST, port) for port in REDIS_CLUSTER_PORTS)


@pytest.fixture
def cluster_config(settings: Settings) -> RedisClusterConfig:
    """Every node of the stack's cluster as a seed (one of them may be down for a while)."""
    return RedisClusterConfig(nodes=NODES)


@pytest.fixture
async def cluster(cluster_config: RedisClusterConfig) -> AsyncIterator[RedisClusterClient]:
    client = RedisClusterClient(cluster_config)
    await client.start()
    yield client
    await client.aclose()


def with_settings(config: RedisClusterConfig, **changes: Any) -> RedisClusterConfig:
    return dataclasses.replace(config, **changes)


async def on_node(port: int, *args: str | bytes | int) -> Any:
    """One command straight to one node (no routing), on a connection of its own."""
    pipe = PipelinedRedis(RedisConfig(host=STACK_HOST, port=port, connect_timeout_s=1.0, socket_timeout_s=5.0))
    try:
        return await pipe.execute(*args)
    finally:
        await pipe.aclose()
