"""One pipelined, multiplexed Redis connection for short, non-blocking commands.

Rules of this file:
- ``PipeConnection`` is the I/O pump: an ``asyncio.Protocol`` around hiredis's C
  reply parser, built from ``drivers.kit``.  Requests arrive as ready RESP bytes
  (``drivers.redis.resp``); replies leave as hiredis values (bytes, int, None, lists).
- Its matching rule: Redis answers in the order it was asked and replies carry
  no id, so the pending commands are a FIFO of futures; each reply completes
  the future at the head.  Commands of one loop iteration leave in one write.
- A command that is cancelled or times out keeps its place in the FIFO.  Its
  reply, when it comes, pops that place, is counted in ``late_replies`` and
  dropped: it can never complete another caller's future (the bug class of
  redis-py's CVE-2023-28858), and the FIFO stays in step with the replies.
- Deadlines: every command has the connection's one timeout (the ``kit.Outbox``'s
  FIFO, swept every min(50 ms, timeout / 4)); those passed fail with ``BackendTimeout``.
- Its liveness rule (the outbox's stuck check): a connection that has not
  produced a single reply for ``stuck_after_s`` (2x the timeout, at least 1 s) while commands
  wait is dead and is closed.
- A lost connection, a protocol error or a reply with nothing pending fails every
  pending command with ``BackendUnavailable`` and drops the socket: no attempt
  to resynchronise.  A Redis error reply (``-ERR ...``) is ``BackendError`` with
  Redis's message, for that command only; the connection stays in step.
- States (``kit.State``): CONNECTING -> READY -> CLOSED; CLOSED is final.
- Never send blocking commands (BLPOP, WAIT, ...), pub/sub, MULTI/EXEC/WATCH or
  anything that changes the connection's state (SELECT, CLIENT REPLY) through
  here: they would stall or break the FIFO for every caller.  Those belong on
  a connection of their own (redis.asyncio's pool in ``drivers.redis.client``).
- ``PipelinedRedis`` owns at most one live connection; after a loss, the next
  command reconnects, one attempt (with a connect timeout) shared by all the
  callers that arrive meanwhile.  It never retries a command: the client
  (``drivers.redis.client``) decides that, by command.  Its counters
  (``counters``, a ``kit.PumpStats``) survive reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Awaitable
from typing import Any

import hiredis

from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError, ProtocolError
from drivers.kit import Closer, ErrorKinds, Outbox, PumpStats, State, connect, fail_all, set_nodelay, stuck_after
from drivers.redis.config import RedisConfig
from drivers.redis.resp import Arg, encode_command

_ReplyError = hiredis.ReplyError

ERRORS = ErrorKinds(functools.partial(BackendUnavailable, backend="redis"),
                    functools.partial(BackendTimeout, backend="redis"))


class PipeConnection(asyncio.Protocol):
    """One socket to Redis with many commands in flight.  Opened by ``PipelinedRedis``."""

    def __init__(self, where: str, timeout_s: float, *, counters: PumpStats | None = None,
                 stuck_after_s: float | None = None) -> None:
        self.where = where
        self.timeout_s = timeout_s
        self.stuck_after_s = stuck_after(timeout_s) if stuck_after_s is None else stuck_after_s
        self.counters = counters if counters is not None else PumpStats()
        loop = self._loop = asyncio.get_running_loop()
        self.life = Closer(f"redis {where}", loop)
        self._reader = hiredis.Reader()
        self._fifo: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._out: Outbox[asyncio.Future[Any]] = Outbox(
            loop, timeout_s, done=asyncio.Future.done, expire=self._expire, expire_own=self._expire_own,
            stuck_after_s=self.stuck_after_s, on_stuck=self._stuck)
        self._transport: asyncio.Transport | None = None

    @property
    def state(self) -> State:
        return self.life.state

    def __repr__(self) -> str:
        return f"<PipeConnection redis {self.where} {self.life.state.value} in_flight={len(self._fifo)}>"

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self._out.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)
        self.life.advance(State.READY)

    def data_received(self, data: bytes) -> None:
        reader, fifo = self._reader, self._fifo
        self._out.replied()
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if not fifo:
                    self._fail(ProtocolError(f"redis {self.where}: a reply came with no command pending; "
                                             "connection closed", backend="redis"))
                    return
                fut = fifo.popleft()
                if fut.done():  # cancelled or timed out: its place in the FIFO ends here
                    self.counters.late_replies += 1
                elif type(reply) is _ReplyError:
                    fut.set_exception(BackendError(f"redis: {reply}", backend="redis"))
                else:
                    fut.set_result(reply)
        except hiredis.ProtocolError as exc:
            self._fail(ProtocolError(f"redis {self.where}: protocol error ({exc}); connection closed",
                                     backend="redis"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._shutdown(BackendUnavailable(f"redis {self.where}: connection lost" + (f" ({exc})" if exc else ""),
                                          backend="redis"))

    # -- commands ----------------------------------------------------------------------------------

    def send(self, payload: bytes, timeout_s: float | None = None) -> asyncio.Future[Any]:
        """Queue one encoded command (``timeout_s``: a deadline shorter than the connection's); its reply's future."""
        if self.life.state is not State.READY:
            raise self._closed_error()
        fut = self._loop.create_future()
        self._fifo.append(fut)
        if timeout_s is None:
            self._out.request(payload, fut)
        else:
            self._out.request_own(payload, fut, timeout_s)
        self.counters.requests += 1
        return fut

    def _expire(self, fut: asyncio.Future[Any]) -> None:
        self._expire_own(fut, self.timeout_s)

    def _expire_own(self, fut: asyncio.Future[Any], timeout_s: float) -> None:
        self.counters.timeouts += 1
        fut.set_exception(BackendTimeout(f"redis {self.where}: no reply within {timeout_s:.3g} s",
                                         backend="redis", waited_s=timeout_s))

    def _stuck(self, quiet_s: float) -> None:
        self._fail(BackendUnavailable(f"redis {self.where}: no reply at all for {quiet_s:.1f} s; connection closed",
                                      backend="redis"))

    @property
    def in_flight(self) -> int:
        """Commands sent and not yet answered (cancelled and timed-out ones included)."""
        return len(self._fifo)

    # -- closing -----------------------------------------------------------------------------------

    def _closed_error(self) -> BackendUnavailable:
        reason = self.life.reason
        return BackendUnavailable(reason.message if reason else f"redis {self.where}: connection is closed",
                                  backend="redis")

    def _fail(self, reason: DriverError) -> None:
        """Fail everything pending with ``reason`` and drop the socket."""
        self._shutdown(reason)
        if self._transport is not None:
            self._transport.abort()

    def _shutdown(self, reason: DriverError) -> None:
        if not self.life.close(reason):
            return
        self._out.close()
        pending, self._fifo = self._fifo, collections.deque()
        fail_all(pending, self._closed_error)

    def abort(self) -> None:
        """Drop the socket now, failing whatever is pending."""
        self._fail(BackendUnavailable(f"redis {self.where}: connection closed by client", backend="redis"))

    async def aclose(self) -> None:
        """Close the socket, failing whatever is still pending, and wait until it is gone."""
        if self._transport is None:
            self.abort()
            return
        if self.life.reason is None:
            self.life.reason = BackendUnavailable(f"redis {self.where}: connection closed by client",
                                                  backend="redis")
        self._transport.close()
        await self.life.wait_closed()


class PipelinedRedis:
    """A reconnecting owner of one ``PipeConnection``: ``await execute("GET", key)``.

    It uses ``config``'s address, database, credentials, ``connect_timeout_s`` and
    ``socket_timeout_s`` (every command's reply deadline).
    """

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.where = config.address
        self.counters = PumpStats()
        self._setup: list[bytes] = []
        if config.password is not None:
            auth: list[Arg] = ["AUTH", config.password] if config.username is None else \
                ["AUTH", config.username, config.password]
            self._setup.append(encode_command(auth))
        if config.db:
            self._setup.append(encode_command(["SELECT", config.db]))
        self._conn: PipeConnection | None = None
        self._opening: asyncio.Task[PipeConnection] | None = None
        self._closed = False

    def __repr__(self) -> str:
        conn = self._conn
        state = conn.state.value if conn is not None else "not connected"
        return f"<PipelinedRedis {self.where} {'closed' if self._closed else state}>"

    @property
    def closed(self) -> bool:
        """True once ``aclose`` was called: every command then fails with BackendUnavailable."""
        return self._closed

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.state is State.READY

    @property
    def in_flight(self) -> int:
        """Commands sent on the live connection and not answered yet (cancelled ones included)."""
        conn = self._conn
        return conn.in_flight if conn is not None and conn.state is State.READY else 0

    async def execute(self, *args: Arg) -> Any:
        """Send one command; its reply (bytes, int, None or a list), or a DriverError."""
        return await self.call(encode_command(args))

    def call(self, payload: bytes, timeout_s: float | None = None) -> Awaitable[Any]:
        """Send one command already encoded with ``drivers.redis.resp``; await its reply.

        ``timeout_s``: a deadline shorter than the configured one (what is left of a budget).
        Connected, the command is queued at once and the reply's future returned (no
        coroutine of its own: this is every command's path); otherwise the awaitable
        reconnects first.
        """
        conn = self._conn
        if conn is not None and conn.life.state is State.READY:
            return conn.send(payload, timeout_s)
        return self._reconnect_and_call(payload, timeout_s)

    async def _reconnect_and_call(self, payload: bytes, timeout_s: float | None) -> Any:
        conn = await self._connected()
        return await conn.send(payload, timeout_s)

    async def _connected(self) -> PipeConnection:
        if self._closed:
            raise BackendUnavailable(f"redis {self.where}: client is closed", backend="redis")
        task = self._opening
        if task is None:
            task = self._opening = asyncio.ensure_future(self._open())
            task.add_done_callback(self._opened)
        # Shielded: one caller giving up does not cancel the attempt the others wait on.
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and self._closed and not (current is not None and current.cancelling()):
                # aclose stopped the attempt, this caller was not cancelled: a typed failure, not
                # a cancellation leaking into a caller that did not ask for one
                raise BackendUnavailable(f"redis {self.where}: client closed while connecting",
                                         backend="redis") from None
            raise

    def _opened(self, task: asyncio.Task[PipeConnection]) -> None:
        self._opening = None
        if not task.cancelled():
            task.exception()  # retrieved here, so nobody waiting is not a "never retrieved" warning

    async def _open(self) -> PipeConnection:
        c = self.config
        conn = PipeConnection(self.where, c.socket_timeout_s, counters=self.counters)
        await connect(conn, c.host, c.port, timeout_s=c.connect_timeout_s, errors=ERRORS,
                      where=f"redis {self.where}", setup=self._run_setup)
        self._conn = conn
        self.counters.connects += 1
        return conn

    async def _run_setup(self, conn: PipeConnection) -> None:
        for reply in [conn.send(payload) for payload in self._setup]:
            await reply

    async def aclose(self) -> None:
        """Close the connection (pending commands fail with BackendUnavailable); final and idempotent."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()
