"""MySQL/MariaDB through aiomysql connections in a pool of our own, with connect and query deadlines.

The pool (``drivers.mysql_pool``) replaces aiomysql's, whose lock, scan of every
free connection and task per release cost more CPU than the queries themselves
with hundreds in flight.  A query that fails, times out or is cancelled closes
its connection instead of returning it to the pool: the server may still be
sending its result, and the next borrower must never read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiomysql

from drivers.base import LifecycleMixin, converted
from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError
from drivers.mysql_pool import Pool

_LOST = {2003, 2006, 2013, 2055}  # can't connect, gone away, lost during query, lost at handshake


def _convert(exc: BaseException) -> DriverError | None:
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"mysql: deadline passed ({exc or 'timeout'})", backend="mysql")
    if isinstance(exc, aiomysql.OperationalError) and exc.args and exc.args[0] in _LOST:
        return BackendUnavailable(f"mysql: {exc.args[1] if len(exc.args) > 1 else exc}", backend="mysql")
    if isinstance(exc, OSError):
        return BackendUnavailable(f"mysql: {exc}", backend="mysql")
    if isinstance(exc, aiomysql.Error):
        detail = exc.args[1] if len(exc.args) > 1 else str(exc)
        return BackendError(f"mysql: {detail}", backend="mysql")
    return None


class MySQLClient(LifecycleMixin):
    """One pool of aiomysql connections for the process."""

    name = "mysql"

    def __init__(self, *, host: str, port: int, user: str, password: str, database: str,
                 pool_min: int = 1, pool_max: int = 20, pool_recycle_s: float = 3600.0,
                 connect_timeout_s: float = 2.0, query_timeout_s: float = 10.0) -> None:
        self.address = f"{host}:{port}"
        self._params: dict[str, Any] = dict(host=host, port=port, user=user, password=password, db=database,
                                            connect_timeout=connect_timeout_s, autocommit=True)
        self._sizes = (pool_min, pool_max, pool_recycle_s)
        self._connect_timeout = connect_timeout_s
        self.query_timeout = query_timeout_s
        self._pool: Pool | None = None

    async def start(self) -> None:
        if self._pool is not None:
            return
        pool_min, pool_max, recycle_s = self._sizes
        pool = Pool(minsize=pool_min, maxsize=pool_max, recycle_s=recycle_s, **self._params)
        with converted(_convert):
            try:
                async with asyncio.timeout(self._connect_timeout + 1.0):
                    await pool.fill()
            except BaseException:
                pool.close()
                raise
        self._pool = pool

    async def aclose(self) -> None:
        """Close idle connections now; those still in use close when their query ends."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @asynccontextmanager
    async def _cursor(self, timeout: float | None) -> AsyncIterator[aiomysql.Cursor]:
        if self._pool is None:
            raise BackendUnavailable("mysql: client is not started", backend="mysql")
        pool = self._pool
        with converted(_convert):
            async with asyncio.timeout(self.query_timeout if timeout is None else timeout):
                conn = await pool.acquire()
                try:
                    async with conn.cursor() as cur:
                        yield cur
                except BaseException:
                    pool.release(conn, discard=True)   # its state is unknown: never hand it to another caller
                    raise
                pool.release(conn)

    async def fetchone(self, sql: str, args: Sequence[Any] = (), *,
                       timeout: float | None = None) -> tuple[Any, ...] | None:
        async with self._cursor(timeout) as cur:
            await cur.execute(sql, args)
            row: tuple[Any, ...] | None = await cur.fetchone()
            return row

    async def fetchall(self, sql: str, args: Sequence[Any] = (), *,
                       timeout: float | None = None) -> list[tuple[Any, ...]]:
        async with self._cursor(timeout) as cur:
            await cur.execute(sql, args)
            return list(await cur.fetchall())

    async def execute(self, sql: str, args: Sequence[Any] = (), *, timeout: float | None = None) -> int:
        """Run a statement; the number of affected rows."""
        async with self._cursor(timeout) as cur:
            return int(await cur.execute(sql, args))

    async def _ping(self) -> None:
        await self.fetchone("SELECT 1")

    def stats(self) -> dict[str, Any]:
        pool = self._pool
        if pool is None:
            return {"address": self.address, "started": False}
        return {"address": self.address, "started": True, "size": pool.size, "idle": pool.idle,
                "in_use": pool.in_use, "waiting": pool.waiting, "max": pool.maxsize}
