"""Fixtures for the Ignite client against the real node of the local stack."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from app.settings import Settings
from drivers.ignite import Client
from drivers.ignite.cache import Cache


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with Client(settings.ignite.nodes) as c:
        yield c


@pytest.fixture
async def cache(client: Client) -> AsyncIterator[Cache]:
    """A fresh cache, destroyed after the test."""
    c = await client.create_cache(f"t_{uuid.uuid4().hex[:12]}")
    yield c
    await c.destroy()
