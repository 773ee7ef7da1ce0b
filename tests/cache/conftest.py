"""The cache's tests: a started client on the stack's Redis; ``cluster``, the three-node Ignite cluster's addresses."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from app.settings import Settings
from drivers.redis import RedisClient
from tests.ignite.cluster.conftest import cluster  # noqa: F401  (a fixture, shared with the Ignite cluster tests)


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[RedisClient]:
    client = RedisClient(settings.redis)
    await client.start()
    yield client
    await client.aclose()
