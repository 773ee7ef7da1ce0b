"""Driver settings no other test sets, against the real servers: ``redis.username`` and ``redis.password``
(a Redis ACL user, on the pipelined connection and on the pool), and ``ignite.query_wait_timeout_s``
(how long a query inside a budget waits for a slot of the Ignite limit before ``BackendBusy``)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aredis

from app.settings import Settings
from drivers import budget
from drivers.errors import BackendBusy, DriverError
from drivers.ignite import Client
from drivers.limits import LimitConfig
from drivers.redis import RedisClient, RedisConfig


@pytest.fixture
async def acl_user(settings: Settings) -> AsyncIterator[tuple[str, str]]:
    """A Redis user of its own (removed afterwards), allowed everything."""
    name, password = f"claims-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    admin = aredis.Redis(host=settings.redis.host, port=settings.redis.port)
    await admin.execute_command("ACL", "SETUSER", name, "on", f">{password}", "~*", "&*", "+@all")
    try:
        yield name, password
    finally:
        await admin.execute_command("ACL", "DELUSER", name)
        await admin.aclose()


async def test_redis_username_and_password_authenticate_both_connections(
        settings: Settings, acl_user: tuple[str, str]) -> None:
    name, password = acl_user
    key = f"claims-acl-{uuid.uuid4().hex}"
    async with RedisClient(RedisConfig(host=settings.redis.host, port=settings.redis.port,
                                       username=name, password=password)) as client:
        await client.set(key, "as the acl user", ex=60)                   # the pipelined connection
        assert await client.get(key) == b"as the acl user"
        assert await client.pipe.execute("ACL", "WHOAMI") == name.encode()
        assert await client.redis.execute_command("ACL", "WHOAMI") == name.encode()   # the pool
        await client.redis.rpush(key + ":list", "x")
        assert await client.blpop(key + ":list", timeout_s=0.5) == b"x"
        await client.redis.delete(key)
    wrong = RedisClient(RedisConfig(host=settings.redis.host, port=settings.redis.port,
                                    username=name, password="not it"))
    with pytest.raises(DriverError, match=r"(?i)WRONGPASS|invalid"):
        await wrong.start()
    await wrong.aclose()


async def test_an_ignite_query_waits_query_wait_timeout_s_for_a_slot_inside_a_budget(settings: Settings) -> None:
    wait_s = 0.4
    one_slot = LimitConfig(initial=1, min=1, max=1)
    # request_timeout_s 60, not the default 10: the query that holds the slot takes about 2 s on the
    # node, and over 10 s on a machine running at a third of its speed; the wait is what is tested.
    async with Client([settings.ignite.nodes[0]], limit=one_slot, query_wait_timeout_s=wait_s,
                      request_timeout_s=60.0) as client:
        async def sum_to(n: int) -> object:
            async with client.sql("SELECT SUM(x) FROM SYSTEM_RANGE(1, ?)", query_args=[n]) as rows:
                found = [row async for row in rows]
            return found[0][0]

        holder = asyncio.ensure_future(sum_to(10_000_000))             # about 2 s on the node: holds the slot
        await asyncio.sleep(0.2)
        began = time.monotonic()
        with pytest.raises(BackendBusy), budget.within(5.0):
            await sum_to(10)
        took = time.monotonic() - began
        # uvloop keeps its timers in whole milliseconds: a 0.4 s wait can read as 0.39996 s
        assert wait_s - 0.002 <= took < wait_s + 0.5, took               # not the default 0.2 s, not the budget
        assert await holder == 10_000_000 * 10_000_001 // 2
