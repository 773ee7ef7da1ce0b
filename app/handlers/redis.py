"""Redis endpoints: get/set a string, increment a counter, and a blocking pop with a timeout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import tornado.web

from app import api
from app.handlers.base import BaseHandler
from drivers.errors import BackendError

TTL_MAX_S = 2**31 - 1   # Redis refuses an EX whose expiry time overflows; 68 years is plenty
# Redis's answers when the key holds something the command cannot use: the state of the key, not a
# failure of Redis or of this service, so 409 saying what the key holds.
CONFLICTS = ("WRONGTYPE", "ERR value is not an integer", "ERR increment or decrement would overflow")
CONFLICT = api.Response("The key holds a value this command cannot use (another type, not an integer counter, "
                        "or a counter at its limit).", api.error_schema())


@contextmanager
def key_state(key: str) -> Iterator[None]:
    """A Redis error about what the key holds becomes a 409 naming the key."""
    try:
        yield
    except BackendError as exc:
        if not any(marker in exc.message for marker in CONFLICTS):
            raise
        raise tornado.web.HTTPError(409, "%s: %s", key, exc.message.removeprefix("redis: ")) from exc


BLPOP_S: api.Param[float] = api.Param(
    "s", api.Number(0.01, lambda s: min(s.server.max_sleep_s, s.redis.socket_timeout_s - 0.5)),
    "Seconds to wait for an element (server.max_sleep_s at most, and less than redis.socket_timeout_s).",
    where="query", example=0.01)
TTL: api.Schema = {"type": ["integer", "null"], "minimum": 1, "maximum": TTL_MAX_S}
PUT_VALUE = api.Body(
    api.obj({"value": {"type": "string"}}, {"ttl_s": TTL}),
    "The string to store, and optionally its time to live in seconds (absent or null: no expiry).")
_KV = api.obj({"key": {"type": "string"}, "value": {"type": "string"}})


class KeyHandler(BaseHandler):
    """``GET /redis/kv/{key}`` (404 when absent); ``PUT`` with ``{"value": str, "ttl_s": int?}``."""

    endpoint = api.Endpoint(path=(api.KEY,), operations=(
        api.Operation("get", "A string from Redis (GET)", backends=("redis",), responses={
            200: api.json("The value (invalid UTF-8 replaced).", _KV),
            404: api.not_found("No such key."),
            409: CONFLICT,
        }),
        api.Operation("put", "Store a string in Redis (SET, with EX when ttl_s is given)", body=PUT_VALUE,
                      backends=("redis",), responses={200: api.json("Stored.", _KV)}),
    ))

    async def get(self, key: str) -> None:
        self.key_arg(key)
        with key_state(key):
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
        if isinstance(ttl, float) and ttl.is_integer():   # 60.0 is an integer to JSON Schema too
            ttl = int(ttl)
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= TTL_MAX_S):
            raise tornado.web.HTTPError(400, "ttl_s must be an integer from 1 to %d", TTL_MAX_S)
        await self.ctx.redis.set(key, value, ex=ttl)
        self.write_json({"key": key, "value": value})


class IncrHandler(BaseHandler):
    """``POST /redis/counters/{key}/incr``: the counter's new value."""

    endpoint = api.Endpoint(path=(api.KEY,), operations=(
        api.Operation("post", "Increment a counter in Redis (INCR)", backends=("redis",), responses={
            200: api.json("The counter's new value.",
                          api.obj({"key": {"type": "string"}, "value": {"type": "integer"}})),
            409: CONFLICT,
        }),
    ))

    async def post(self, key: str) -> None:
        self.key_arg(key)
        with key_state(key):
            value = await self.ctx.redis.incr(key)
        self.write_json({"key": key, "value": value})


class BlockingPopHandler(BaseHandler):
    """``GET /redis/blpop/{key}?s=``: BLPOP with a timeout; the head of the list, or null after ``s``."""

    endpoint = api.Endpoint(path=(api.KEY,), operations=(
        api.Operation("get", "Pop the head of a Redis list, waiting up to s seconds (BLPOP)", params=(BLPOP_S,),
                      backends=("redis",), responses={
                          200: api.json("The element, or null when none came within s.",
                                        api.obj({"key": {"type": "string"}, "value": api.NULLABLE_STRING})),
                          409: CONFLICT,
                      }),
    ))

    async def get(self, key: str) -> None:
        self.key_arg(key)
        seconds = self.query_arg(BLPOP_S)
        with key_state(key):
            value = await self.ctx.redis.blpop(key, seconds)
        self.write_json({"key": key, "value": None if value is None else value.decode("utf-8", "replace")})
