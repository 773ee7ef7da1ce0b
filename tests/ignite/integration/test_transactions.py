"""Transactions against the real node: commit, rollback, locking, conflicts and misuse."""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from app.settings import Settings
from drivers.ignite import AtomicityMode, CacheConfig, Client
from drivers.ignite.cache import Cache
from drivers.ignite.errors import (
    LocalProtocolError,
    TransactionClosed,
    TransactionConflict,
    TransactionNested,
    TransactionNotOwned,
    TxLimitExceeded,
)
from drivers.ignite.tx import TransactionConcurrency, TransactionIsolation

PESSIMISTIC, OPTIMISTIC = TransactionConcurrency.PESSIMISTIC, TransactionConcurrency.OPTIMISTIC
REPEATABLE_READ, SERIALIZABLE = TransactionIsolation.REPEATABLE_READ, TransactionIsolation.SERIALIZABLE


class Boom(Exception):
    pass


@pytest.fixture
async def tx_cache(client: Client) -> AsyncIterator[Cache]:
    """A fresh TRANSACTIONAL cache, destroyed after the test."""
    cache = await client.create_cache(CacheConfig(name=f"tx_{uuid.uuid4().hex[:12]}",
                                                  atomicity_mode=AtomicityMode.TRANSACTIONAL))
    yield cache
    await cache.destroy()


@pytest.fixture
async def other(settings: Settings) -> AsyncIterator[Client]:
    """A second, independent client (another process, as far as the node can tell)."""
    async with Client(settings.ignite.nodes) as c:
        yield c


async def test_commit_makes_the_writes_visible_to_other_clients(client: Client, other: Client,
                                                               tx_cache: Cache) -> None:
    theirs = other.cache(tx_cache.name)
    async with client.tx_start(PESSIMISTIC, REPEATABLE_READ, timeout_s=10, label="visibility") as tx:
        await tx_cache.put_all({1: "one", 2: "two"})
        assert await tx_cache.get(1) == "one"  # the transaction sees its own writes
        assert await theirs.get_all([1, 2]) == {}  # nobody else does yet
        assert tx.tx_id is not None and not tx.closed
    assert tx.closed
    assert await theirs.get_all([1, 2]) == {1: "one", 2: "two"}


async def test_explicit_rollback_discards_the_writes(client: Client, tx_cache: Cache) -> None:
    await tx_cache.put("k", "before")
    async with client.tx_start() as tx:
        await tx_cache.put("k", "inside")
        await tx_cache.put("new", 1)
        await tx.rollback()
    assert await tx_cache.get("k") == "before"
    assert await tx_cache.get("new") is None


async def test_an_exception_in_the_block_rolls_back_and_propagates(client: Client, tx_cache: Cache) -> None:
    with pytest.raises(Boom):
        async with client.tx_start():
            await tx_cache.put("k", "inside")
            raise Boom
    assert await tx_cache.get("k") is None


async def test_explicit_commit_then_the_block_exit_does_nothing_more(client: Client, tx_cache: Cache) -> None:
    async with client.tx_start() as tx:
        await tx_cache.put("k", "committed")
        await tx.commit()
        with pytest.raises(TransactionClosed):
            await tx_cache.put("k", "after commit")  # not silently outside the transaction
        with pytest.raises(TransactionClosed):
            await tx.rollback()
    assert await tx_cache.get("k") == "committed"


async def test_cancellation_inside_the_block_rolls_back(client: Client, other: Client, tx_cache: Cache) -> None:
    inside = asyncio.Event()

    async def work() -> None:
        async with client.tx_start(PESSIMISTIC, REPEATABLE_READ):
            await tx_cache.put("k", "never committed")
            inside.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(work())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await tx_cache.get("k") is None
    # ... and the key's lock was released: another pessimistic writer gets it at once.
    theirs = other.cache(tx_cache.name)
    async with asyncio.timeout(2), other.tx_start(PESSIMISTIC, REPEATABLE_READ):
        await theirs.put("k", "other")
    assert await tx_cache.get("k") == "other"


async def test_pessimistic_repeatable_read_makes_a_conflicting_writer_wait_for_the_commit(
        client: Client, other: Client, tx_cache: Cache) -> None:
    await tx_cache.put("k", "initial")
    theirs = other.cache(tx_cache.name)
    events: list[tuple[str, float]] = []
    reader_holds_lock = asyncio.Event()

    async def writer() -> None:
        await reader_holds_lock.wait()
        async with other.tx_start(PESSIMISTIC, REPEATABLE_READ):
            events.append(("writer puts", time.monotonic()))
            await theirs.put("k", "writer")
            events.append(("writer's put returns", time.monotonic()))

    task = asyncio.create_task(writer())
    async with client.tx_start(PESSIMISTIC, REPEATABLE_READ):
        assert await tx_cache.get("k") == "initial"  # the read takes the key's lock
        reader_holds_lock.set()
        await asyncio.sleep(0.6)
        assert not task.done()
        assert await tx_cache.get("k") == "initial"  # repeatable: still what it read
        events.append(("reader commits", time.monotonic()))
    await asyncio.wait_for(task, 5)
    order = [name for name, _ in events]
    assert order == ["writer puts", "reader commits", "writer's put returns"], events
    at = dict(events)
    assert at["writer's put returns"] - at["writer puts"] >= 0.4  # it waited for the lock
    assert at["writer's put returns"] - at["reader commits"] < 2.0  # and got it on the commit
    assert await tx_cache.get("k") == "writer"


