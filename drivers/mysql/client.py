"""MySQL/MariaDB through asyncmy connections in a pool of our own, with connect and query deadlines.

The pool (``drivers.mysql.pool``) replaces the driver's, whose lock, scan of every
free connection and task per release cost more CPU than the queries themselves
with hundreds in flight.  A query that fails, times out or is cancelled closes
its connection instead of returning it to the pool: the server may still be
sending its result, and the next borrower must never read it.

Every query crosses the client's boundary (``calls``): counted and, with an
observer attached, reported as "fetchone", "fetchall" or "execute".

Deadlines: a query (pool wait included) gets ``query_timeout_s``, or what is left
of the budget it runs in (``drivers.budget``) if that is less.  Inside a budget (a
request) waiting to start — for a slot of the adaptive limit (``drivers.limits``)
or a pool connection — is bounded by ``pool_wait_timeout_s`` too: a caller that
cannot start in that time gets ``BackendBusy`` at once, not a timeout later.  Work
without a budget (a script) waits up to ``query_timeout_s`` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from typing import Any

import asyncmy.errors
from asyncmy.cursors import Cursor

from drivers import budget
from drivers.base import Calls, ClientStats, LifecycleMixin, client_stats, converted
from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError
from drivers.limits import Limiter
from drivers.mysql.config import MySQLConfig
from drivers.mysql.pool import Pool

_LOST = {2003, 2006, 2013, 2055}  # can't connect, gone away, lost during query, lost at handshake


def _convert(exc: BaseException) -> DriverError | None:
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"mysql: deadline passed ({str(exc) or 'no answer in time'})", backend="mysql")
    if isinstance(exc, asyncmy.errors.OperationalError) and exc.args and exc.args[0] in _LOST:
        return BackendUnavailable(f"mysql: {exc.args[1] if len(exc.args) > 1 else exc}", backend="mysql")
    if isinstance(exc, OSError):
        return BackendUnavailable(f"mysql: {exc}", backend="mysql")
    if isinstance(exc, asyncmy.errors.Error):
        detail = exc.args[1] if len(exc.args) > 1 else str(exc)
        return BackendError(f"mysql: {detail}", backend="mysql")
    return None


class MySQLClient(LifecycleMixin):
    """One pool of asyncmy connections for the process."""

    name = "mysql"

    def __init__(self, config: MySQLConfig | None = None) -> None:
        c = self.config = config or MySQLConfig()
        self.address = c.address
        self._params: dict[str, Any] = dict(host=c.host, port=c.port, user=c.user, password=c.password,
                                            db=c.database, connect_timeout=c.connect_timeout_s, autocommit=True)
        self.query_timeout_s = c.query_timeout_s
        self.calls = Calls("mysql")
        self.limiter = Limiter("mysql", c.limit.capped(c.pool_max), wait_s=c.pool_wait_timeout_s,
                               wait_unbudgeted_s=c.query_timeout_s)
        self._pool: Pool | None = None

    def __repr__(self) -> str:
        return f"<MySQLClient {self.address} {'started' if self._pool is not None else 'not started'}>"

    async def start(self) -> None:
        if self._pool is not None:
            return
        c = self.config
        pool = Pool(minsize=c.pool_min, maxsize=c.pool_max, recycle_s=c.pool_recycle_s, **self._params)
        with converted(_convert):
            try:
                async with asyncio.timeout(c.connect_timeout_s + 1.0):
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
    async def _cursor(self, op: str | None, timeout_s: float | None) -> AsyncIterator[Cursor]:
        if self._pool is None:
            raise BackendUnavailable("mysql: client is not started", backend="mysql")
        pool = self._pool
        own = self.query_timeout_s if timeout_s is None else timeout_s
        limiter = self.limiter
        with self.calls.call(op) if op is not None else nullcontext(), converted(_convert):
            limit = budget.limit(own, "mysql")
            began = await limiter.acquire()
            try:
                async with asyncio.timeout(limit):
                    # Fail fast for a request (a budget); work without one waits up to its own timeout.
                    wait = limit if budget.deadline() is None else min(self.config.pool_wait_timeout_s, limit)
                    conn = await pool.acquire(wait)
                    try:
                        async with conn.cursor() as cur:
                            yield cur
                    except BaseException:
                        pool.release(conn, discard=True)   # its state is unknown: never hand it to another caller
                        raise
                    pool.release(conn)
            except TimeoutError as exc:
                if isinstance(exc, DriverError):
                    raise
                why = " (what was left of the request's budget)" if limit < own else ""
                raise BackendTimeout(f"mysql: no result within {limit:.3g} s{why}", backend="mysql",
                                     waited_s=limit) from None
            finally:
                limiter.release(began)
        turn = limiter.turn()   # the answer is in: the caller's work on it waits if this loop iteration ran long
        if turn is not None:
            await turn

    async def fetchone(self, sql: str, args: Sequence[Any] = (), *,
                       timeout_s: float | None = None) -> tuple[Any, ...] | None:
        async with self._cursor("fetchone", timeout_s) as cur:
            await cur.execute(sql, args)
            row: tuple[Any, ...] | None = await cur.fetchone()
            return row

    async def fetchall(self, sql: str, args: Sequence[Any] = (), *,
                       timeout_s: float | None = None) -> list[tuple[Any, ...]]:
        async with self._cursor("fetchall", timeout_s) as cur:
            await cur.execute(sql, args)
            return list(await cur.fetchall())

    async def execute(self, sql: str, args: Sequence[Any] = (), *, timeout_s: float | None = None) -> int:
        """Run a statement; the number of affected rows."""
        async with self._cursor("execute", timeout_s) as cur:
            return int(await cur.execute(sql, args))

    async def _ping(self) -> None:
        async with self._cursor(None, None) as cur:   # not a call of the application's: not observed
            await cur.execute("SELECT 1")
            await cur.fetchone()

    def stats(self) -> ClientStats:
        pool = self._pool
        if pool is None:
            return client_stats(self.calls, address=self.address, connected=False,
                                pool=(0, 0, self.config.pool_max), detail={"started": False})
        # Connected: started, and the last connection it tried to open did open (a pool that
        # closed connections after failed queries may hold none for a while, and is fine).
        return client_stats(self.calls, address=self.address, connected=pool.last_error is None,
                            pool=(pool.in_use, pool.idle, pool.maxsize),
                            detail={"started": True, "size": pool.size, "waiting": pool.waiting, "busy": pool.busy,
                                    "hold_s": round(pool.hold_s, 4), "limit": self.limiter.stats()})
