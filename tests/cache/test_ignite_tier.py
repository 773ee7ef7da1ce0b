"""The Ignite remote tier against the stack's three-node cluster: values, batches, TTLs, leases, prefixes.

Each test has a cache of its own (destroyed after it), so sizes and scans see only its entries.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from app.settings import STACK_HOST
from drivers.cache.remote.base import RemoteTier
from drivers.cache.remote.ignite import REMOVE_BATCH, SCAN_PAGE, IgniteTier
from drivers.errors import BackendUnavailable, InterfaceError
from drivers.ignite import CacheConfig, Client, PeekMode
from tests.conftest import free_port

SHORT_MS = 300
LONG_MS = 60_000


@pytest.fixture
async def client(cluster: list[tuple[str, int]]) -> AsyncIterator[Client]:
    async with Client(cluster) as c:
        yield c


@pytest.fixture
async def tier(client: Client) -> AsyncIterator[IgniteTier]:
    t = IgniteTier(client, f"tier_{uuid.uuid4().hex[:12]}")
    await t.start()
    yield t
    await t.cache.destroy()
    await t.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], within_s: float = 5.0) -> float:
    """Poll ``check`` until it is true; the seconds it took (fails the test after ``within_s``)."""
    began = time.monotonic()
    while not await check():
        assert time.monotonic() - began < within_s, f"still false after {within_s} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - began


# -- shape and lifecycle -------------------------------------------------------------------------

async def test_the_tier_is_a_remote_tier_named_ignite(tier: IgniteTier) -> None:
    assert isinstance(tier, RemoteTier)
    assert tier.name == "ignite"


async def test_start_creates_the_cache_on_the_cluster(client: Client) -> None:
    name = f"tier_{uuid.uuid4().hex[:12]}"
    t = IgniteTier(client, name)
    assert name not in await client.get_cache_names()
    await t.start()
    try:
        assert name in await client.get_cache_names()
    finally:
        await t.cache.destroy()


async def test_an_owned_client_is_started_and_closed_by_the_tier(cluster: list[tuple[str, int]]) -> None:
    t = IgniteTier(Client(cluster), f"tier_{uuid.uuid4().hex[:12]}", own=True)
    await t.start()
    await t.set_many([("k", b"v", LONG_MS)])
    assert await t.get("k") == b"v"
    await t.cache.destroy()
    await t.aclose()
    await t.aclose()
    assert t.client.ready_nodes() == []


# -- values and batches --------------------------------------------------------------------------

async def test_bytes_come_back_as_the_same_bytes(tier: IgniteTier) -> None:
    values = {"binary": bytes(range(256)), "empty": b"", "text": "é€".encode()}
    await tier.set_many([(k, v, LONG_MS) for k, v in values.items()])
    for key, value in values.items():
        got = await tier.get(key)
        assert type(got) is bytes
        assert got == value


async def test_an_absent_key_reads_as_none(tier: IgniteTier) -> None:
    assert await tier.get("absent") is None


async def test_get_many_keeps_the_order_of_the_keys_with_none_for_absent_ones(tier: IgniteTier) -> None:
    await tier.set_many([(f"k{i}", f"v{i}".encode(), LONG_MS) for i in range(30)])   # spread over 3 nodes
    keys = [f"k{i}" for i in reversed(range(30))]
    keys[3:3] = ["gone-1"]
    keys.append("gone-2")
    expected = [None if k.startswith("gone") else f"v{k[1:]}".encode() for k in keys]
    assert await tier.get_many(keys) == expected
    assert await tier.get_many([]) == []


async def test_set_many_keeps_the_last_value_of_a_key_given_twice(tier: IgniteTier) -> None:
    await tier.set_many([("k", b"first", LONG_MS), ("k", b"second", SHORT_MS * 100)])
    assert await tier.get("k") == b"second"


async def test_delete_many_removes_the_keys_and_ignores_absent_ones(tier: IgniteTier) -> None:
    await tier.set_many([(f"k{i}", b"v", LONG_MS) for i in range(10)])
    await tier.delete_many(["k1", "k2", "absent"])
    assert await tier.get_many(["k0", "k1", "k2", "k3"]) == [b"v", None, None, b"v"]


# -- TTLs ----------------------------------------------------------------------------------------

async def test_an_entry_disappears_after_its_ttl(tier: IgniteTier) -> None:
    began = time.monotonic()
    await tier.set_many([("short", b"v", SHORT_MS), ("long", b"v", LONG_MS)])
    assert await tier.get("short") == b"v"

    async def gone() -> bool:
        return await tier.get("short") is None

    await eventually(gone)
    assert time.monotonic() - began >= SHORT_MS / 1000 - 0.05
    assert await tier.get("long") == b"v"


async def test_expired_entries_are_removed_by_the_nodes_without_being_read(tier: IgniteTier) -> None:
    assert (await tier.cache.settings()).eager_ttl   # the default of a cache made by name
    # 2 s, not SHORT_MS: the count must see all 50 first (with 300 ms, a machine running at a third
    # of its speed counted 4: the nodes had removed the rest already)
    await tier.set_many([(f"k{i}", b"v", 2000) for i in range(50)])
    assert await tier.cache.get_size(PeekMode.ALL) == 50

    async def emptied() -> bool:   # counting reads no entry, so nothing is expired on access
        return await tier.cache.get_size(PeekMode.ALL) == 0

    await eventually(emptied, within_s=10.0)


async def test_a_read_never_returns_an_expired_entry_even_before_it_is_removed(client: Client) -> None:
    name = f"tier_{uuid.uuid4().hex[:12]}"
    await client.create_cache(CacheConfig(name=name, eager_ttl=False))   # only reads remove expired entries
    t = IgniteTier(client, name)
    await t.start()
    try:
        await t.set_many([("k", b"v", SHORT_MS), ("other", b"v", SHORT_MS)])
        await asyncio.sleep(SHORT_MS / 1000 + 0.2)
        assert await t.cache.get_size(PeekMode.ALL) == 2     # expired, still held
        assert await t.get("k") is None
        assert await t.get_many(["other"]) == [None]
    finally:
        await t.cache.destroy()


async def test_each_ttl_of_a_batch_applies_to_its_own_keys(tier: IgniteTier) -> None:
    await tier.set_many([("a-short", b"v", SHORT_MS), ("a-long", b"v", LONG_MS),
                         ("b-short", b"v", SHORT_MS), ("b-long", b"v", LONG_MS)])

    async def short_gone() -> bool:
        return await tier.get_many(["a-short", "b-short"]) == [None, None]

    await eventually(short_gone)
    assert await tier.get_many(["a-long", "b-long"]) == [b"v", b"v"]


async def test_writing_a_key_again_gives_it_the_new_ttl(tier: IgniteTier) -> None:
    await tier.set_many([("k", b"old", LONG_MS)])
    await tier.set_many([("k", b"new", SHORT_MS)])

    async def gone() -> bool:
        return await tier.get("k") is None

    await eventually(gone)


async def test_a_ttl_below_one_millisecond_is_refused_before_sending(tier: IgniteTier) -> None:
    with pytest.raises(InterfaceError, match="TTL") as caught:
        await tier.set_many([("k", b"v", 0)])
    assert caught.value.backend == "ignite"
    assert await tier.get("k") is None


# -- leases --------------------------------------------------------------------------------------

async def test_a_second_acquire_fails_while_the_lease_is_held(tier: IgniteTier) -> None:
    assert await tier.acquire("lock", b"holder", LONG_MS)
    assert not await tier.acquire("lock", b"other", LONG_MS)
    assert await tier.get("lock") == b"holder"


async def test_release_with_a_wrong_token_leaves_the_lease(tier: IgniteTier) -> None:
    assert await tier.acquire("lock", b"holder", LONG_MS)
    await tier.release("lock", b"other")
    assert await tier.get("lock") == b"holder"
    assert not await tier.acquire("lock", b"other", LONG_MS)


async def test_release_with_the_holders_token_frees_the_lease(tier: IgniteTier) -> None:
    assert await tier.acquire("lock", b"holder", LONG_MS)
    await tier.release("lock", b"holder")
    assert await tier.get("lock") is None
    assert await tier.acquire("lock", b"other", LONG_MS)


async def test_a_lease_expires_by_itself(tier: IgniteTier) -> None:
    assert await tier.acquire("lock", b"crashed", SHORT_MS)
    assert not await tier.acquire("lock", b"next", LONG_MS)

    async def taken() -> bool:
        return await tier.acquire("lock", b"next", LONG_MS)

    await eventually(taken)
    assert await tier.get("lock") == b"next"


# -- delete_prefix -------------------------------------------------------------------------------

async def test_delete_prefix_removes_exactly_the_keys_with_the_prefix(tier: IgniteTier) -> None:
    prefix = "ns:*[1]:"                        # glob characters mean nothing here
    matching = [f"{prefix}{i}" for i in range(REMOVE_BATCH + SCAN_PAGE // 2)]   # several pages and batches
    others = ["ns:x[1]:0", "ns:*[1]", "other", f"x{prefix}0"]
    await tier.set_many([(k, b"v", LONG_MS) for k in matching + others])

    assert await tier.delete_prefix(prefix) == len(matching)
    assert await tier.get_many(matching[:5] + matching[-5:]) == [None] * 10
    assert await tier.get_many(others) == [b"v"] * len(others)
    assert await tier.cache.get_size(PeekMode.ALL) == len(others)
    assert await tier.delete_prefix(prefix) == 0


# -- errors --------------------------------------------------------------------------------------

async def test_an_unreachable_cluster_is_backend_unavailable_from_ignite() -> None:
    t = IgniteTier(Client([(STACK_HOST, free_port())], connect_timeout_s=1), own=True)
    with pytest.raises(BackendUnavailable) as caught:
        await t.start()
    assert caught.value.backend == "ignite"
    await t.aclose()
