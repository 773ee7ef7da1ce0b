"""Cache management and the key-value API against the real node."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

import pytest

from drivers.ignite import (
    AtomicityMode,
    CacheConfig,
    CacheMode,
    Client,
    PeekMode,
    QueryEntity,
    QueryField,
    hints,
)
from drivers.ignite.cache import Cache
from drivers.ignite.errors import CacheDoesNotExist, CacheExists, LocalProtocolError


@dataclasses.dataclass
class Product:
    name: str
    price: float
    qty: Annotated[int, hints.Int]


@pytest.fixture
async def products(client: Client) -> AsyncIterator[Cache]:
    name = f"products_{uuid.uuid4().hex[:8]}"
    table = name.upper()
    cfg = CacheConfig(
        name=name, cache_mode=CacheMode.PARTITIONED, backups=1, atomicity_mode=AtomicityMode.TRANSACTIONAL,
        sql_schema="PUBLIC",
        query_entities=(QueryEntity(
            key_type_name="java.lang.Long", value_type_name="Product", table_name=table,
            fields=(QueryField("name", "java.lang.String"), QueryField("price", "java.lang.Double"),
                    QueryField("qty", "java.lang.Integer")),
        ),),
    )
    cache = await client.create_cache(cfg)
    yield cache
    await cache.destroy()


async def test_configured_cache_reports_its_settings(products: Cache) -> None:
    cfg = await products.settings()
    assert cfg.name == products.name
    assert cfg.cache_mode == CacheMode.PARTITIONED
    assert cfg.backups == 1
    assert cfg.atomicity_mode == AtomicityMode.TRANSACTIONAL
    assert cfg.query_entities is not None
    entity = cfg.query_entities[0]
    assert entity.value_type_name == "Product"
    assert {f.name.lower() for f in entity.fields} == {"name", "price", "qty"}


async def test_complex_object_written_through_the_cache_is_visible_to_sql(client: Client, products: Cache) -> None:
    await products.put(1, Product("apple", 1.25, 10))
    await products.put(2, Product("pear", 2.5, 3))
    rows = [r async for r in client.sql(f"SELECT name, price, qty FROM {products.name.upper()} ORDER BY _key")]
    assert rows == [["apple", 1.25, 10], ["pear", 2.5, 3]]
    async for _ in client.sql(f"UPDATE {products.name.upper()} SET qty = qty + 1 WHERE name = ?",
                              query_args=["pear"]):
        pass
    assert await products.get(2) == Product("pear", 2.5, 4)


async def test_cache_names_and_lifecycle(client: Client) -> None:
    name = f"life_{uuid.uuid4().hex[:8]}"
    cache = await client.create_cache(name)
    assert name in await client.get_cache_names()
    with pytest.raises(CacheExists):
        await client.create_cache(name)
    again = await client.get_or_create_cache(name)
    await again.put("k", 1)
    assert await (await client.get_cache(name)).get("k") == 1
    await cache.destroy()
    assert name not in await client.get_cache_names()
    with pytest.raises(CacheDoesNotExist):
        await client.cache(name).get("k")


async def test_key_value_operations(cache: Cache) -> None:
    assert await cache.put_if_absent("a", 1) is True
    assert await cache.put_if_absent("a", 2) is False
    assert await cache.get_and_put("a", 3) == 1
    assert await cache.get_and_put_if_absent("a", 4) == 3
    assert await cache.get_and_replace("a", 5) == 3
    assert await cache.get_and_replace("missing", 5) is None
    assert await cache.replace("a", 6) is True
    assert await cache.replace("missing", 6) is False
    assert await cache.replace_if_equals("a", 6, 7) is True
    assert await cache.replace_if_equals("a", 6, 8) is False
    assert await cache.get("a") == 7
    await cache.put_all({"b": 2, "c": 3, "d": 4})
    assert await cache.get_all(["a", "b", "zz"]) == {"a": 7, "b": 2}
    assert await cache.contains_keys(["a", "b"]) is True
    assert await cache.contains_keys(["a", "zz"]) is False
    assert await cache.get_size() == 4
    assert await cache.get_size(PeekMode.PRIMARY) == 4
    assert await cache.remove_if_equals("b", 99) is False
    assert await cache.remove_if_equals("b", 2) is True
    assert await cache.remove_key("c") is True
    assert await cache.remove_key("c") is False
    assert await cache.get_and_remove("d") == 4
    await cache.clear_key("a")
    assert await cache.get_size() == 0
    await cache.put_all({i: i for i in range(10)})
    await cache.remove_keys([0, 1])
    await cache.clear_keys([2, 3])
    assert await cache.get_size() == 6
    await cache.remove_all()
    assert await cache.get_size() == 0
    await cache.put(1, 1)
    await cache.clear()
    assert await cache.get(1) is None


async def test_expiry_policy_view_expires_entries(cache: Cache) -> None:
    short = cache.with_expire_policy(create=300)
    await short.put("gone", 1)
    await cache.put("stays", 2)
    assert await cache.get("gone") == 1
    await asyncio.sleep(1.0)
    assert await cache.get("gone") is None
    assert await cache.get("stays") == 2


async def test_bad_expiry_and_peek_mode_are_local_errors(cache: Cache) -> None:
    with pytest.raises(LocalProtocolError, match="TTL"):
        cache.with_expire_policy(create=-5)
    with pytest.raises(LocalProtocolError, match="peek mode"):
        await cache.get_size(42)


async def test_unencodable_value_is_a_local_error_and_nothing_is_sent(client: Client, cache: Cache) -> None:
    def sent() -> int:
        return sum(n["requests"] for n in client.stats()["detail"]["nodes"])

    before = sent()
    with pytest.raises(LocalProtocolError, match="outside the Java long range"):
        await cache.put("k", 2**70)
    assert sent() == before
    assert await cache.get("k") is None
