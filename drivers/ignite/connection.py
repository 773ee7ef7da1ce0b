"""One TCP connection to one Ignite node: the I/O pump around the sans-I/O protocol.

Rules of this file:
- ``Connection`` is an ``asyncio.Protocol``; bytes arrive in ``data_received``,
  are split into frames by ``FrameReader`` and each reply completes the future
  waiting under its request id.  Nothing here packs a value: requests arrive
  as ready payload bytes, replies leave as ``Reply`` (header + frame).
- Many requests are in flight at once.  Frames queued in the same loop
  iteration leave in one ``transport.write``.
- A request that times out or is cancelled leaves the pending table at once;
  its late reply is counted in ``late_replies`` and dropped, never delivered
  to another caller.
- Any desync (bad frame, unknown reply) fails every pending request with the
  protocol error and closes the socket: no attempt to resynchronise.
- States: CONNECTING -> HANDSHAKING -> READY -> CLOSED; CLOSED is final.
- Heartbeats (feature HEARTBEAT): right after the handshake the node's idle
  timeout is asked once (op 2, not waited for); a timer then sends op 1 whenever
  no request left for one interval (a third of that timeout, or
  ``heartbeat_interval``), at most one in flight.  A failed heartbeat (or op 2)
  closes the connection with ``IgniteConnectionError``.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import functools
import heapq
import socket
import struct
from collections.abc import Callable
from typing import Any, NamedTuple, cast

from drivers.ignite.errors import (
    AuthenticationError,
    HandshakeError,
    IgniteConnectionError,
    IgniteError,
    IgniteTimeout,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    ServerError,
    server_error,
)
from drivers.ignite.protocol.constants import (
    CLIENT_FEATURES,
    Feature,
    OpCode,
    ProtocolVersion,
    ResponseFlag,
    features_intersection,
    has_feature,
)
from drivers.ignite.protocol.framing import FrameReader, ResponseHeader, begin_request, parse_response
from drivers.ignite.protocol.handshake import (
    HandshakeAccepted,
    HandshakeRejected,
    decode_handshake_reply,
    encode_handshake,
)

LATEST = ProtocolVersion(1, 7, 0)
SUPPORTED = frozenset({ProtocolVersion(1, v, 0) for v in range(8)})
_AUTH_FAILED = 2000
_NOTIFICATION = int(ResponseFlag.NOTIFICATION)  # plain ints: IntFlag arithmetic is slow
_TOPOLOGY_CHANGED = int(ResponseFlag.AFFINITY_TOPOLOGY_CHANGED)
_LENGTH = struct.Struct("<i")
_REQUEST_ID = struct.Struct("<q")  # at offset 6, after the length and the op code
_I64 = struct.Struct("<q")


class State(enum.Enum):
    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    READY = "ready"
    CLOSED = "closed"


class Reply(NamedTuple):
    """A successful reply: its header and the whole frame (payload at ``header.payload_offset``)."""

    header: ResponseHeader
    frame: memoryview


def new_request(op_code: int) -> bytearray:
    """A request buffer with its header reserved; append the payload, then ``Connection.send``."""
    return begin_request(op_code, 0)


class Connection(asyncio.Protocol):
    """A handshaken connection to one node.  Build with ``await Connection.open(...)``."""

    def __init__(self, host: str, port: int, *, request_timeout: float, max_frame: int = 256 << 20,
                 on_topology: Callable[[tuple[int, int]], None] | None = None,
                 on_lost: Callable[[Connection, BaseException | None], None] | None = None,
                 heartbeat_interval: float | None = None) -> None:
        self.host = host
        self.port = port
        self.request_timeout = request_timeout
        self.state = State.CONNECTING
        self.version = LATEST
        self.features = b""
        self.node_id: Any = None
        self.late_replies = 0
        self.requests_sent = 0
        self.close_reason: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._reader = FrameReader(max_frame)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._deadlines: list[tuple[float, int]] = []   # requests with their own timeout
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._fifo: collections.deque[tuple[float, int]] = collections.deque()  # default timeout
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_every = min(0.05, request_timeout / 4)
        self._next_id = 0
        self._out: list[bytes | bytearray] = []
        self._flush_scheduled = False
        self._handshake: asyncio.Future[HandshakeAccepted | HandshakeRejected] | None = None
        self._closed = self._loop.create_future()
        self._on_topology = on_topology
        self._on_lost = on_lost
        self.heartbeat_interval = heartbeat_interval  # None: a third of the node's idle timeout; 0: off
        self.idle_timeout: float | None = None  # the node's, in seconds (0: none), once asked
        self.heartbeats_sent = 0
        self._heartbeat_every = 0.0
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._heartbeat_reply: asyncio.Future[Reply] | None = None  # op 1 or 2 in flight
        self._heartbeat_seen = -1  # requests_sent at the last tick

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    async def open(cls, host: str, port: int, *, username: str | None = None, password: str | None = None,
                   connect_timeout: float = 5.0, request_timeout: float = 10.0,
                   ssl: Any = None, version: ProtocolVersion = LATEST, **kwargs: Any) -> Connection:
        """Connect and handshake at ``version``, falling back to an older one the node proposes."""
        if version not in SUPPORTED:
            raise LocalProtocolError(f"protocol version {_text(version)} is not one this client speaks "
                                     f"(1.0.0 to {_text(LATEST)})")
        while True:
            conn = cls(host, port, request_timeout=request_timeout, **kwargs)
            conn.version = version
            try:
                reply = await conn._connect_and_handshake(username, password, connect_timeout, ssl)
            except BaseException:
                conn.abort()
                raise
            if isinstance(reply, HandshakeAccepted):
                conn._accept(reply)
                conn._start_heartbeats(connect_timeout)
                return conn
            conn.abort()
            proposed = ProtocolVersion(*reply.server_version)
            if reply.code == _AUTH_FAILED:
                raise AuthenticationError(f"ignite {host}:{port}: authentication failed: {reply.message}",
                                          server_version=(proposed[0], proposed[1], proposed[2]), code=reply.code)
            if proposed in SUPPORTED and proposed < version:
                version = proposed
                continue
            raise HandshakeError(
                f"ignite {host}:{port}: handshake refused at protocol {_text(version)}: {reply.message}",
                server_version=(proposed[0], proposed[1], proposed[2]), code=reply.code)

    async def _connect_and_handshake(self, username: str | None, password: str | None,
                                     timeout: float, ssl: Any) -> HandshakeAccepted | HandshakeRejected:
        where = f"ignite {self.host}:{self.port}"
        try:
            async with asyncio.timeout(timeout):
                await self._loop.create_connection(lambda: self, self.host, self.port, ssl=ssl)
                self.state = State.HANDSHAKING
                self._handshake = self._loop.create_future()
                features = CLIENT_FEATURES if self.version >= ProtocolVersion(1, 7, 0) else None
                assert self._transport is not None
                self._transport.write(encode_handshake(self.version, features, username, password))
                return await self._handshake
        except TimeoutError:
            raise IgniteTimeout(f"{where}: no connection and handshake within {timeout:g} s") from None
        except ProtocolError as exc:
            raise IgniteConnectionError(
                f"{where}: the reply to the handshake is not Ignite's ({exc}); is this a thin-client port?"
            ) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc) or type(exc).__name__
            if ssl is not None and self.state is State.CONNECTING and not isinstance(exc, ConnectionRefusedError):
                reason += " during the TLS handshake (does this port serve TLS?)"
            raise IgniteConnectionError(f"{where}: {reason}") from exc

    def _accept(self, reply: HandshakeAccepted) -> None:
        self.features = features_intersection(CLIENT_FEATURES, reply.features) if reply.features else b""
        self.node_id = reply.node_id
        self.state = State.READY

    def has(self, feature: Feature) -> bool:
        return has_feature(self.features, feature)

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
            if self.state is State.HANDSHAKING:
                if not frames:
                    return
                first, frames = frames[0], frames[1:]
                reply = decode_handshake_reply(first, self.version)
                if self._handshake is not None and not self._handshake.done():
                    self._handshake.set_result(reply)
                if frames:
                    raise RemoteProtocolError("the node sent frames before the handshake completed")
                return
            for frame in frames:
                self._dispatch(frame)
        except ProtocolError as exc:
            self._fail(exc)

    def _dispatch(self, frame: memoryview) -> None:
        header = parse_response(frame, self.version)
        flags = header.flags
        if flags & _NOTIFICATION:
            return  # no listeners yet: notifications are only produced for ops this client never sends
        if flags & _TOPOLOGY_CHANGED and self._on_topology and header.topology:
            self._on_topology(header.topology)
        fut = self._pending.pop(header.request_id, None)
        if fut is None or fut.done():
            self.late_replies += 1
            return
        if header.status:
            fut.set_exception(server_error(header.status, header.error_message or "(no message)"))
        else:
            fut.set_result(Reply(header, frame))

    def connection_lost(self, exc: Exception | None) -> None:
        where = f"ignite {self.host}:{self.port}"
        reason = self.close_reason or IgniteConnectionError(
            f"{where}: connection lost" + (f" ({exc})" if exc else ""))
        self._shutdown(reason)
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(IgniteConnectionError(
                f"{where}: the node closed the connection during the handshake"
                " (is this a thin-client port, and does it expect TLS?)"))

    # -- requests ----------------------------------------------------------------------------------

    def send(self, buf: bytearray, timeout: float | None = None) -> tuple[int, asyncio.Future[Reply]]:
        """Queue a request built with ``new_request``; its id and the future of its reply."""
        if self.state is not State.READY:
            raise self._closed_error()
        self._next_id += 1
        rid = self._next_id
        _LENGTH.pack_into(buf, 0, len(buf) - 4)
        _REQUEST_ID.pack_into(buf, 6, rid)
        loop = self._loop
        fut: asyncio.Future[Reply] = loop.create_future()
        self._pending[rid] = fut
        self._out.append(buf)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        if timeout is None:
            # The common case: one timeout for all, so deadlines arrive in order and a
            # FIFO checked by a coarse periodic sweep costs O(1) per request.
            self._fifo.append((loop.time() + self.request_timeout, rid))
            if self._sweeper is None:
                self._sweeper = loop.call_later(self._sweep_every, self._sweep)
        else:
            deadline = loop.time() + timeout
            heapq.heappush(self._deadlines, (deadline, rid))
            if self._timer is None or deadline < self._timer_at:
                self._arm(deadline)
        self.requests_sent += 1
        return rid, fut

    async def request(self, buf: bytearray, timeout: float | None = None) -> Reply:
        """Send a request and wait for its reply (server errors raise ``ServerError``).

        Cancelled, the request leaves the pending table at once: its reply, if
        it still comes, is counted in ``late_replies`` and dropped.
        """
        rid, fut = self.send(buf, timeout)
        try:
            return await fut
        except asyncio.CancelledError:
            self._pending.pop(rid, None)
            raise

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if self._transport is None or self.state is State.CLOSED or not out:
            return
        self._transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._expire)

    def _timeout(self, rid: int) -> None:
        fut = self._pending.pop(rid, None)
        if fut is not None and not fut.done():
            fut.set_exception(IgniteTimeout(
                f"ignite {self.host}:{self.port}: no reply within the request deadline"))

    def _expire(self) -> None:
        """Fail the requests with their own timeouts whose deadline passed (a heap, exact)."""
        self._timer = None
        now = self._loop.time()
        heap, pending = self._deadlines, self._pending
        while heap and (heap[0][0] <= now or heap[0][1] not in pending):
            _, rid = heapq.heappop(heap)
            if rid in pending:
                self._timeout(rid)
        if heap:
            self._arm(heap[0][0])

    def _sweep(self) -> None:
        """Fail default-timeout requests whose deadline passed; forget answered ones."""
        self._sweeper = None
        now = self._loop.time()
        fifo, pending = self._fifo, self._pending
        while fifo and (fifo[0][0] <= now or fifo[0][1] not in pending):
            _, rid = fifo.popleft()
            if rid in pending:
                self._timeout(rid)
        if fifo and self.state is not State.CLOSED:
            self._sweeper = self._loop.call_later(self._sweep_every, self._sweep)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # -- heartbeats --------------------------------------------------------------------------------

    def _start_heartbeats(self, timeout: float) -> None:
        """Ask the node's idle timeout (op 2); its reply arms the heartbeat timer.

        The reply is not waited for: the connection is usable at once.  No answer
        within ``timeout`` closes the connection, as a failed heartbeat does.
        """
        if self.heartbeat_interval == 0 or not self.has(Feature.HEARTBEAT):
            return
        _, reply = self.send(begin_request(OpCode.GET_IDLE_TIMEOUT, 0), timeout)
        self._heartbeat_reply = reply
        reply.add_done_callback(functools.partial(self._heartbeat_answered, "the idle-timeout query",
                                                  self._arm_heartbeats))

    def _arm_heartbeats(self, reply: Reply) -> None:
        self.idle_timeout = _I64.unpack_from(reply.frame, reply.header.payload_offset)[0] / 1000
        every = self.heartbeat_interval if self.heartbeat_interval is not None else self.idle_timeout / 3
        if every > 0 and self.state is State.READY:
            self._heartbeat_every = every
            self._heartbeat_seen = self.requests_sent
            self._heartbeat_timer = self._loop.call_later(every, self._heartbeat_tick)

    def _heartbeat_tick(self) -> None:
        """Send a heartbeat if no request left since the last tick and none is in flight."""
        self._heartbeat_timer = None
        if self.state is not State.READY:
            return
        idle = self.requests_sent == self._heartbeat_seen
        in_flight = self._heartbeat_reply is not None and not self._heartbeat_reply.done()
        if idle and not in_flight:
            timeout = min(self.request_timeout, max(self._heartbeat_every, 1.0))
            _, reply = self.send(begin_request(OpCode.HEARTBEAT, 0), timeout)
            self.heartbeats_sent += 1
            self._heartbeat_reply = reply
            reply.add_done_callback(functools.partial(self._heartbeat_answered, "a heartbeat", None))
        self._heartbeat_seen = self.requests_sent  # a heartbeat is not activity of its own
        self._heartbeat_timer = self._loop.call_later(self._heartbeat_every, self._heartbeat_tick)

    def _heartbeat_answered(self, what: str, then: Callable[[Reply], None] | None,
                            reply: asyncio.Future[Reply]) -> None:
        """The reply to op 1 or 2 arrived, or its deadline passed: no answer closes the connection."""
        if reply.cancelled():
            return
        exc = reply.exception()
        if isinstance(exc, ServerError):
            return  # the node answered (and the connection lives); it just will not do this
        if exc is not None:
            if self.state is not State.CLOSED and isinstance(exc, IgniteError):
                error = IgniteConnectionError(f"ignite {self.host}:{self.port}: no answer to {what} "
                                              f"({exc}); connection closed")
                error.__cause__ = exc
                self._fail(error)
            return
        if then is not None:
            then(reply.result())

    def _stop_heartbeats(self) -> None:
        if self._heartbeat_timer is not None:
            self._heartbeat_timer.cancel()
            self._heartbeat_timer = None

    # -- closing -----------------------------------------------------------------------------------

    def _closed_error(self) -> IgniteError:
        if isinstance(self.close_reason, IgniteError):
            return type(self.close_reason)(str(self.close_reason))
        return IgniteConnectionError(f"ignite {self.host}:{self.port}: connection is closed")

    def _fail(self, exc: IgniteError) -> None:
        """A desync: fail everything with ``exc`` and drop the socket."""
        self.close_reason = exc
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(exc)
        self._shutdown(exc)
        if self._transport is not None:
            self._transport.abort()

    def _shutdown(self, reason: BaseException) -> None:
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        if self.close_reason is None:
            self.close_reason = reason
        for handle in (self._timer, self._sweeper):
            if handle is not None:
                handle.cancel()
        self._timer = self._sweeper = None
        self._stop_heartbeats()
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        self._fifo.clear()
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(reason if isinstance(reason, IgniteError) else IgniteConnectionError(str(reason)))
        if not self._closed.done():
            self._closed.set_result(None)
        if self._on_lost is not None:
            self._on_lost(self, reason)

    def abort(self) -> None:
        """Drop the socket now, failing whatever is pending."""
        self._shutdown(IgniteConnectionError(f"ignite {self.host}:{self.port}: connection closed by client"))
        if self._transport is not None:
            self._transport.abort()

    async def aclose(self) -> None:
        """Close the socket, failing whatever is still pending, and wait until it is gone."""
        if self._transport is None:
            self._shutdown(IgniteConnectionError(f"ignite {self.host}:{self.port}: closed"))
            return
        self.close_reason = self.close_reason or IgniteConnectionError(
            f"ignite {self.host}:{self.port}: connection closed by client")
        self._transport.close()
        await asyncio.shield(self._closed)


def _text(v: ProtocolVersion) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"
