"""One pipelined, multiplexed Redis connection for short, non-blocking commands.

Rules of this file:
- ``PipeConnection`` is the I/O pump: an ``asyncio.Protocol`` around hiredis's C
  reply parser.  Requests arrive as ready RESP bytes (``drivers.resp``); replies
  leave as hiredis values (bytes, int, None, lists).
- Many commands are in flight at once.  Redis answers in the order it was asked
  and replies carry no id, so the pending commands are a FIFO of futures: each
  reply completes the future at the head.  Commands queued in one loop
  iteration leave in one ``transport.write``; TCP_NODELAY is on.
- A command that is cancelled or times out keeps its place in the FIFO.  Its
  reply, when it comes, pops that place, is counted in ``late_replies`` and
  dropped: it can never complete another caller's future (the bug class of
  redis-py's CVE-2023-28858), and the FIFO stays in step with the replies.
- Deadlines: every command has the connection's one timeout, so deadlines are in
  send order; a sweep every ``min(50 ms, timeout / 4)`` fails those passed with
  ``BackendTimeout``.  A connection that has not produced a single reply for
  ``stuck_after`` (2x the timeout) while commands wait is dead: it is closed.
- A lost connection, a protocol error or a reply with nothing pending fails every
  pending command with ``BackendUnavailable`` and drops the socket: no attempt
  to resynchronise.  A Redis error reply (``-ERR ...``) is ``BackendError`` with
  Redis's message, for that command only; the connection stays in step.
- States: CONNECTING -> READY -> CLOSED; CLOSED is final.
- Never send blocking commands (BLPOP, WAIT, ...), pub/sub, MULTI/EXEC/WATCH or
  anything that changes the connection's state (SELECT, CLIENT REPLY) through
  here: they would stall or break the FIFO for every caller.  Those belong on
  a connection of their own (redis.asyncio's pool in ``drivers.redis``).
- ``PipelinedRedis`` owns at most one live connection; after a loss, the next
  command reconnects, one attempt (with a connect timeout) shared by all the
  callers that arrive meanwhile.  It never retries a command: ``drivers.redis``
  decides that, by command.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import socket
from typing import Any, cast

import hiredis

from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError
from drivers.resp import Arg, encode_command

_ReplyError = hiredis.ReplyError


class State(enum.Enum):
    CONNECTING = "connecting"
    READY = "ready"
    CLOSED = "closed"


class PipeConnection(asyncio.Protocol):
    """One socket to Redis with many commands in flight.  Opened by ``PipelinedRedis``."""

    def __init__(self, where: str, timeout: float, stuck_after: float | None = None) -> None:
        self.where = where
        self.timeout = timeout
        self.stuck_after = 2 * timeout if stuck_after is None else stuck_after
        self.state = State.CONNECTING
        self.late_replies = 0
        self.timeouts = 0
        self.close_reason: DriverError | None = None
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._fifo: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._deadlines: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = min(0.05, timeout / 4)
        self._replied = False        # a reply arrived since the last sweep
        self._quiet_since = 0.0      # when the sweep last saw progress (or nothing pending)
        self._closed = self._loop.create_future()

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.state = State.READY

    def data_received(self, data: bytes) -> None:
        reader, fifo = self._reader, self._fifo
        self._replied = True
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                if not fifo:
                    self._fail(BackendUnavailable(f"redis {self.where}: a reply came with no command pending; "
                                                  "connection closed", backend="redis"))
                    return
                fut = fifo.popleft()
                if fut.done():  # cancelled or timed out: its place in the FIFO ends here
                    self.late_replies += 1
                elif type(reply) is _ReplyError:
                    fut.set_exception(BackendError(f"redis: {reply}", backend="redis"))
                else:
                    fut.set_result(reply)
        except hiredis.ProtocolError as exc:
            self._fail(BackendUnavailable(f"redis {self.where}: protocol error ({exc}); connection closed",
                                          backend="redis"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._shutdown(BackendUnavailable(f"redis {self.where}: connection lost" + (f" ({exc})" if exc else ""),
                                          backend="redis"))

    # -- commands ----------------------------------------------------------------------------------

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        """Queue one encoded command; the future of its reply."""
        if self.state is not State.READY:
            raise self._closed_error()
        loop = self._loop
        fut = loop.create_future()
        self._fifo.append(fut)
        self._deadlines.append((loop.time() + self.timeout, fut))
        self._out.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        if self._sweeper is None:
            self._quiet_since = loop.time()
            self._sweeper = loop.call_later(self._sweep_every, self._sweep)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if self._transport is None or self.state is not State.READY or not out:
            return
        self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _sweep(self) -> None:
        """Fail commands whose deadline passed; close the connection if Redis stopped answering."""
        self._sweeper = None
        if self.state is State.CLOSED:
            return
        now = self._loop.time()
        deadlines = self._deadlines
        while deadlines and (deadlines[0][0] <= now or deadlines[0][1].done()):
            _, fut = deadlines.popleft()
            if not fut.done():
                self.timeouts += 1
                fut.set_exception(BackendTimeout(f"redis {self.where}: no reply within {self.timeout:g} s",
                                                 backend="redis"))
        if self._replied or not self._fifo:
            self._replied = False
            self._quiet_since = now
        elif now - self._quiet_since >= self.stuck_after:
            self._fail(BackendUnavailable(f"redis {self.where}: no reply at all for {now - self._quiet_since:.1f} s; "
                                          "connection closed", backend="redis"))
            return
        if self._fifo or deadlines:
            self._sweeper = self._loop.call_later(self._sweep_every, self._sweep)

    @property
    def in_flight(self) -> int:
        """Commands sent and not yet answered (cancelled and timed-out ones included)."""
        return len(self._fifo)

    # -- closing -----------------------------------------------------------------------------------

    def _closed_error(self) -> BackendUnavailable:
        why = self.close_reason.message if self.close_reason else f"redis {self.where}: connection is closed"
        return BackendUnavailable(why, backend="redis")

    def _fail(self, reason: DriverError) -> None:
        """Fail everything pending with ``reason`` and drop the socket."""
        self.close_reason = reason
        self._shutdown(reason)
        if self._transport is not None:
            self._transport.abort()

    def _shutdown(self, reason: DriverError) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        if self.close_reason is None:
            self.close_reason = reason
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        pending, self._fifo = self._fifo, collections.deque()
        self._deadlines.clear()
        self._out.clear()
        message = self.close_reason.message
        for fut in pending:
            if not fut.done():
                fut.set_exception(BackendUnavailable(message, backend="redis"))
        if not self._closed.done():
            self._closed.set_result(None)

    def abort(self) -> None:
        """Drop the socket now, failing whatever is pending."""
        self._fail(BackendUnavailable(f"redis {self.where}: connection closed by client", backend="redis"))

    async def aclose(self) -> None:
        """Close the socket, failing whatever is still pending, and wait until it is gone."""
        if self._transport is None:
            self.abort()
            return
        if self.close_reason is None:
            self.close_reason = BackendUnavailable(f"redis {self.where}: connection closed by client",
                                                   backend="redis")
        self._transport.close()
        await asyncio.shield(self._closed)


class PipelinedRedis:
    """A reconnecting owner of one ``PipeConnection``: ``await execute("GET", key)``."""

    def __init__(self, host: str, port: int, *, db: int = 0, password: str | None = None,
                 username: str | None = None, connect_timeout: float = 2.0, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.where = f"{host}:{port}"
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._setup: list[bytes] = []
        if password is not None:
            auth: list[Arg] = ["AUTH", password] if username is None else ["AUTH", username, password]
            self._setup.append(encode_command(auth))
        if db:
            self._setup.append(encode_command(["SELECT", db]))
        self._conn: PipeConnection | None = None
        self._opening: asyncio.Task[PipeConnection] | None = None
        self._closed = False
        self.connects = 0
        self._retired_late = 0
        self._retired_timeouts = 0

    @property
    def closed(self) -> bool:
        """True once ``aclose`` was called: every command then fails with BackendUnavailable."""
        return self._closed

    async def execute(self, *args: Arg) -> Any:
        """Send one command; its reply (bytes, int, None or a list), or a DriverError."""
        return await self.call(encode_command(args))

    async def call(self, payload: bytes) -> Any:
        """Send one command already encoded with ``drivers.resp``; its reply."""
        conn = self._conn
        if conn is None or conn.state is not State.READY:
            conn = await self._connected()
        return await conn.send(payload)

    async def _connected(self) -> PipeConnection:
        if self._closed:
            raise BackendUnavailable(f"redis {self.where}: client is closed", backend="redis")
        task = self._opening
        if task is None:
            task = self._opening = asyncio.ensure_future(self._open())
            task.add_done_callback(self._opened)
        # Shielded: one caller giving up does not cancel the attempt the others wait on.
        return await asyncio.shield(task)

    def _opened(self, task: asyncio.Task[PipeConnection]) -> None:
        self._opening = None
        if not task.cancelled():
            task.exception()  # retrieved here, so nobody waiting is not a "never retrieved" warning

    async def _open(self) -> PipeConnection:
        conn = PipeConnection(self.where, self.timeout)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(lambda: conn, self.host, self.port)
                replies = [conn.send(payload) for payload in self._setup]
                for reply in replies:
                    await reply
        except DriverError:
            conn.abort()
            raise
        except TimeoutError:
            conn.abort()
            raise BackendTimeout(f"redis {self.where}: no connection within {self.connect_timeout:g} s",
                                 backend="redis") from None
        except OSError as exc:
            conn.abort()
            raise BackendUnavailable(f"redis {self.where}: {exc.strerror or exc}", backend="redis") from exc
        except BaseException:
            conn.abort()
            raise
        old = self._conn
        if old is not None:
            self._retired_late += old.late_replies
            self._retired_timeouts += old.timeouts
        self._conn = conn
        self.connects += 1
        return conn

    async def aclose(self) -> None:
        """Close the connection (pending commands fail with BackendUnavailable); final and idempotent."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
        conn, self._conn = self._conn, None
        if conn is not None:
            self._retired_late += conn.late_replies
            self._retired_timeouts += conn.timeouts
            await conn.aclose()

    def stats(self) -> dict[str, Any]:
        conn = self._conn
        live = conn is not None and conn.state is State.READY
        return {
            "pipelined_connected": live,
            "pipelined_in_flight": conn.in_flight if conn is not None and live else 0,
            "late_replies": self._retired_late + (conn.late_replies if conn is not None else 0),
            "pipelined_timeouts": self._retired_timeouts + (conn.timeouts if conn is not None else 0),
            "reconnects": max(0, self.connects - 1),
        }
