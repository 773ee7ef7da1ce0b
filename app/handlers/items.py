"""``/items/{id}``: an item read through the cache (local tier -> remote tier -> MySQL) and written to MySQL.

``GET`` answers from the process's local tier when it can, else from the remote tier
(``cache.backend``), else loads the row from MySQL and caches it; an id with no row
is cached as "not found" for ``cache.negative_ttl_s``.  ``PUT`` writes the row (insert
or replace) and then invalidates the cached copy everywhere: the remote tier and
every process's local tier (a message on the invalidation channel).  The answer of
a PUT whose invalidation failed is 503 naming the cache's backend: the row was
written, and a cached copy may stay until its TTL (``cache.ttl_s``) unless the PUT
is repeated, which is safe.
"""

from __future__ import annotations

from typing import Any

import tornado.web

from app import api
from app.handlers.base import BaseHandler
from app.handlers.mysql import ITEM_SQL

UPSERT_SQL = "REPLACE INTO items (id, name, price_cents) VALUES (%s, %s, %s)"
NAME_MAX = 64
ITEM_BODY = api.Body(
    api.obj({"name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX},
             "price_cents": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}}),
    "The item's name (1-64 characters) and price in cents.")


def cache_key(item_id: int) -> str:
    return f"item:{item_id}"


class CachedItemHandler(BaseHandler):
    """``GET /items/{id}`` through the cache (404 when absent, remembered); ``PUT`` writes and invalidates."""

    endpoint = api.Endpoint(path=(api.ITEM_ID,), operations=(
        api.Operation("get", "One item through the two-tier cache (in-process, then the cache's remote tier, then "
                      "MySQL)", backends=("mysql", "cache"), responses={
                          200: api.json("The item.", api.ITEM),
                          404: api.not_found("No item with this id (this answer is cached too, briefly)."),
                      }),
        api.Operation("put", "Create or replace an item in MySQL, then invalidate its cached copies everywhere",
                      body=ITEM_BODY, backends=("mysql", "cache"), responses={200: api.json("Stored.", api.ITEM)}),
    ))

    async def get(self, raw_id: str) -> None:
        item_id = self.int_arg(raw_id)
        item = await self.ctx.cache.get_or_load(cache_key(item_id), lambda: self._load(item_id))
        if item is None:
            self.write_json({"error": f"no item {item_id}", "request_id": self.request_id}, 404)
            return
        self.write_json(item)

    async def _load(self, item_id: int) -> dict[str, Any] | None:
        row = await self.ctx.mysql.fetchone(ITEM_SQL, (item_id,))
        return None if row is None else {"id": row[0], "name": row[1], "price_cents": row[2]}

    async def put(self, raw_id: str) -> None:
        item_id = self.int_arg(raw_id)
        body = self.json_body()
        name, price = body.get("name"), body.get("price_cents")
        if not isinstance(name, str) or not 1 <= len(name) <= NAME_MAX:
            raise tornado.web.HTTPError(400, "name must be a string of 1 to %d characters", NAME_MAX)
        if isinstance(price, float) and price.is_integer():
            price = int(price)
        if not isinstance(price, int) or isinstance(price, bool) or not 0 <= price <= 2**31 - 1:
            raise tornado.web.HTTPError(400, "price_cents must be an integer from 0 to %d", 2**31 - 1)
        await self.ctx.mysql.execute(UPSERT_SQL, (item_id, name, price))
        await self.ctx.cache.invalidate(cache_key(item_id))
        self.write_json({"id": item_id, "name": name, "price_cents": price})
