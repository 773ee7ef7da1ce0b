"""SQL through the thin client: DDL, parameterised DML, paging, errors, cursors."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncIterator

import pytest

from drivers.ignite import BinaryObject, CacheConfig, Client, QueryEntity, QueryField
from drivers.ignite.errors import ServerError

ROWS = 10_000


@pytest.fixture
async def table(client: Client) -> AsyncIterator[str]:
    name = f"T_{uuid.uuid4().hex[:10].upper()}"
    async with client.sql(f'CREATE TABLE {name} (id INT PRIMARY KEY, name VARCHAR, score DOUBLE) '
                          'WITH "template=partitioned,backups=0"') as cur:
        assert [row async for row in cur] == [[0]]
    yield name
    async with client.sql(f"DROP TABLE IF EXISTS {name}") as cur:
        [row async for row in cur]


async def _insert(client: Client, table: str, ids: range) -> None:
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem, client.sql(f"INSERT INTO {table} (id, name, score) VALUES (?, ?, ?)",
                                   query_args=[i, f"name-{i}", i / 2]) as cur:
            assert [row async for row in cur] == [[1]]

    await asyncio.gather(*(one(i) for i in ids))


async def test_ten_thousand_rows_inserted_with_parameters_come_back_across_pages(
        client: Client, table: str) -> None:
    await _insert(client, table, range(ROWS))
    rows = [row async for row in client.sql(f"SELECT id, name, score FROM {table} ORDER BY id", page_size=333)]
    assert len(rows) == ROWS
    assert rows[0] == [0, "name-0", 0.0]
    assert rows[-1] == [ROWS - 1, f"name-{ROWS - 1}", (ROWS - 1) / 2]
    assert [r[0] for r in rows] == list(range(ROWS))


async def test_field_names_come_first_when_asked(client: Client, table: str) -> None:
    await _insert(client, table, range(3))
    async with client.sql(f"SELECT id, name FROM {table} WHERE id = ?", query_args=[2],
                          include_field_names=True) as cur:
        assert [row async for row in cur] == [["ID", "NAME"], [2, "name-2"]]
        assert cur.field_names == ("ID", "NAME")


async def test_bad_sql_raises_the_servers_message(client: Client) -> None:
    with pytest.raises(ServerError) as err:
        async with client.sql("SELEKT nothing FROM nowhere") as cur:
            [row async for row in cur]
    assert "SELEKT" in str(err.value) or "syntax" in str(err.value).lower()


async def test_missing_table_names_it(client: Client) -> None:
    with pytest.raises(ServerError) as err:
        [row async for row in client.sql("SELECT * FROM NO_SUCH_TABLE_XYZ")]
    assert "NO_SUCH_TABLE_XYZ" in str(err.value)


async def test_cursors_closed_early_never_reach_the_servers_limit(client: Client, table: str) -> None:
    # The node allows 128 open cursors per connection; 300 half-read cursors must not hit it.
    await _insert(client, table, range(50))
    for _ in range(150):
        async with client.sql(f"SELECT id FROM {table}", page_size=2) as cur:
            async for _row in cur:
                break
    gc.disable()        # no context manager: the cursor is closed when it is dropped (by its reference count)
    try:
        for _ in range(150):
            cur = client.sql(f"SELECT id FROM {table}", page_size=2)
            async for _row in cur:
                break
            del cur
    finally:
        gc.enable()
    rows = [row async for row in client.sql(f"SELECT COUNT(*) FROM {table}")]
    assert rows == [[50]]


async def test_a_query_entitys_table_is_found_through_its_cache(client: Client) -> None:
    # Such a table lives in the schema named after its cache, not in PUBLIC.
    cache = await client.create_cache(CacheConfig(
        name=f"entity_{uuid.uuid4().hex[:8]}",
        query_entities=(QueryEntity(key_type_name="java.lang.Long", value_type_name="Pet", table_name="PETS",
                                    fields=(QueryField("name", "java.lang.String"),)),)))
    try:
        await cache.put(1, BinaryObject("Pet", {"name": "Rex"}))
        async with client.sql("SELECT name FROM PETS", cache=cache) as rows:
            assert [row async for row in rows] == [["Rex"]]
        async with client.sql("SELECT name FROM PETS", schema=cache.name) as rows:
            assert [row async for row in rows] == [["Rex"]]
        with pytest.raises(ServerError, match="PETS"):
            async with client.sql("SELECT name FROM PETS") as rows:   # PUBLIC: not there
                [row async for row in rows]
    finally:
        await cache.destroy()
