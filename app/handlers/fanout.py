"""``GET /fanout/{id}``: one item read from all four backends at once, combined."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from app.handlers.base import BaseHandler
from app.handlers.mysql import ITEM_SQL

ITEMS = "items"  # Redis key prefix, Mongo collection and Ignite cache of the seed data


class FanoutHandler(BaseHandler):
    """The four reads run concurrently; the first backend failure becomes the error response."""

    async def get(self, raw_id: str) -> None:
        item_id = self.int_arg(raw_id)
        results = await asyncio.gather(self._mysql(item_id), self._redis(item_id), self._mongo(item_id),
                                       self._ignite(item_id), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        body = dict(zip(("mysql", "redis", "mongo", "ignite"), results, strict=True))
        self.write_json({"id": item_id, **body})

    async def _mysql(self, item_id: int) -> Any:
        row = await self.ctx.mysql.fetchone(ITEM_SQL, (item_id,))
        return None if row is None else {"id": row[0], "name": row[1], "price_cents": row[2]}

    async def _redis(self, item_id: int) -> Any:
        raw = await self.ctx.redis.get(f"{ITEMS}:{item_id}")
        return None if raw is None else orjson.loads(raw)

    async def _mongo(self, item_id: int) -> Any:
        doc = await self.ctx.mongo.collection(ITEMS).find_one({"_id": item_id})
        if doc is not None:
            doc["id"] = doc.pop("_id")
        return doc

    async def _ignite(self, item_id: int) -> Any:
        cache = await self.ctx.ignite_cache(ITEMS)
        raw = await cache.get(item_id)
        return None if raw is None else orjson.loads(raw)