async def test_optimistic_serializable_commit_fails_on_a_conflicting_write(
        client: Client, other: Client, tx_cache: Cache) -> None:
    await tx_cache.put("counter", 0)
    with pytest.raises(TransactionConflict, match="conflict") as caught:
        async with client.tx_start(OPTIMISTIC, SERIALIZABLE):
            seen = await tx_cache.get("counter")
            await other.cache(tx_cache.name).put("counter", 100)  # lands between our read and commit
            await tx_cache.put("counter", seen + 1)
    assert caught.value.status == 1
    assert await tx_cache.get("counter") == 100


async def test_a_second_transaction_in_the_same_task_is_refused(client: Client, tx_cache: Cache) -> None:
    async with client.tx_start():
        with pytest.raises(TransactionNested):
            async with client.tx_start():
                pass
        await tx_cache.put("k", "outer still works")
    assert await tx_cache.get("k") == "outer still works"


async def test_a_task_spawned_inside_cannot_use_the_transaction(client: Client, tx_cache: Cache) -> None:
    async with client.tx_start() as tx:
        await tx_cache.put("k", "outer")
        child = asyncio.create_task(tx_cache.put("k", "child"))  # inherits the ContextVar
        with pytest.raises(TransactionNotOwned, match="inherited"):
            await child
        with pytest.raises(TransactionNotOwned):
            await asyncio.create_task(tx.commit())
        # A task given a fresh context is simply outside the transaction.
        fresh = asyncio.create_task(tx_cache.get("elsewhere"), context=contextvars.Context())
        assert await fresh is None
    assert await tx_cache.get("k") == "outer"


async def test_another_client_in_the_same_task_is_not_in_the_transaction(
        client: Client, other: Client, tx_cache: Cache) -> None:
    async with client.tx_start() as tx:
        await tx_cache.put("k", "uncommitted")
        assert await other.cache(tx_cache.name).get("k") is None
        await tx.rollback()


async def test_the_nodes_per_connection_limit_is_reported_as_tx_limit_exceeded(
        settings: Settings, tx_cache: Cache) -> None:
    release = asyncio.Event()
    entered = 0
    async with Client(settings.ignite.nodes[:1]) as one:
        async def hold() -> None:
            nonlocal entered
            async with one.tx_start(timeout_s=10):
                entered += 1
                await release.wait()

        tasks = [asyncio.create_task(hold()) for _ in range(103)]
        async with asyncio.timeout(5):  # every start answered: in its block, or refused
            while entered + sum(t.done() for t in tasks) < len(tasks):
                await asyncio.sleep(0.01)
        release.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    refused = [r for r in results if isinstance(r, BaseException)]
    assert refused and all(isinstance(r, TxLimitExceeded) for r in refused), refused[:3]
    assert len(refused) == 3  # the node allows 100 active transactions per connection
    assert refused[0].status == 1020
    assert "per connection" in str(refused[0])


async def test_transactions_need_protocol_1_5(settings: Settings) -> None:
    async with Client(settings.ignite.nodes, protocol_version=(1, 4, 0)) as old:
        with pytest.raises(LocalProtocolError, match=r"1\.5\.0"):
            async with old.tx_start():
                pass


async def test_queries_inside_a_transaction_run_on_its_connection(settings: Settings) -> None:
    # With several nodes a query could land on any connection; inside a transaction it must
    # use the transaction's (the node knows the tx id only there) and must not fail.
    nodes = [*settings.ignite.nodes, ("127.0.0.1", 10801), ("127.0.0.1", 10802)]
    async with Client(nodes) as multi:
        cache = await multi.get_or_create_cache(
            CacheConfig(name="tx_queries", atomicity_mode=AtomicityMode.TRANSACTIONAL))
        await cache.put_all({i: i for i in range(10)})
        try:
            async with multi.tx_start() as tx:
                await cache.put(100, 100)
                cursor = cache.scan()
                entries = [kv async for kv in cursor]
                assert tx.node is not None and cursor.node == tx.node
                assert len(entries) >= 10
                assert [r async for r in multi.sql("SELECT 40 + 2")] == [[42]]
            assert await cache.get(100) == 100
        finally:
            await cache.destroy()
