"""Redis through redis.asyncio with hiredis and a blocking, bounded pool.

``BlockingConnectionPool`` makes a caller wait (up to ``pool_wait_timeout_s``)
for a free connection instead of failing at once when the pool is busy, as the
default pool does under load.  redis-py itself never retries (``Retry(..., 0)``
on every connection): a command sent twice is not always the same as once.
This client retries, after a lost connection only, the commands that are
idempotent (``get``, ``set``, ``ping``) — never ``incr`` or ``blpop``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aredis
from redis import exceptions as rexc
from redis.utils import HIREDIS_AVAILABLE

from drivers.base import LifecycleMixin, converted
from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError

T = TypeVar("T")


def _convert(exc: BaseException) -> DriverError | None:
    if isinstance(exc, rexc.TimeoutError | TimeoutError):
        return BackendTimeout(f"redis: deadline passed ({exc})", backend="redis")
    if isinstance(exc, rexc.ConnectionError) and "No connection available" in str(exc):
        return BackendTimeout("redis: no pool connection became free in time", backend="redis")
    if isinstance(exc, rexc.ConnectionError | OSError):
        return BackendUnavailable(f"redis: {exc}", backend="redis")
    if isinstance(exc, rexc.RedisError):
        return BackendError(f"redis: {exc}", backend="redis")
    return None


class RedisClient(LifecycleMixin):
    """One redis.asyncio client (and pool) for the process; ``.redis`` is the raw client."""

    name = "redis"

    def __init__(self, *, host: str, port: int, db: int = 0, password: str | None = None,
                 pool_max: int = 64, pool_wait_timeout_s: float = 2.0,
                 connect_timeout_s: float = 2.0, socket_timeout_s: float = 5.0,
                 read_retries: int = 2, retry_backoff_s: float = 0.05) -> None:
        self.address = f"{host}:{port}"
        self._pool = aredis.BlockingConnectionPool(
            host=host, port=port, db=db, password=password, max_connections=pool_max,
            timeout=pool_wait_timeout_s, socket_connect_timeout=connect_timeout_s,
            socket_timeout=socket_timeout_s, retry=None,
        )
        self.redis: aredis.Redis = aredis.Redis(connection_pool=self._pool)
        self.socket_timeout = socket_timeout_s
        self._retries = read_retries
        self._backoff = retry_backoff_s
        self._retried = 0
        self._started = False

    async def start(self) -> None:
        await self.ping()
        self._started = True

    async def aclose(self) -> None:
        self._started = False
        await self.redis.aclose()
        await self._pool.disconnect()

    async def _idempotent(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``; after a lost connection, run it again (up to ``read_retries`` times)."""
        attempt = 0
        while True:
            try:
                with converted(_convert):
                    return await call()
            except BackendUnavailable:
                if attempt >= self._retries:
                    raise
            attempt += 1
            self._retried += 1
            await asyncio.sleep(self._backoff * attempt)

    async def _ping(self) -> None:
        await self._idempotent(self.redis.ping)

    async def get(self, key: str) -> bytes | None:
        value = await self._idempotent(lambda: self.redis.get(key))
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes | str, *, ex: int | None = None) -> None:
        await self._idempotent(lambda: self.redis.set(key, value, ex=ex))

    async def mset(self, mapping: dict[str, bytes | str]) -> None:
        await self._idempotent(lambda: self.redis.mset(mapping))  # type: ignore[arg-type]

    async def incr(self, key: str, amount: int = 1) -> int:
        with converted(_convert):
            return int(await self.redis.incr(key, amount))

    async def blpop(self, key: str, timeout_s: float) -> bytes | None:
        """Pop the head of list ``key``, waiting up to ``timeout_s`` on a connection of its own.

        The connection stays borrowed from the pool while the server waits; the
        socket timeout must exceed ``timeout_s``, so it is checked here.
        """
        if timeout_s >= self.socket_timeout:
            raise ValueError(f"a BLPOP timeout must be under the socket timeout ({self.socket_timeout:g} s)")
        with converted(_convert):
            reply = await self.redis.blpop([key], timeout=timeout_s)  # type: ignore[misc]
        if reply is None:
            return None
        value = reply[1]
        return value.encode() if isinstance(value, str) else bytes(value)

    def stats(self) -> dict[str, Any]:
        pool = self._pool
        return {"address": self.address, "started": self._started, "in_use": len(pool._in_use_connections),
                "idle": len(pool._available_connections), "max": pool.max_connections,
                "retried": self._retried, "hiredis": HIREDIS_AVAILABLE}
