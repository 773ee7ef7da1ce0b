"""Ignite endpoints: cache get/put, a SQL point select on the seeded table, and a slow SQL range query."""

from __future__ import annotations

import tornado.web

from app import api
from app.handlers.base import BaseHandler

KV_CACHE = "kv"
ITEM_SQL = "SELECT id, name, price_cents FROM item WHERE id = ?"
# H2 has no SLEEP: summing a generated range keeps the node busy for a while (~0.2 s per million rows).
RANGE_SQL = "SELECT SUM(x) FROM SYSTEM_RANGE(1, ?)"

RANGE_N: api.Param[int] = api.Param(
    "n", api.Integer(1, lambda s: s.server.max_range), "How many numbers to sum (server.max_range at most).",
    where="query", example=1000)
# A cache value: what the Ignite client stores as a string, a boolean, a long or a double.
CACHE_VALUE: api.Schema = {"anyOf": [{"type": ["string", "boolean"]}, api.NUMBER_64]}
PUT_VALUE = api.Body(api.obj({"value": CACHE_VALUE}),
                     f"The value: a string, a boolean, or {api.NUMBER_64_RULE}.")
_KV = api.obj({"key": {"type": "string"}, "value": CACHE_VALUE})


class CacheKeyHandler(BaseHandler):
    """``GET /ignite/cache/{key}`` (404 when absent); ``PUT`` with ``{"value": str | number | bool}``."""

    endpoint = api.Endpoint(path=(api.KEY,), operations=(
        api.Operation("get", "A value from the Ignite cache `kv`", backends=("ignite",), responses={
            200: api.json("The value.", _KV),
            404: api.not_found("No such key."),
        }),
        api.Operation("put", "Store a value in the Ignite cache `kv`", body=PUT_VALUE, backends=("ignite",),
                      responses={200: api.json("Stored.", _KV)}),
    ))

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
        if not isinstance(value, str | int | float) or (not isinstance(value, str | bool) and not api.fits_64(value)):
            raise tornado.web.HTTPError(400, "value must be a string, a boolean or %s", api.NUMBER_64_RULE)
        cache = await self.ctx.ignite_cache(KV_CACHE)
        await cache.put(key, value)
        self.write_json({"key": key, "value": value})


class SqlItemHandler(BaseHandler):
    """``GET /ignite/items/{id}``: a SQL select on the seeded ``item`` table, or 404."""

    endpoint = api.Endpoint(path=(api.ITEM_ID,), operations=(
        api.Operation("get", "One item from Ignite SQL (the seeded `item` table)", backends=("ignite",), responses={
            200: api.json("The item.", api.ITEM),
            404: api.not_found("No item with this id."),
        }),
    ))

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

    endpoint = api.Endpoint(operations=(
        api.Operation("get", "SUM(x) over 1..n computed by Ignite SQL: deliberately slow (~0.2 s per million)",
                      params=(RANGE_N,), backends=("ignite",), responses={
                          200: api.json("The sum.", api.obj({"n": {"type": "integer"},
                                                             "sum": {"type": ["integer", "null"]}})),
                      }),
    ))

    async def get(self) -> None:
        n = self.query_arg(RANGE_N)
        async with self.ctx.ignite.sql(RANGE_SQL, query_args=[n]) as rows:
            found = [row async for row in rows]
        self.write_json({"n": n, "sum": found[0][0] if found else None})
