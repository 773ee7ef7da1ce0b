"""``python -m app seed``: the same ``items`` 1..N in all four backends (idempotent).

MySQL table ``items``, Redis keys ``items:{id}`` (JSON), Mongo collection
``items`` (``_id`` = id), Ignite cache ``items`` (JSON by int key) and Ignite
SQL table ``item`` — what ``/mysql/items``, ``/ignite/items`` and ``/fanout`` read.
"""

from __future__ import annotations

import asyncio
import warnings

import orjson

from app.context import Context

BATCH = 200


def item(i: int) -> dict[str, object]:
    return {"id": i, "name": f"item-{i}", "price_cents": 100 + (i * 37) % 9900}


async def seed(ctx: Context, count: int) -> None:
    items = [item(i) for i in range(1, count + 1)]
    await asyncio.gather(_mysql(ctx, items), _redis(ctx, items), _mongo(ctx, items), _ignite(ctx, items))


async def _mysql(ctx: Context, items: list[dict[str, object]]) -> None:
    warnings.filterwarnings("ignore", message="Table 'items' already exists")
    await ctx.mysql.execute("CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, "
                            "price_cents INT NOT NULL)")
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        values = ",".join(["(%s,%s,%s)"] * len(batch))
        args = [v for it in batch for v in (it["id"], it["name"], it["price_cents"])]
        await ctx.mysql.execute(f"REPLACE INTO items (id, name, price_cents) VALUES {values}", args)


async def _redis(ctx: Context, items: list[dict[str, object]]) -> None:
    mapping: dict[str, bytes | str] = {f"items:{it['id']}": orjson.dumps(it) for it in items}
    await ctx.redis.mset(mapping)


async def _mongo(ctx: Context, items: list[dict[str, object]]) -> None:
    # Only the missing ones: the items are deterministic, and upserts are slow on FerretDB.
    collection = ctx.mongo.collection("items")
    present = {doc["_id"] for doc in await collection.find({}, {"_id": 1})}
    docs = [{"_id": it["id"], "name": it["name"], "price_cents": it["price_cents"]}
            for it in items if it["id"] not in present]
    for start in range(0, len(docs), BATCH):
        await collection.insert_many(docs[start:start + BATCH], ordered=False)


async def _ignite(ctx: Context, items: list[dict[str, object]]) -> None:
    cache = await ctx.ignite_cache("items")
    await cache.put_all({it["id"]: orjson.dumps(it).decode() for it in items})
    create = ("CREATE TABLE IF NOT EXISTS item (id INT PRIMARY KEY, name VARCHAR, price_cents INT) "
              "WITH \"template=replicated\"")
    async with ctx.ignite.sql(create) as rows:
        async for _ in rows:
            pass
    for start in range(0, len(items), BATCH):
        batch = items[start:start + BATCH]
        values = ",".join(["(?,?,?)"] * len(batch))
        args = [v for it in batch for v in (it["id"], it["name"], it["price_cents"])]
        async with ctx.ignite.sql(f"MERGE INTO item (id, name, price_cents) VALUES {values}",
                                  query_args=args) as rows:
            async for _ in rows:
                pass


async def run(ctx: Context, count: int) -> None:
    await ctx.start(only=[client.name for client in ctx.clients])  # not the pub/sub subscription: no use here
    try:
        await seed(ctx, count)
    finally:
        await ctx.aclose()
