"""The retry rules, against the real servers: what is sent again after a lost connection, and what never is.

- Redis (``drivers/redis/client.py``): GET, SET, MSET and PING are retried after a lost connection;
  INCR and BLPOP never (a lost reply does not say whether the command ran).
- Ignite (``drivers/ignite/session.py``): a read whose connection was lost is sent again on another
  node; a write, and anything inside a transaction, never.

A TCP proxy in front of each server (``tests.support.proxy``) holds the server's replies back while
a command is in flight and then drops the connection: the command reached the server and ran, its
reply is lost.  That is the case the rules are about: a retried write would run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from app.settings import Settings
from drivers.errors import BackendUnavailable
from drivers.ignite import AtomicityMode, CacheConfig, Client
from drivers.ignite.cache import Cache
from drivers.ignite.errors import IgniteConnectionError
from drivers.redis import RedisClient, RedisConfig
from tests.support.proxy import Proxy


def token() -> str:
    return uuid.uuid4().hex


async def lose_the_reply(proxy: Proxy, call: Awaitable[Any], in_flight: Callable[[], int]) -> list[Any]:
    """Await ``call`` with the server's replies held back, the connection dropped once it is in flight and
    later connections flowing again; ``[result]`` (or ``[exception]``).

    The call runs in this task (a transaction is bound to its task); a helper task drops the connection.
    """
    async def cut_when_sent() -> None:
        for _ in range(200):
            if in_flight() > 0:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)       # the request is through the proxy, at the server
        proxy.cut()
        proxy.hold_replies = False

    proxy.hold_replies = True
    cutter = asyncio.ensure_future(cut_when_sent())
    try:
        async with asyncio.timeout(5):
            return [await call]
    except Exception as exc:
        return [exc]
    finally:
        proxy.hold_replies = False
        assert cutter.done(), "the call ended before its connection was dropped"
        cutter.cancel()


# -- Redis ------------------------------------------------------------------------------------------


@pytest.fixture
async def redis_proxy(settings: Settings) -> AsyncIterator[tuple[Proxy, RedisClient, RedisClient]]:
    """A client through a proxy (default retry policy), and one straight to Redis to look with."""
    async with Proxy((settings.redis.host, settings.redis.port)) as proxy:
        client = RedisClient(RedisConfig(host=proxy.address[0], port=proxy.port))
        direct = RedisClient(RedisConfig(host=settings.redis.host, port=settings.redis.port))
        await client.start()
        await direct.start()
        try:
            yield proxy, client, direct
        finally:
            await client.aclose()
            await direct.aclose()


IDEMPOTENT: dict[str, Callable[[RedisClient, str], Awaitable[Any]]] = {
    "get": lambda c, key: c.get(key),
    "set": lambda c, key: c.set(key, "set again", ex=60),
    "mset": lambda c, key: c.mset({key: "mset again"}),
    "ping": lambda c, key: c.ping(),
}


@pytest.mark.parametrize("op", list(IDEMPOTENT))
async def test_redis_idempotent_commands_are_retried_after_a_lost_connection(
        redis_proxy: tuple[Proxy, RedisClient, RedisClient], op: str) -> None:
    proxy, client, direct = redis_proxy
    key = f"retry:{token()}"
    await direct.set(key, "before", ex=60)
    result = await lose_the_reply(proxy, IDEMPOTENT[op](client, key), lambda: client.pipe.in_flight)
    assert not isinstance(result[0], BaseException), f"{op}: {result[0]!r}"
    assert client.stats()["retries"] == 1, client.stats()
    assert client.pipe.counters.reconnects == 1
    if op == "get":
        assert result[0] == b"before"
    elif op in ("set", "mset"):
        assert await direct.get(key) == f"{op} again".encode()


async def test_redis_incr_is_never_retried_after_a_lost_connection(
        redis_proxy: tuple[Proxy, RedisClient, RedisClient]) -> None:
    proxy, client, direct = redis_proxy
    key = f"retry:{token()}"
    [result] = await lose_the_reply(proxy, client.incr(key), lambda: client.pipe.in_flight)
    assert isinstance(result, BackendUnavailable), repr(result)
    assert client.stats()["retries"] == 0
    assert await direct.get(key) == b"1"     # it ran once: a retry would have made it 2
    await direct.redis.delete(key)


async def test_redis_blpop_is_never_retried_after_a_lost_connection(
        redis_proxy: tuple[Proxy, RedisClient, RedisClient]) -> None:
    proxy, client, direct = redis_proxy
    key = f"retry:{token()}"
    [result] = await lose_the_reply(proxy, client.blpop(key, timeout_s=2), lambda: client.calls.in_flight)
    assert isinstance(result, BackendUnavailable), repr(result)
    assert client.stats()["retries"] == 0
    # A retried BLPOP would be waiting again, and would take this value: it stays in the list.
    await direct.redis.rpush(key, "left alone")
    await asyncio.sleep(0.1)
    assert await direct.redis.lrange(key, 0, -1) == [b"left alone"]
    await direct.redis.delete(key)


# -- Ignite -----------------------------------------------------------------------------------------


@pytest.fixture
async def ignite_proxies(settings: Settings) -> AsyncIterator[tuple[list[Proxy], Client]]:
    """A client of two cluster nodes, each through a proxy of its own (default retry policy)."""
    port = settings.ignite.nodes[0][1]
    async with contextlib.AsyncExitStack() as stack:
        proxies = [await stack.enter_async_context(Proxy(("127.0.0.1", port + i))) for i in range(2)]
        client = Client([p.address for p in proxies])
        await client.connect()
        stack.push_async_callback(client.aclose)
        for _ in range(300):
            if len(client.ready_nodes()) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(client.ready_nodes()) == 2, client.ready_nodes()
        yield proxies, client


async def routed_key(client: Client, cache: Cache, proxy: Proxy) -> str:
    """A key whose requests the client sends to the node behind ``proxy`` (its primary)."""
    await cache.put("warm", 0)
    for _ in range(300):
        if client.partition_map(cache) is not None:
            break
        await asyncio.sleep(0.01)
    address = f"{proxy.address[0]}:{proxy.port}"
    for i in range(10_000):
        key = f"k{i}"
        if client.primary_address(cache, key) == address:
            return key
    raise AssertionError(f"no key lives on {address}")


def retries(client: Client) -> int:
    return int(client.stats()["retries"])


async def test_ignite_a_read_whose_connection_was_lost_is_answered_by_another_node(
        ignite_proxies: tuple[list[Proxy], Client]) -> None:
    proxies, client = ignite_proxies
    cache = await client.get_or_create_cache(f"retry_{token()[:8]}")
    try:
        key = await routed_key(client, cache, proxies[0])
        await cache.put(key, "stored")
        before = retries(client)
        [value] = await lose_the_reply(proxies[0], cache.get(key), lambda: client.calls.in_flight)
        assert value == "stored", repr(value)
        assert retries(client) == before + 1
    finally:
        await cache.destroy()


async def test_ignite_a_write_whose_connection_was_lost_is_never_sent_again(
        ignite_proxies: tuple[list[Proxy], Client]) -> None:
    proxies, client = ignite_proxies
    cache = await client.get_or_create_cache(f"retry_{token()[:8]}")
    try:
        key = await routed_key(client, cache, proxies[0])
        before = retries(client)
        [result] = await lose_the_reply(proxies[0], cache.put(key, "written"), lambda: client.calls.in_flight)
        assert isinstance(result, IgniteConnectionError), repr(result)
        assert retries(client) == before
        assert await cache.get(key) == "written"   # it happened, though its caller was told it failed
    finally:
        await cache.destroy()


async def test_ignite_a_read_inside_a_transaction_is_never_sent_again(
        ignite_proxies: tuple[list[Proxy], Client]) -> None:
    proxies, client = ignite_proxies
    cache = await client.get_or_create_cache(CacheConfig(name=f"retry_{token()[:8]}",
                                                          atomicity_mode=AtomicityMode.TRANSACTIONAL))
    try:
        await cache.put("k", "stored")
        before = retries(client)
        failed: BaseException | None = None
        try:
            async with client.tx_start() as tx:
                proxy = next(p for p in proxies if tx.node == f"127.0.0.1:{p.port}")
                [result] = await lose_the_reply(proxy, cache.get("k"), lambda: client.calls.in_flight)
                failed = result if isinstance(result, BaseException) else None
        except IgniteConnectionError:
            pass    # the transaction's connection is gone: ending it fails too
        assert isinstance(failed, IgniteConnectionError), repr(failed)
        assert retries(client) == before
    finally:
        await cache.destroy()
