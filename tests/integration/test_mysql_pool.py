"""The MySQL pool (drivers.mysql.pool) and the client on it, against the real MariaDB."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest

from app.settings import Settings
from drivers.errors import BackendError, BackendTimeout
from drivers.limits import LimitConfig
from drivers.mysql import MySQLClient


@pytest.fixture
async def small(settings: Settings) -> AsyncIterator[MySQLClient]:
    """A client whose pool holds at most 4 connections, and whose callers queue for them up to 5 s.

    (The default ``pool_wait_timeout_s`` turns a caller away after 0.2 s: these tests are about queueing.
    The adaptive limit is off: these tests are about the pool alone.)
    """
    client = MySQLClient(dataclasses.replace(settings.mysql, pool_min=1, pool_max=4, query_timeout_s=5,
                                             pool_wait_timeout_s=5, limit=LimitConfig(enabled=False)))
    await client.start()
    yield client
    await client.aclose()


async def test_never_more_connections_than_the_maximum_and_every_query_answers(small: MySQLClient) -> None:
    peak = 0

    async def one(i: int) -> int:
        nonlocal peak
        row = await small.fetchone("SELECT %s + SLEEP(0.05)", (i,))
        peak = max(peak, small.stats()["detail"]["size"])
        return int(row[0]) if row else -1

    began = asyncio.get_running_loop().time()
    assert await asyncio.gather(*(one(i) for i in range(40))) == list(range(40))
    elapsed = asyncio.get_running_loop().time() - began
    assert peak <= 4
    assert elapsed >= 40 / 4 * 0.05 * 0.9   # 4 at a time
    stats = small.stats()
    assert (stats["pool_in_use"], stats["detail"]["waiting"]) == (0, 0)
    assert stats["pool_idle"] == stats["detail"]["size"] <= 4


async def test_waiters_that_time_out_leave_nothing_behind(small: MySQLClient) -> None:
    hold = [asyncio.create_task(small.fetchone("SELECT SLEEP(0.5)")) for _ in range(4)]
    await asyncio.sleep(0.1)
    results = await asyncio.gather(*(small.fetchone("SELECT 1", timeout_s=0.1) for _ in range(20)),
                                   return_exceptions=True)
    assert all(isinstance(r, BackendTimeout) for r in results)
    await asyncio.gather(*hold)
    assert await small.fetchone("SELECT 2") == (2,)
    stats = small.stats()
    assert (stats["pool_in_use"], stats["detail"]["waiting"]) == (0, 0)
    assert stats["detail"]["size"] <= 4


async def test_a_connection_killed_by_the_server_is_replaced(small: MySQLClient, settings: Settings) -> None:
    row = await small.fetchone("SELECT CONNECTION_ID()")
    assert row is not None
    victim = int(row[0])          # now the pool's one idle connection, the next to go out
    async with MySQLClient(dataclasses.replace(settings.mysql, pool_min=1, pool_max=1)) as other:
        await other.execute("KILL CONNECTION %s", (victim,))
    await asyncio.sleep(0.1)
    row = await small.fetchone("SELECT CONNECTION_ID()")
    assert row is not None and int(row[0]) != victim
    assert small.stats()["detail"]["size"] <= 4


async def test_a_failed_query_closes_its_connection_and_the_pool_goes_on(small: MySQLClient,
                                                                        settings: Settings) -> None:
    row = await small.fetchone("SELECT CONNECTION_ID()")
    assert row is not None
    failed = int(row[0])          # the pool's one idle connection: the failing query gets it
    with pytest.raises(BackendError):
        await small.fetchone("SELECT no_such_column FROM no_such_table")
    assert small.stats()["pool_in_use"] == 0
    row = await small.fetchone("SELECT CONNECTION_ID()")
    assert row is not None and int(row[0]) != failed, "the failed query's connection was handed out again"
    async with MySQLClient(dataclasses.replace(settings.mysql, pool_min=1, pool_max=1)) as other:
        for _ in range(40):       # the server notices the closed socket a moment later
            left = await other.fetchone("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s",
                                        (failed,))
            if left == (0,):
                break
            await asyncio.sleep(0.05)
    assert left == (0,), "the failed query's connection is still open on the server"
    assert await small.fetchone("SELECT 3") == (3,)


async def test_a_connection_left_in_a_transaction_is_not_reused(small: MySQLClient) -> None:
    await small.execute("BEGIN")
    row = await small.fetchone("SELECT @@in_transaction")
    assert row == (0,)   # a fresh connection: the one with the open transaction was closed
