"""``GET /fanout/{id}``: one item read from all four backends at once, combined."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from app import api
from app.handlers.base import BaseHandler
from app.handlers.mysql import ITEM_SQL

ITEMS = "items"  # Redis key prefix, Mongo collection and Ignite cache of the seed data


class FanoutHandler(BaseHandler):
    """The four reads run concurrently; the first backend failure becomes the error response."""

    endpoint = api.Endpoint(path=(api.ITEM_ID,), operations=(
        api.Operation(
            "get", "One item from MySQL, Redis, MongoDB and Ignite at once",
            description="The four reads run concurrently; a backend without the item gives null (so does a "
                        "Redis or Ignite value under the item's key that is not a JSON object), and the first "
                        "backend failure is the answer.",
            backends=("mysql", "redis", "mongo", "ignite"), responses={
                200: api.json("The item as each backend has it.", api.obj({
                    "id": {"type": "integer"}, "mysql": {"anyOf": [api.ITEM, {"type": "null"}]},
                    "redis": {"type": ["object", "null"]}, "mongo": {"type": ["object", "null"]},
                    "ignite": {"type": ["object", "null"]}})),
            }),
    ))

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
        return _item(await self.ctx.redis.get(f"{ITEMS}:{item_id}"))

    async def _mongo(self, item_id: int) -> Any:
        doc = await self.ctx.mongo.collection(ITEMS).find_one({"_id": item_id})
        if doc is not None:
            doc["id"] = doc.pop("_id")
        return doc

    async def _ignite(self, item_id: int) -> Any:
        cache = await self.ctx.ignite_cache(ITEMS)
        return _item(await cache.get(item_id))


def _item(raw: Any) -> dict[str, Any] | None:
    """The item a backend holds as JSON text; None when there is none, or what is there is not a JSON object.

    The key is writable by other endpoints (``PUT /redis/kv/items:7``): what is there may be anything.
    """
    if not isinstance(raw, str | bytes):
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
