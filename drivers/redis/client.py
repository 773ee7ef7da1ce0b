"""Redis: short commands on one pipelined connection, blocking ones on redis.asyncio's pool.

``get``, ``set``, ``mset``, ``incr`` and ``ping`` go through ``PipelinedRedis``
(``drivers.redis.pipe``): one connection per process with many commands in
flight, the commands of one loop iteration written at once and replies parsed
by hiredis.  ``blpop`` — and anything done on ``.redis``, the raw
redis.asyncio client — uses a ``BlockingConnectionPool`` instead: a blocking
command holds a connection of its own, and a caller waits (up to
``pool_wait_timeout_s``) for a free one instead of failing at once.

Retries (``drivers.retry``): redis-py itself never retries (``retry=None``): a
command sent twice is not always the same as once.  This client retries, after a
lost connection only (``BackendUnavailable``), the commands that are idempotent
(``get``, ``set``, ``mset``, ``ping``) under ``config.retry`` — never ``incr`` or
``blpop``.  A lost pipelined connection fails every command in flight on it at
once; the retries then share the one reconnect attempt.  A command that timed
out (``socket_timeout_s``, also the pipelined command timeout) is not retried:
Redis may still be executing it.

Every command crosses the client's boundary (``calls``): counted and, with an
observer attached, reported by name ("get", "set", "mset", "incr", "blpop").

Inside a budget (``drivers.budget``) a command's deadline is the smaller of
``socket_timeout_s`` and what is left; a retry never starts after the budget
ran out.  A BLPOP that finds every pool connection taken for ``pool_wait_timeout_s``
fails at once with ``BackendBusy`` (503 and ``Retry-After`` in the service).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from time import perf_counter
from typing import Any

import redis.asyncio as aredis
from redis import exceptions as rexc

from drivers import budget
from drivers.base import Calls, ClientStats, LifecycleMixin, client_stats, converted
from drivers.errors import BackendBusy, BackendError, BackendTimeout, BackendUnavailable, DriverError, InterfaceError
from drivers.redis.config import RedisConfig
from drivers.redis.pipe import PipelinedRedis
from drivers.redis.resp import Arg, bulk, command_prefix, encode_command
from drivers.retry import Retrier

_GET = command_prefix("GET", total=2)
_INCR = command_prefix("INCR", total=2)
_PING = encode_command(["PING"])


_deadline = budget.deadline   # the hot path asks for the budget only when there is one


def _convert(exc: BaseException) -> DriverError | None:
    if isinstance(exc, rexc.ConnectionError) and "No connection available" in str(exc):
        return BackendBusy("redis: every pool connection is taken (blocking commands hold theirs); try again",
                           backend="redis")
    if isinstance(exc, rexc.TimeoutError | TimeoutError):
        return BackendTimeout(f"redis: deadline passed ({exc or 'no reply in time'})", backend="redis")
    if isinstance(exc, rexc.ConnectionError | OSError):
        return BackendUnavailable(f"redis: {exc}", backend="redis")
    if isinstance(exc, rexc.RedisError):
        return BackendError(f"redis: {exc}", backend="redis")
    return None


class RedisClient(LifecycleMixin):
    """The process's Redis client: a pipelined connection and a pool; ``.redis`` is the raw pool client."""

    name = "redis"

    def __init__(self, config: RedisConfig | None = None) -> None:
        c = self.config = config or RedisConfig()
        self.address = c.address
        self._pool = aredis.BlockingConnectionPool(
            host=c.host, port=c.port, db=c.db, username=c.username, password=c.password,
            max_connections=c.pool_max, timeout=c.pool_wait_timeout_s,
            socket_connect_timeout=c.connect_timeout_s, socket_timeout=c.socket_timeout_s, retry=None,
        )
        self.redis: aredis.Redis = aredis.Redis(connection_pool=self._pool)
        self.pipe = PipelinedRedis(c)
        self.calls = Calls("redis")
        self._retry = Retrier(c.retry, (BackendUnavailable,), give_up=lambda: self.pipe.closed)
        self._started = False

    def __repr__(self) -> str:
        return f"<RedisClient {self.address} {'started' if self._started else 'not started'}>"

    async def start(self) -> None:
        await self.ping()
        self._started = True

    async def aclose(self) -> None:
        self._started = False
        await self.pipe.aclose()
        await self.redis.aclose()
        await self._pool.disconnect()

    async def _command(self, op: str, payload: bytes, idempotent: bool) -> Any:
        """One pipelined command through the boundary; idempotent ones again after a lost connection."""
        calls = self.calls
        observer = calls.observer
        began = perf_counter() if observer is not None else 0.0
        calls.in_flight += 1
        try:
            reply = await self.pipe.call(payload, None if _deadline() is None else self._budgeted())
        except BaseException as exc:
            return await self._failed(op, payload, idempotent, began, exc)
        # Calls.end, inlined: this is the hot path of every GET.
        calls.in_flight -= 1
        calls.requests += 1
        if observer is not None:
            observer("redis", op, perf_counter() - began, None)
        return reply

    async def _failed(self, op: str, payload: bytes, idempotent: bool, began: float, exc: BaseException) -> Any:
        """The first attempt failed: try again if the command and the failure allow it; end the call."""
        calls = self.calls
        try:
            if not (idempotent and isinstance(exc, BackendUnavailable)):
                raise exc
            reply = await self._retry.again(exc, self._send, payload)
        except BaseException as final:
            calls.end(op, began, final)
            raise
        calls.end(op, began)
        return reply

    def _budgeted(self) -> float | None:
        """The command's deadline inside a budget: what is left of it, if less than the socket timeout."""
        own = self.config.socket_timeout_s
        left = budget.limit(own, "redis")
        return left if left < own else None

    async def _send(self, payload: bytes) -> Any:
        return await self.pipe.call(payload, None if _deadline() is None else self._budgeted())

    async def _ping(self) -> None:
        try:
            await self._send(_PING)
        except BackendUnavailable as exc:
            await self._retry.again(exc, self._send, _PING)

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._command("get", _GET + bulk(key), True)
        return value

    async def set(self, key: str, value: bytes | str, *, ex: int | None = None) -> None:
        args: list[Any] = ["SET", key, value] if ex is None else ["SET", key, value, "EX", ex]
        await self._command("set", encode_command(args), True)

    async def mset(self, mapping: dict[str, bytes | str]) -> None:
        args: list[Any] = ["MSET"]
        for key, value in mapping.items():
            args += (key, value)
        await self._command("mset", encode_command(args), True)

    async def incr(self, key: str, amount: int = 1) -> int:
        payload = _INCR + bulk(key) if amount == 1 else encode_command(["INCRBY", key, amount])
        return int(await self._command("incr", payload, False))

    async def command(self, *args: Arg, idempotent: bool = False) -> Any:
        """Any short, non-blocking command on the pipelined connection: ``await command("SET", k, v, "PX", 500)``.

        Counted at the boundary under the command's name in lower case; retried after a
        lost connection only when the caller says it is ``idempotent``.  Never send
        blocking, pub/sub, MULTI/WATCH or connection-state commands here (``drivers.redis.pipe``).
        """
        return await self._command(str(args[0]).lower() if args else "", encode_command(args), idempotent)

    async def batch(self, commands: Sequence[Sequence[Arg]], *, op: str = "batch",
                    idempotent: bool = False) -> list[Any]:
        """Several commands written together, their replies in order: one call at the boundary.

        The first error reply fails the batch (``BackendError``) once every reply is in;
        after a lost connection the whole batch is sent again when ``idempotent``.
        """
        if not commands:
            return []
        payloads = [encode_command(c) for c in commands]
        calls = self.calls
        began = calls.start()
        try:
            replies = await self._batch(payloads)
        except BackendUnavailable as exc:
            if not idempotent:
                calls.end(op, began, exc)
                raise
            try:
                replies = await self._retry.again(exc, self._batch, payloads)
            except BaseException as final:
                calls.end(op, began, final)
                raise
        except BaseException as exc:
            calls.end(op, began, exc)
            raise
        calls.end(op, began)
        return replies

    async def _batch(self, payloads: list[bytes]) -> list[Any]:
        timeout_s = None if _deadline() is None else self._budgeted()
        pipe = self.pipe
        if not pipe.connected:
            first = await pipe.call(payloads[0], timeout_s)   # reconnects; the rest then go out together
            return [first, *await self._batch(payloads[1:])] if len(payloads) > 1 else [first]
        futures = [pipe.call(p, timeout_s) for p in payloads]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def blpop(self, key: str, timeout_s: float) -> bytes | None:
        """Pop the head of list ``key``, waiting up to ``timeout_s`` on a pool connection of its own.

        The connection stays borrowed from the pool while the server waits; the
        socket timeout must exceed ``timeout_s``, so it is checked here.
        """
        if timeout_s >= self.config.socket_timeout_s:
            raise InterfaceError(f"redis: a BLPOP timeout must be under the socket timeout "
                                 f"({self.config.socket_timeout_s:g} s), not {timeout_s:g} s", backend="redis")
        with self.calls.call("blpop"), converted(_convert):
            own = self.config.socket_timeout_s
            limit = budget.limit(own, "redis")
            try:
                async with asyncio.timeout(limit):
                    reply = await self.redis.blpop([key], timeout=timeout_s)  # type: ignore[misc]
            except TimeoutError:
                why = " (what was left of the request's budget)" if limit < own else ""
                raise BackendTimeout(f"redis: no answer to BLPOP within {limit:.3g} s{why}", backend="redis",
                                     waited_s=limit) from None
        if reply is None:
            return None
        value = reply[1]
        return value.encode() if isinstance(value, str) else bytes(value)

    def stats(self) -> ClientStats:
        pool, pipe = self._pool, self.pipe
        counters = pipe.counters
        return client_stats(
            self.calls, address=self.address, connected=pipe.connected, late_replies=counters.late_replies,
            reconnects=counters.reconnects, retries=self._retry.retries,
            pool=(len(pool._in_use_connections), len(pool._available_connections), pool.max_connections),
            detail={"started": self._started, "pipelined_requests": counters.requests,
                    "pipelined_timeouts": counters.timeouts})
