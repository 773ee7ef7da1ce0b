"""Redis endpoints: get/set a string, increment a counter, and a blocking pop with a timeout."""

from __future__ import annotations

import tornado.web

from app.handlers.base import BaseHandler


class KeyHandler(BaseHandler):
    """``GET /redis/kv/{key}`` (404 when absent); ``PUT`` with ``{"value": str, "ttl_s": int?}``."""

    async def get(self, key: str) -> None:
        self.key_arg(key)
        value = await self.ctx.redis.get(key)
        if value is None:
            self.write_json({"error": f"no key {key}", "request_id": self.request_id}, 404)
            return
        self.write_json({"key": key, "value": value.decode("utf-8", "replace")})

    async def put(self, key: str) -> None:
        self.key_arg(key)
        body = self.json_body()
        value, ttl = body.get("value"), body.get("ttl_s")
        if not isinstance(value, str):
            raise tornado.web.HTTPError(400, "value must be a string")
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0):
            raise tornado.web.HTTPError(400, "ttl_s must be a positive integer")
        await self.ctx.redis.set(key, value, ex=ttl)
        self.write_json({"key": key, "value": value})


class IncrHandler(BaseHandler):
    """``POST /redis/counters/{key}/incr``: the counter's new value."""

    async def post(self, key: str) -> None:
        self.key_arg(key)
        value = await self.ctx.redis.incr(key)
        self.write_json({"key": key, "value": value})


class BlockingPopHandler(BaseHandler):
    """``GET /redis/blpop/{key}?s=``: BLPOP with a timeout; the head of the list, or null after ``s``."""

    async def get(self, key: str) -> None:
        self.key_arg(key)
        limit = min(self.ctx.settings.server.max_sleep_s, self.ctx.settings.redis.socket_timeout_s - 0.5)
        seconds = self.number_query("s", 0.01, limit)
        value = await self.ctx.redis.blpop(key, seconds)
        self.write_json({"key": key, "value": None if value is None else value.decode("utf-8", "replace")})
