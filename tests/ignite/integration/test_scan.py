"""Scan queries over a real cache, at several page sizes."""

from __future__ import annotations

import pytest

from drivers.ignite.cache import Cache

ENTRIES = 10_000


@pytest.fixture
async def filled(cache: Cache) -> Cache:
    for start in range(0, ENTRIES, 1000):
        await cache.put_all({i: f"value-{i}" for i in range(start, start + 1000)})
    return cache


# 7: 1,429 pages, each fetched on its own (page_size=1 takes seconds and proves nothing more); 1024: a few.
@pytest.mark.parametrize("page_size", [7, 1024])
async def test_scan_returns_every_entry_exactly_once(filled: Cache, page_size: int) -> None:
    seen = {}
    async with filled.scan(page_size=page_size) as cursor:
        async for key, value in cursor:
            assert key not in seen
            seen[key] = value
    assert seen == {i: f"value-{i}" for i in range(ENTRIES)}


async def test_scan_of_one_partition_returns_a_subset(filled: Cache) -> None:
    per_partition = 0
    for partition in range(4):
        async with filled.scan(partitions=partition) as cursor:
            per_partition += len([kv async for kv in cursor])
    assert 0 < per_partition < ENTRIES


async def test_bad_page_size_is_a_local_error(cache: Cache) -> None:
    from drivers.ignite.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError, match="page_size"):
        async for _ in cache.scan(page_size=0):
            pass
