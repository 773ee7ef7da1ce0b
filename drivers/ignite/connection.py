"""One TCP connection to one Ignite node: the I/O pump around the sans-I/O protocol.

Rules of this file:
- ``Connection`` is an ``asyncio.Protocol`` built from ``drivers.kit`` (connect
  ladder, states, the outbox: write batching and deadlines).  Bytes arrive in ``data_received``,
  are split into frames by ``FrameReader``; nothing here packs a value: requests
  arrive as payload bytes built with ``protocol.framing.new_request``, replies
  leave as ``Reply`` (header + frame).
- Its matching rule: many requests are in flight at once, each under its own
  request id; a reply completes the future waiting under its id (a table).
  Frames queued in the same loop iteration leave in one ``transport.write``.
- A request that times out or is cancelled leaves the table at once; its late
  reply is counted in ``late_replies`` and dropped, never delivered to another
  caller.  The counters (a ``kit.PumpStats`` owned by the node) survive reconnects.
- Any desync (bad frame, unknown reply) fails every pending request with the
  protocol error and closes the socket: no attempt to resynchronise.
- States (``kit.State``): CONNECTING -> HANDSHAKING -> READY -> CLOSED; CLOSED is final.
- Its liveness rules.  A connection that produced no reply at all for twice the
  request timeout (at least 1 s) while requests wait (a blackholed or half-open node: each
  request fails on its deadline, but none will ever be answered again) is
  closed, and the router opens a new one (the outbox's stuck check).
  Heartbeats (feature HEARTBEAT): right after the handshake
  the node's idle timeout is asked once (op 2, not waited for); a timer then sends
  op 1 whenever no request left for one interval (a third of that timeout, or
  ``heartbeat_interval_s``), at most one in flight.  A failed heartbeat (or op 2)
  closes the connection with ``IgniteConnectionError``.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from drivers.errors import DriverError
from drivers.ignite.config import IgniteConfig
from drivers.ignite.errors import (
    AuthenticationError,
    HandshakeError,
    IgniteConnectionError,
    IgniteError,
    IgniteTimeout,
    LocalProtocolError,
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
from drivers.ignite.protocol.framing import FrameReader, ResponseHeader, new_request, parse_response, stamp_request
from drivers.ignite.protocol.handshake import (
    HandshakeAccepted,
    HandshakeRejected,
    decode_handshake_reply,
    encode_handshake,
)
from drivers.kit import Closer, ErrorKinds, Outbox, PumpStats, State, connect, fail_all, set_nodelay, stuck_after

LATEST = ProtocolVersion(1, 7, 0)
SUPPORTED = frozenset({ProtocolVersion(1, v, 0) for v in range(8)})
_AUTH_FAILED = 2000
_NOTIFICATION = int(ResponseFlag.NOTIFICATION)  # plain ints: IntFlag arithmetic is slow
_TOPOLOGY_CHANGED = int(ResponseFlag.AFFINITY_TOPOLOGY_CHANGED)
_I64 = struct.Struct("<q")
ERRORS = ErrorKinds(IgniteConnectionError, IgniteTimeout)

TopologyCallback = Callable[[tuple[int, int]], None]
LostCallback = Callable[["Connection", BaseException | None], None]


class Reply(NamedTuple):
    """A successful reply: its header and the whole frame (payload at ``header.payload_offset``)."""

    header: ResponseHeader
    frame: memoryview


class Connection(asyncio.Protocol):
    """A handshaken connection to one node.  Build with ``await Connection.open(...)``."""

    def __init__(self, host: str, port: int, config: IgniteConfig, *, counters: PumpStats | None = None,
                 on_topology: TopologyCallback | None = None, on_lost: LostCallback | None = None) -> None:
        self.host = host
        self.port = port
        self.where = f"ignite {host}:{port}"
        self.request_timeout_s = config.request_timeout_s
        self.version = LATEST
        self.features = b""
        self.node_id: Any = None
        self.counters = counters if counters is not None else PumpStats()
        loop = self._loop = asyncio.get_running_loop()
        self.life = Closer(self.where, loop)
        self._reader = FrameReader(config.max_frame)
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._out: Outbox[int] = Outbox(loop, config.request_timeout_s, alive=self._pending.__contains__,
                                        expire=self._timeout, expire_own=self._timeout_own,
                                        stuck_after_s=stuck_after(config.request_timeout_s), on_stuck=self._stuck)
        self._next_id = 0
        self._handshake: asyncio.Future[HandshakeAccepted | HandshakeRejected] | None = None
        self._on_topology = on_topology
        self._on_lost = on_lost
        self.heartbeat_interval_s = config.heartbeat_interval_s  # None: a third of the node's idle timeout; 0: off
        self.idle_timeout_s: float | None = None  # the node's, in seconds (0: none), once asked
        self.heartbeats_sent = 0
        self.heartbeat_every_s = 0.0  # the interval in use (0: no heartbeats)
        self._heartbeat_timer: asyncio.TimerHandle | None = None
        self._heartbeat_reply: asyncio.Future[Reply] | None = None  # op 1 or 2 in flight
        self._heartbeat_seen = -1  # requests sent at the last tick

    @property
    def state(self) -> State:
        return self.life.state

    def __repr__(self) -> str:
        return (f"<Connection {self.where} {self.life.state.value} protocol {_text(self.version)} "
                f"in_flight={len(self._pending)}>")

    # -- opening ---------------------------------------------------------------------------------

    @classmethod
    async def open(cls, host: str, port: int, config: IgniteConfig, *, ssl: Any = None,
                   counters: PumpStats | None = None, on_topology: TopologyCallback | None = None,
                   on_lost: LostCallback | None = None) -> Connection:
        """Connect and handshake at ``config.protocol_version``, falling back to an older one the node proposes."""
        version = ProtocolVersion(*config.protocol_version)
        if version not in SUPPORTED:
            raise LocalProtocolError(f"protocol version {_text(version)} is not one this client speaks "
                                     f"(1.0.0 to {_text(LATEST)})")
        where = f"ignite {host}:{port}"
        while True:
            conn = cls(host, port, config, counters=counters, on_topology=on_topology, on_lost=on_lost)
            conn.version = version
            await connect(conn, host, port, timeout_s=config.connect_timeout_s, errors=ERRORS, where=where,
                          ssl=ssl, what="connection and handshake",
                          setup=functools.partial(Connection._shake_hands, username=config.username,
                                                  password=config.password))
            reply = conn._handshake.result() if conn._handshake is not None else None
            if isinstance(reply, HandshakeAccepted):
                conn._accept(reply)
                conn._start_heartbeats(config.connect_timeout_s)
                conn.counters.connects += 1
                return conn
            conn.abort()
            assert isinstance(reply, HandshakeRejected)
            proposed = ProtocolVersion(*reply.server_version)
            if reply.code == _AUTH_FAILED:
                raise AuthenticationError(f"{where}: authentication failed: {reply.message}",
                                          server_version=(proposed[0], proposed[1], proposed[2]), code=reply.code)
            if proposed in SUPPORTED and proposed < version:
                version = proposed
                continue
            raise HandshakeError(
                f"{where}: handshake refused at protocol {_text(version)}: {reply.message}",
                server_version=(proposed[0], proposed[1], proposed[2]), code=reply.code)

    async def _shake_hands(self, *, username: str | None, password: str | None) -> None:
        """Send the handshake and wait for the node's answer (accepted or rejected, kept in ``_handshake``)."""
        self.life.advance(State.HANDSHAKING)
        self._handshake = self._loop.create_future()
        features = CLIENT_FEATURES if self.version >= ProtocolVersion(1, 7, 0) else None
        assert self._transport is not None
        self._transport.write(encode_handshake(self.version, features, username, password))
        try:
            await self._handshake
        except RemoteProtocolError as exc:
            raise IgniteConnectionError(
                f"{self.where}: the reply to the handshake is not Ignite's ({exc}); is this a thin-client port?"
            ) from exc

    def _accept(self, reply: HandshakeAccepted) -> None:
        self.features = features_intersection(CLIENT_FEATURES, reply.features) if reply.features else b""
        self.node_id = reply.node_id
        self.life.advance(State.READY)

    def has(self, feature: Feature) -> bool:
        return has_feature(self.features, feature)

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = self._out.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
            if self.life.state is State.HANDSHAKING:
                if not frames:
                    return
                first, frames = frames[0], frames[1:]
                reply = decode_handshake_reply(first, self.version)
                if self._handshake is not None and not self._handshake.done():
                    self._handshake.set_result(reply)
                if frames:
                    raise RemoteProtocolError("the node sent frames before the handshake completed")
                return
            if frames:
                self._out.replied()
            for frame in frames:
                self._dispatch(frame)
        except RemoteProtocolError as exc:
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
            self.counters.late_replies += 1
            return
        if header.status:
            fut.set_exception(server_error(header.status, header.error_message or "(no message)"))
        else:
            fut.set_result(Reply(header, frame))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.life.reason or IgniteConnectionError(
            f"{self.where}: connection lost" + (f" ({exc})" if exc else ""))
        self._shutdown(reason)
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(IgniteConnectionError(
                f"{self.where}: the node closed the connection during the handshake"
                " (is this a thin-client port, and does it expect TLS?)"))

    # -- requests ----------------------------------------------------------------------------------

    def send(self, buf: bytearray, timeout_s: float | None = None) -> tuple[int, asyncio.Future[Reply]]:
        """Queue a request built with ``new_request``; its id and the future of its reply."""
        if self.life.state is not State.READY:
            raise self._closed_error()
        self._next_id += 1
        rid = self._next_id
        stamp_request(buf, rid)
        fut: asyncio.Future[Reply] = self._loop.create_future()
        self._pending[rid] = fut
        if timeout_s is None:
            self._out.request(buf, rid)
        else:
            self._out.request_own(buf, rid, timeout_s)
        self.counters.requests += 1
        return rid, fut

    async def request(self, buf: bytearray, timeout_s: float | None = None) -> Reply:
        """Send a request and wait for its reply (server errors raise ``ServerError``).

        Cancelled, the request leaves the pending table at once: its reply, if
        it still comes, is counted in ``late_replies`` and dropped.
        """
        rid, fut = self.send(buf, timeout_s)
        try:
            return await fut
        except asyncio.CancelledError:
            self._pending.pop(rid, None)
            raise

    def _timeout(self, rid: int) -> None:
        self._timeout_own(rid, self.request_timeout_s)

    def _timeout_own(self, rid: int, timeout_s: float) -> None:
        fut = self._pending.pop(rid, None)
        if fut is not None and not fut.done():
            self.counters.timeouts += 1
            fut.set_exception(IgniteTimeout(f"{self.where}: no reply within {timeout_s:.3g} s", waited_s=timeout_s))

    def _stuck(self, quiet_s: float) -> None:
        self._fail(IgniteConnectionError(f"{self.where}: no reply at all for {quiet_s:.1f} s while requests "
                                         "waited; connection closed"))

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # -- heartbeats --------------------------------------------------------------------------------

    def _start_heartbeats(self, timeout_s: float) -> None:
        """Ask the node's idle timeout (op 2); its reply arms the heartbeat timer.

        The reply is not waited for: the connection is usable at once.  No answer
        within ``timeout_s`` closes the connection, as a failed heartbeat does.
        """
        if self.heartbeat_interval_s == 0 or not self.has(Feature.HEARTBEAT):
            return
        _, reply = self.send(new_request(OpCode.GET_IDLE_TIMEOUT), timeout_s)
        self._heartbeat_reply = reply
        reply.add_done_callback(functools.partial(self._heartbeat_answered, "the idle-timeout query",
                                                  self._arm_heartbeats))

    def _arm_heartbeats(self, reply: Reply) -> None:
        self.idle_timeout_s = _I64.unpack_from(reply.frame, reply.header.payload_offset)[0] / 1000
        every = self.heartbeat_interval_s if self.heartbeat_interval_s is not None else self.idle_timeout_s / 3
        if every > 0 and self.life.state is State.READY:
            self.heartbeat_every_s = every
            self._heartbeat_seen = self.counters.requests
            self._heartbeat_timer = self._loop.call_later(every, self._heartbeat_tick)

    def _heartbeat_tick(self) -> None:
        """Send a heartbeat if no request left since the last tick and none is in flight."""
        self._heartbeat_timer = None
        if self.life.state is not State.READY:
            return
        idle = self.counters.requests == self._heartbeat_seen
        in_flight = self._heartbeat_reply is not None and not self._heartbeat_reply.done()
        if idle and not in_flight:
            timeout_s = min(self.request_timeout_s, max(self.heartbeat_every_s, 1.0))
            _, reply = self.send(new_request(OpCode.HEARTBEAT), timeout_s)
            self.heartbeats_sent += 1
            self._heartbeat_reply = reply
            reply.add_done_callback(functools.partial(self._heartbeat_answered, "a heartbeat", None))
        self._heartbeat_seen = self.counters.requests  # a heartbeat is not activity of its own
        self._heartbeat_timer = self._loop.call_later(self.heartbeat_every_s, self._heartbeat_tick)

    def _heartbeat_answered(self, what: str, then: Callable[[Reply], None] | None,
                            reply: asyncio.Future[Reply]) -> None:
        """The reply to op 1 or 2 arrived, or its deadline passed: no answer closes the connection."""
        if reply.cancelled():
            return
        exc = reply.exception()
        if isinstance(exc, ServerError):
            return  # the node answered (and the connection lives); it just will not do this
        if exc is not None:
            if self.life.state is not State.CLOSED and isinstance(exc, IgniteError):
                error = IgniteConnectionError(f"{self.where}: no answer to {what} ({exc}); connection closed")
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
        reason = self.life.reason
        if isinstance(reason, IgniteError):
            return type(reason)(str(reason))
        return IgniteConnectionError(f"{self.where}: connection is closed")

    def _fail(self, exc: IgniteError) -> None:
        """A desync or a dead peer: fail everything with ``exc`` and drop the socket."""
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(exc)
        self._shutdown(exc)
        if self._transport is not None:
            self._transport.abort()

    def _shutdown(self, reason: DriverError) -> None:
        if not self.life.close(reason):
            return
        self._out.close()
        self._stop_heartbeats()
        pending, self._pending = self._pending, {}
        fail_all(pending.values(), self._closed_error)
        if self._on_lost is not None:
            self._on_lost(self, self.life.reason)

    def abort(self) -> None:
        """Drop the socket now, failing whatever is pending."""
        self._shutdown(IgniteConnectionError(f"{self.where}: connection closed by client"))
        if self._transport is not None:
            self._transport.abort()

    async def aclose(self) -> None:
        """Close the socket, failing whatever is still pending, and wait until it is gone."""
        if self._transport is None:
            self._shutdown(IgniteConnectionError(f"{self.where}: closed"))
            return
        if self.life.reason is None:
            self.life.reason = IgniteConnectionError(f"{self.where}: connection closed by client")
        self._transport.close()
        await self.life.wait_closed()


def _text(v: ProtocolVersion) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"
