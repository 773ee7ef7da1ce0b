"""Ignite endpoints: cache get/put, a SQL point select on the seeded table, and a slow SQL range query."""

from __future__ import annotations

import tornado.web

from app.handlers.base import BaseHandler

KV_CACHE = "kv"
ITEM_SQL = "SELECT id, name, price_cents FROM item WHERE id = ?"
# H2 has no SLEEP: summing a generated range keeps the node busy for a while (~0.2 s per million rows).
RANGE_SQL = "SELECT SUM(x) FROM SYSTEM_RANGE(1, ?)"


class CacheKeyHandler(BaseHandler):
    """``GET /ignite/cache/{key}`` (404 when absent); ``PUT`` with ``{"value": str | number | bool}``."""

    async def get(self, key: str) -> None:
        self.key_arg(key)
        cache = await self.ctx.ignite_cache(KV_CACHE)
        value = await cache.get(key)
        if value is None:
            self.write_json({"error": f"no key {key}", "request_id": self.request_id}, 404)
            return
        self.write_json({"key": key, "value": value})

    async def put(self, key: str) -> None:
        self.key_arg(key)
        value = self.json_body().get("value")
        if not isinstance(value, str | int | float) or (isinstance(value, int) and not -(2**63) <= value < 2**63):
            raise tornado.web.HTTPError(400, "value must be a string, a number or a boolean")
        cache = await self.ctx.ignite_cache(KV_CACHE)
        await cache.put(key, value)
        self.write_json({"key": key, "value": value})


class SqlItemHandler(BaseHandler):
    """``GET /ignite/items/{id}``: a SQL select on the seeded ``item`` table, or 404."""

    async def get(self, raw_id: str) -> None:
        item_id = self.int_arg(raw_id)
        async with self.ctx.ignite.sql(ITEM_SQL, query_args=[item_id]) as rows:
            found = [row async for row in rows]
        if not found:
            self.write_json({"error": f"no item {item_id}", "request_id": self.request_id}, 404)
            return
        row = found[0]
        self.write_json({"id": row[0], "name": row[1], "price_cents": row[2]})


class RangeHandler(BaseHandler):
    """``GET /ignite/range?n=``: SUM over 1..n computed by the node — a deliberately slow query."""

    async def get(self) -> None:
        n = int(self.number_query("n", 1, self.ctx.settings.server.max_range, integer=True))
        async with self.ctx.ignite.sql(RANGE_SQL, query_args=[n]) as rows:
            found = [row async for row in rows]
        self.write_json({"n": n, "sum": found[0][0] if found else None})
