"""Redis through redis.asyncio with hiredis and a blocking, bounded pool.

``BlockingConnectionPool`` makes a caller wait (up to ``pool_wait_timeout_s``)
for a free connection instead of failing at once when the pool is busy, as the
default pool does under load.  Commands are not retried by redis-py: a command
sent twice is not always the same as once.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis
from redis import exceptions as rexc

from drivers.base import LifecycleMixin, converted
from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError


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
                 connect_timeout_s: float = 2.0, socket_timeout_s: float = 5.0) -> None:
        self.address = f"{host}:{port}"
        self._pool = aredis.BlockingConnectionPool(
            host=host, port=port, db=db, password=password, max_connections=pool_max,
            timeout=pool_wait_timeout_s, socket_connect_timeout=connect_timeout_s,
            socket_timeout=socket_timeout_s, retry=None,
        )
        self.redis: aredis.Redis = aredis.Redis(connection_pool=self._pool)
        self._started = False

    async def start(self) -> None:
        await self.ping()
        self._started = True

    async def aclose(self) -> None:
        self._started = False
        await self.redis.aclose()
        await self._pool.disconnect()

    async def _ping(self) -> None:
        with converted(_convert):
            await self.redis.ping()

    async def get(self, key: str) -> bytes | None:
        with converted(_convert):
            value = await self.redis.get(key)
            return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes | str, *, ex: int | None = None) -> None:
        with converted(_convert):
            await self.redis.set(key, value, ex=ex)

    async def incr(self, key: str, amount: int = 1) -> int:
        with converted(_convert):
            return int(await self.redis.incr(key, amount))

    def stats(self) -> dict[str, Any]:
        pool = self._pool
        in_use = len(pool._in_use_connections)
        return {"address": self.address, "started": self._started, "in_use": in_use,
                "idle": len(pool._available_connections), "max": pool.max_connections}
