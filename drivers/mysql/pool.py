"""A pool of asyncmy connections with O(1) acquire and release: no lock, no task per release.

The drivers' own pools (aiomysql's, asyncmy's) take an ``asyncio.Condition`` on every
acquire, scan every free connection on every acquire, and create a task on every
release to notify the condition; with hundreds of queries in flight that bookkeeping
costs more CPU than the queries' own protocol work.  Here:

- idle connections are a LIFO stack (the most recently used, whose socket and
  server thread are warm, go out first); a connection is checked when it is taken
  (closed, EOF or an error on its reader, older than ``recycle_s`` since its last use)
  and dropped if it fails the check;
- callers that find nothing idle and the pool full wait in a FIFO of futures; a
  released connection goes straight to the first waiter still waiting;
- a connection released in a transaction, closed, or flagged ``discard`` is closed
  and its slot freed: the first waiter then opens a new one;
- a waiter cancelled after it was handed a connection gives it back;
- a caller waits at most ``wait_s`` for a connection (``acquire(wait_s)``): then it
  gets ``BackendBusy`` with a ``retry_after_s`` from how long connections are held
  (an exponentially weighted mean of the hold times, scaled by the queue ahead).

``size`` counts connections open or being opened; it never exceeds ``maxsize``.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from typing import Any

import asyncmy
from asyncmy.connection import Connection

from drivers.errors import BackendBusy, BackendUnavailable, InterfaceError

_HOLD_WEIGHT = 0.1   # of the newest hold time in the mean


class Pool:
    def __init__(self, *, minsize: int, maxsize: int, recycle_s: float, **connect_kwargs: Any) -> None:
        if not 0 <= minsize <= maxsize or maxsize < 1:
            raise InterfaceError(f"mysql: need 0 <= pool_min <= pool_max and pool_max >= 1, not {minsize} and "
                                 f"{maxsize}", backend="mysql")
        self.minsize, self.maxsize = minsize, maxsize
        self.recycle_s = recycle_s
        self._connect_kwargs = connect_kwargs
        self._idle: list[Connection] = []
        self._waiters: collections.deque[asyncio.Future[Connection | None]] = collections.deque()
        self.size = 0
        self.in_use = 0
        self.closed = False
        self.last_error: BaseException | None = None   # the last failure to open a connection, until one opens
        self.hold_s = 0.0          # mean time a connection is held (exponentially weighted)
        self.busy = 0              # callers turned away after waiting wait_s
        self._lent: dict[int, float] = {}   # id(connection) -> when it was lent

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def waiting(self) -> int:
        return sum(1 for fut in self._waiters if not fut.done())

    async def fill(self) -> None:
        """Open ``minsize`` connections (the first failure is raised)."""
        while self.size < self.minsize:
            self.size += 1
            try:
                conn = await self._connect()
            except BaseException:
                self.size -= 1
                raise
            self._idle.append(conn)

    async def _connect(self) -> Connection:
        try:
            try:
                conn = await asyncmy.connect(**self._connect_kwargs)
            except RuntimeError as exc:
                # asyncmy 0.2 sets keep-alive on the socket after connecting; when the server (or
                # something between) reset the connection at once, the transport has no socket any
                # more and asyncmy raises RuntimeError("Transport does not expose socket instance").
                if "socket" not in str(exc):
                    raise
                raise ConnectionResetError(f"the connection was reset while opening ({exc})") from exc
        except Exception as exc:
            self.last_error = exc
            raise
        self.last_error = None
        return conn

    def _usable(self, conn: Connection, now: float) -> bool:
        # _stream_broken: the transport is closing or the server closed its side (asyncmy's own check)
        if not conn.connected or conn._stream_broken:  # type: ignore[attr-defined]
            return False
        return not (self.recycle_s > 0 and now - conn.last_usage > self.recycle_s)

    async def acquire(self, wait_s: float | None = None) -> Connection:
        """A connection; with ``wait_s``, ``BackendBusy`` if none is free within that many seconds."""
        if self.closed:
            raise BackendUnavailable("mysql: the pool is closed", backend="mysql")
        loop = asyncio.get_running_loop()
        until = None if wait_s is None else loop.time() + wait_s
        while True:
            idle = self._idle
            while idle:
                conn = idle.pop()
                if self._usable(conn, loop.time()):
                    return self._lend(conn)
                conn.close()
                self.size -= 1
            if self.size < self.maxsize:
                self.size += 1
                try:
                    conn = await self._connect()
                except BaseException:
                    self.size -= 1
                    self._free_slot()
                    raise
                return self._lend(conn)
            fut: asyncio.Future[Connection | None] = loop.create_future()
            self._waiters.append(fut)
            try:
                if until is None:
                    handed = await fut
                else:
                    async with asyncio.timeout_at(until):
                        handed = await fut
            except (asyncio.CancelledError, TimeoutError) as exc:
                if fut.done() and not fut.cancelled():   # handed something just before the cancel
                    late = fut.result()
                    if late is not None:
                        self._give(late)
                    else:
                        self._free_slot()
                if isinstance(exc, TimeoutError):
                    self.busy += 1
                    raise BackendBusy(f"mysql: all {self.maxsize} pool connections stayed busy for {wait_s:.3g} s "
                                      f"({self.waiting} callers waiting)", backend="mysql",
                                      retry_after_s=self.retry_after_s()) from None
                raise
            if handed is not None:
                return self._lend(handed)
            # None: a slot was freed; go round and open a connection in it

    def _lend(self, conn: Connection) -> Connection:
        self.in_use += 1
        self._lent[id(conn)] = time.monotonic()
        return conn

    def retry_after_s(self) -> float:
        """When a caller turned away now could expect a free connection: whole seconds, 1 to 60."""
        ahead = self.waiting / max(1, self.maxsize)
        return float(min(60, max(1, math.ceil(self.hold_s * (1 + ahead)))))

    def release(self, conn: Connection, *, discard: bool = False) -> None:
        """Give a connection back; ``discard`` (or a closed one, or one in a transaction) closes it."""
        self.in_use -= 1
        lent = self._lent.pop(id(conn), None)
        if lent is not None:
            self.hold_s += _HOLD_WEIGHT * (time.monotonic() - lent - self.hold_s)
        if discard or self.closed or not conn.connected or conn.get_transaction_status():
            conn.close()
            self.size -= 1
            self._free_slot()
            return
        self._give(conn)

    def _give(self, conn: Connection) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        if self.closed:
            conn.close()
            self.size -= 1
            return
        self._idle.append(conn)

    def _free_slot(self) -> None:
        """A slot opened up: the first waiter may open a connection in it."""
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def close(self) -> None:
        """Close the idle connections; those in use are closed when released.  Waiters fail."""
        self.closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
            self.size -= 1
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(BackendUnavailable("mysql: the pool closed while waiting for a connection",
                                                     backend="mysql"))
