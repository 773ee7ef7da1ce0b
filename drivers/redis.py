"""Redis: short commands on one pipelined connection, blocking ones on redis.asyncio's pool.

``get``, ``set``, ``mset``, ``incr`` and ``ping`` go through ``PipelinedRedis``
(``drivers.redis_pipe``): one connection per process with many commands in
flight, the commands of one loop iteration written at once and replies parsed
by hiredis.  ``blpop`` — and anything done on ``.redis``, the raw
redis.asyncio client — uses a ``BlockingConnectionPool`` instead: a blocking
command holds a connection of its own, and a caller waits (up to
``pool_wait_timeout_s``) for a free one instead of failing at once.

Retries: redis-py itself never retries (``retry=None``): a command sent twice
is not always the same as once.  This client retries, after a lost connection
only (``BackendUnavailable``), the commands that are idempotent (``get``,
``set``, ``mset``, ``ping``) up to ``read_retries`` times — never ``incr`` or
``blpop``.  A lost pipelined connection fails every command in flight on it at
once; the retries then share the one reconnect attempt.  A command that timed
out (``socket_timeout_s``, also the pipelined command timeout) is not retried:
Redis may still be executing it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aredis
from redis import exceptions as rexc
from redis.utils import HIREDIS_AVAILABLE

from drivers.base import LifecycleMixin, converted
from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError
from drivers.redis_pipe import PipelinedRedis
from drivers.resp import bulk, command_prefix, encode_command

_GET = command_prefix("GET", total=2)
_INCR = command_prefix("INCR", total=2)
_PING = encode_command(["PING"])


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
    """The process's Redis client: a pipelined connection and a pool; ``.redis`` is the raw pool client."""

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
        self.pipe = PipelinedRedis(host, port, db=db, password=password, connect_timeout=connect_timeout_s,
                                   timeout=socket_timeout_s)
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
        await self.pipe.aclose()
        await self.redis.aclose()
        await self._pool.disconnect()

    async def _idempotent(self, payload: bytes) -> Any:
        """Send ``payload`` pipelined; after a lost connection, send it again (up to ``read_retries`` times)."""
        attempt = 0
        while True:
            try:
                return await self.pipe.call(payload)
            except BackendUnavailable:
                if attempt >= self._retries or self.pipe.closed:
                    raise
            attempt += 1
            self._retried += 1
            await asyncio.sleep(self._backoff * attempt)

    async def _ping(self) -> None:
        await self._idempotent(_PING)

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._idempotent(_GET + bulk(key))
        return value

    async def set(self, key: str, value: bytes | str, *, ex: int | None = None) -> None:
        args: list[Any] = ["SET", key, value] if ex is None else ["SET", key, value, "EX", ex]
        await self._idempotent(encode_command(args))

    async def mset(self, mapping: dict[str, bytes | str]) -> None:
        args: list[Any] = ["MSET"]
        for key, value in mapping.items():
            args += (key, value)
        await self._idempotent(encode_command(args))

    async def incr(self, key: str, amount: int = 1) -> int:
        payload = _INCR + bulk(key) if amount == 1 else encode_command(["INCRBY", key, amount])
        return int(await self.pipe.call(payload))

    async def blpop(self, key: str, timeout_s: float) -> bytes | None:
        """Pop the head of list ``key``, waiting up to ``timeout_s`` on a pool connection of its own.

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
                "retried": self._retried, "hiredis": HIREDIS_AVAILABLE, **self.pipe.stats()}
