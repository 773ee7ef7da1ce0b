"""The MySQL pool's documented rules (docs/service.md, "The MySQL pool"), on real connections to MariaDB.

Idle connections go out last in, first out; a connection idle longer than ``pool_recycle_s`` is
replaced when taken; a released connection goes straight to the first waiter, in the order they
came; a query that was cancelled closes its connection; a waiter cancelled just after it was
handed a connection gives it back.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from asyncmy.connection import Connection

from app.settings import Settings
from drivers.limits import LimitConfig
from drivers.mysql import MySQLClient
from drivers.mysql.pool import Pool


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[Pool]:
    """The pool on its own: at most 3 connections, none opened in advance."""
    c = settings.mysql
    pool = Pool(minsize=0, maxsize=3, recycle_s=3600, host=c.host, port=c.port, user=c.user, password=c.password,
                db=c.database, connect_timeout=c.connect_timeout_s, autocommit=True)
    yield pool
    pool.close()


async def connection_id(conn: Connection) -> int:
    async with conn.cursor() as cur:
        await cur.execute("SELECT CONNECTION_ID()")
        row = await cur.fetchone()
    return int(row[0])


async def test_idle_connections_go_out_last_in_first_out(pool: Pool) -> None:
    a, b, c = [await pool.acquire() for _ in range(3)]
    for conn in (a, b, c):
        pool.release(conn)
    assert pool.idle == 3
    assert await pool.acquire() is c      # the most recently used first
    assert await pool.acquire() is b
    assert await pool.acquire() is a


async def test_a_released_connection_goes_to_the_waiters_in_the_order_they_came(pool: Pool) -> None:
    held = [await pool.acquire() for _ in range(3)]
    served: list[tuple[int, Connection]] = []

    async def waiter(n: int) -> None:
        conn = await pool.acquire()
        served.append((n, conn))
        await asyncio.sleep(0)
        pool.release(conn)

    waiters = []
    for n in range(6):
        waiters.append(asyncio.ensure_future(waiter(n)))
        await asyncio.sleep(0)            # each is queued before the next one comes
    assert pool.waiting == 6
    pool.release(held[0])
    await asyncio.gather(*waiters)
    assert [n for n, _ in served] == list(range(6))
    assert {id(conn) for _, conn in served} == {id(held[0])}   # handed over, never a new connection
    assert pool.size == 3
    for conn in held[1:]:
        pool.release(conn)


async def test_a_waiter_cancelled_just_after_it_was_handed_a_connection_gives_it_back(pool: Pool) -> None:
    held = [await pool.acquire() for _ in range(3)]
    waiter = asyncio.ensure_future(pool.acquire())
    await asyncio.sleep(0)
    assert pool.waiting == 1
    pool.release(held[0])                 # handed to the waiter ...
    waiter.cancel()                       # ... which is cancelled before it could take it
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (pool.idle, pool.in_use, pool.size) == (1, 2, 3)
    assert await pool.acquire(0.05) is held[0]   # at once: not lost, not a new connection
    for conn in held:
        pool.release(conn)


@pytest.fixture
async def one(settings: Settings) -> AsyncIterator[MySQLClient]:
    """A client with one pooled connection, recycled after 0.3 s idle, without the adaptive limit."""
    client = MySQLClient(dataclasses.replace(settings.mysql, pool_min=1, pool_max=1, pool_recycle_s=0.3,
                                             limit=LimitConfig(enabled=False)))
    await client.start()
    yield client
    await client.aclose()


async def current_id(client: MySQLClient) -> int:
    row = await client.fetchone("SELECT CONNECTION_ID()")
    assert row is not None
    return int(row[0])


async def test_a_connection_idle_longer_than_pool_recycle_s_is_replaced_when_taken(one: MySQLClient) -> None:
    first = await current_id(one)
    assert await current_id(one) == first          # used again at once: kept
    await asyncio.sleep(0.5)                       # idle longer than 0.3 s
    assert await current_id(one) != first
    assert one.stats()["detail"]["size"] == 1


async def test_a_cancelled_query_closes_its_connection(one: MySQLClient) -> None:
    first = await current_id(one)
    query = asyncio.ensure_future(one.fetchone("SELECT SLEEP(2), 'the cancelled query'"))
    await asyncio.sleep(0.2)
    assert one.stats()["pool_in_use"] == 1
    query.cancel()
    with pytest.raises(asyncio.CancelledError):
        await query
    assert (one.stats()["pool_in_use"], one.stats()["detail"]["size"]) == (0, 0)   # closed, not kept
    assert await one.fetchone("SELECT 'the next query'") == ("the next query",)
    assert await current_id(one) != first
