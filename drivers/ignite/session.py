"""The request pipeline of one client: every request the API modules make goes through a ``Session``.

Rules of this file:
- ``request(op, target)`` starts a request and resolves, once, the transaction
  the current task is in through this session (``txcontext.active_tx``): its tx
  id goes into the cache header, its connection pins the request.
- Where a request goes, in this order: the transaction's connection; a
  connection the caller pinned (a cursor's pages, a resource close); the key's
  primary node (``route``, from ``affinity`` and the router's partition map);
  any live node, round robin (waiting up to ``connect_timeout_s`` for one).
- ``send`` pushes binary types the node has not been told yet, sends, and
  decodes the reply; a decoder that meets types it does not know has them
  fetched (``UnknownBinaryTypes``) and runs again: decoding never waits on the
  network itself.
- Retry in one place: a read (``retry=True``) whose connection was lost is sent
  again on another node under ``config.retry`` (``drivers.retry.Retrier``).
  Writes, pinned requests and anything inside a transaction never are.
- Inside a budget (``drivers.budget``) a request's deadline, and the wait for a
  live connection, is the smaller of its own and what is left of the budget.
- Every request crosses the client's boundary (``drivers.base.Calls``), named
  after its op code ("cache_get", "query_sql_fields" ...), and its latency goes
  into the session's histogram.
- The session calls nothing above it: the API modules (cache, cursors, cluster,
  tx) and the client call it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from drivers import budget
from drivers.base import Calls
from drivers.ignite.affinity import key_hash
from drivers.ignite.codec import BinaryTypeRegistry, UnknownBinaryTypes
from drivers.ignite.config import IgniteConfig
from drivers.ignite.connection import Connection, Reply
from drivers.ignite.errors import IgniteConnectionError, RemoteProtocolError
from drivers.ignite.protocol.constants import Feature, OpCode
from drivers.ignite.protocol.framing import new_request
from drivers.ignite.protocol.messages import (
    cache_header,
    decode_binary_type_reply,
    encode_binary_type,
    encode_get_binary_type,
)
from drivers.ignite.routing import Router
from drivers.ignite.txcontext import TxBinding, active_tx
from drivers.limits import Limiter
from drivers.retry import Retrier

Decoder = Callable[[memoryview, int, BinaryTypeRegistry], Any]

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_MAX_TYPE_ROUNDS = 8  # nested unknown types are fetched level by level
_OP_NAMES = {int(op): op.name.lower() for op in OpCode}
_new = object.__new__
_deadline = budget.deadline   # the hot path asks for the budget only when there is one


class Target:
    """A cache as requests address it: its id, its expiry policy, and its header outside transactions."""

    __slots__ = ("cache_id", "expiry", "prefix")

    def __init__(self, cache_id: int, expiry: tuple[int, int, int] | None = None) -> None:
        self.cache_id = cache_id
        self.expiry = expiry
        prefix = bytearray()
        cache_header(prefix, cache_id, 0, expiry, None)
        self.prefix = bytes(prefix)  # built once: most requests are outside a transaction


class Request:
    """One request being built: its op, its bytes, its transaction (resolved once) and where it must go.

    ``pinned``: the connection is the transaction's or the caller's: never elsewhere, never retried.
    Made by ``Session.request`` (no ``__init__``: one is made for every request).
    """

    __slots__ = ("buf", "conn", "op", "pinned", "tx")
    op: int
    buf: bytearray
    tx: TxBinding | None
    conn: Connection | None
    pinned: bool

    @property
    def tx_id(self) -> int | None:
        return self.tx.tx_id if self.tx is not None else None


class Session:
    """One client's request pipeline over its router (see the module's rules)."""

    def __init__(self, router: Router, registry: BinaryTypeRegistry, config: IgniteConfig, calls: Calls) -> None:
        self.router = router
        self.registry = registry
        self.config = config
        self.calls = calls
        self.closed = True
        self.retrier = Retrier(config.retry, (IgniteConnectionError,), give_up=lambda: self.closed)
        self.queries = Limiter("ignite", config.limit, wait_s=config.query_wait_timeout_s,  # SQL and scan queries
                               wait_unbudgeted_s=config.request_timeout_s)
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum_s = 0.0

    # -- building requests -------------------------------------------------------------------

    def request(self, op: int, target: Target | None = None, *, pin: Connection | None = None) -> Request:
        """A request for ``op`` (with ``target``'s cache header), bound to the task's transaction if any.

        ``pin`` sends it on that connection, outside any transaction (a cursor's pages).
        """
        req = _new(Request)
        req.op = op
        req.buf = buf = new_request(op)
        if pin is not None:
            req.tx, req.conn, req.pinned = None, pin, True
            if target is not None:
                buf += target.prefix
            return req
        req.tx = tx = active_tx(self)
        if tx is None:
            req.conn, req.pinned = None, False
            if target is not None:
                buf += target.prefix
        else:
            req.conn, req.pinned = tx.conn, True
            if target is not None:
                cache_header(buf, target.cache_id, 0, target.expiry, tx.tx_id)
        return req

    def route(self, req: Request, target: Target, key: Any, key_at: int) -> None:
        """Send ``req`` to the primary node of ``key`` (encoded in ``req.buf`` at ``key_at``) when it is known."""
        if req.conn is not None:
            return
        router = self.router
        pmap = router.map_for(target.cache_id) if router.partition_aware else None
        if pmap is None:
            return
        h = key_hash(key, pmap.key_fields, self.registry, req.buf, key_at)
        if h is not None:
            req.conn = router.node_conn(pmap.node_for_hash(h))

    def by_node(self, target: Target, keys: Sequence[Any]) -> dict[Connection | None, list[int]] | None:
        """Key indexes grouped by their primary node's connection; None when one request will do."""
        if len(keys) < 2 or active_tx(self) is not None:
            return None
        router = self.router
        pmap = router.map_for(target.cache_id)
        if pmap is None:
            return None
        groups: dict[Connection | None, list[int]] = {}
        registry = self.registry
        for i, key in enumerate(keys):
            h = key_hash(key, pmap.key_fields, registry)
            conn = router.node_conn(pmap.node_for_hash(h)) if h is not None else None
            groups.setdefault(conn, []).append(i)
        return groups if len(groups) > 1 else None

    # -- connections -------------------------------------------------------------------------

    async def any_connection(self) -> Connection:
        """A live connection to any node, waiting up to ``connect_timeout_s`` for a reconnect."""
        if self.closed:
            raise IgniteConnectionError("ignite: the client is closed (call connect() first)")
        conn = self.router.any()
        if conn is not None:
            return conn
        return await self.router.wait_any(budget.limit(self.config.connect_timeout_s, "ignite"))

    async def pin(self, req: Request) -> Connection:
        """Fix where ``req`` goes now (its transaction's connection, or any live one) and return it."""
        if req.conn is None:
            req.conn = await self.any_connection()
            req.pinned = True
        return req.conn

    # -- sending -----------------------------------------------------------------------------

    async def send(self, req: Request, decode: Decoder, *, timeout_s: float | None = None,
                   retry: bool = False) -> Any:
        """Send ``req`` and decode its reply with ``decode``; ``retry``: it is a read, safe to send again."""
        calls = self.calls
        began = time.perf_counter()
        calls.in_flight += 1
        try:
            if _deadline() is not None:
                own = self.config.request_timeout_s if timeout_s is None else timeout_s
                left = budget.limit(own, "ignite")
                if left < own:
                    timeout_s = left
            conn = req.conn
            if conn is None:
                if self.closed:
                    raise IgniteConnectionError("ignite: the client is closed (call connect() first)")
                conn = self.router.any() or await self.any_connection()
            if self.registry.has_pending:
                await self._push_types(conn)
            try:
                reply = await conn.request(req.buf, timeout_s)
            except IgniteConnectionError as exc:
                if not retry or req.pinned:
                    raise
                reply = await self.retrier.again(exc, self._resend, req.buf, timeout_s)
            elapsed = time.perf_counter() - began
            self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, elapsed)] += 1
            self.latency_sum_s += elapsed
            try:
                result = decode(reply.frame, reply.header.payload_offset, self.registry)
            except UnknownBinaryTypes as missing:
                result = await self._decode_with_types(reply, decode, conn, missing)
        except BaseException as exc:
            calls.end(_OP_NAMES.get(req.op, "op"), began, exc)
            raise
        # Calls.end, inlined: this is the hot path of every request.
        calls.in_flight -= 1
        calls.requests += 1
        if (observer := calls.observer) is not None:
            observer("ignite", _OP_NAMES.get(req.op, "op"), time.perf_counter() - began, None)
        return result

    def submit(self, req: Request, timeout_s: float | None = None) -> asyncio.Future[Reply]:
        """Queue ``req`` on its pinned connection now, without waiting: the future of its raw reply.

        For what must leave even if the caller is interrupted next (a transaction's
        start and end) or cannot wait (a cursor closed by the garbage collector).
        """
        assert req.conn is not None, "submit() needs a request pinned to a connection"
        _, fut = req.conn.send(req.buf, timeout_s)
        return fut

    async def _resend(self, buf: bytearray, timeout_s: float | None) -> Reply:
        conn = await self.any_connection()
        return await conn.request(buf, timeout_s)

    async def _decode_with_types(self, reply: Reply, decode: Decoder, conn: Connection,
                                 missing: UnknownBinaryTypes) -> Any:
        """Fetch the types the reply needs, then decode it again (nested types: level by level)."""
        frame, offset = reply.frame, reply.header.payload_offset
        for _ in range(_MAX_TYPE_ROUNDS):
            await self._fetch_types(conn, missing.type_ids)
            try:
                return decode(frame, offset, self.registry)
            except UnknownBinaryTypes as again:
                missing = again
        raise RemoteProtocolError("ignite: binary types nested too deeply to resolve")

    async def ping(self) -> None:
        """One round trip to any node (a heartbeat where the node has them), outside any transaction."""
        conn = await self.any_connection()
        op = OpCode.HEARTBEAT if conn.has(Feature.HEARTBEAT) else OpCode.CACHE_GET_NAMES
        own = self.config.request_timeout_s
        await conn.request(new_request(op), budget.limit(own, "ignite"))

    # -- binary types ------------------------------------------------------------------------

    async def _push_types(self, conn: Connection) -> None:
        for meta in self.registry.pending_types():
            buf = new_request(OpCode.PUT_BINARY_TYPE)
            encode_binary_type(buf, meta)
            await conn.request(buf)
            self.registry.mark_sent([meta.type_id])

    async def _fetch_types(self, conn: Connection, type_ids: Iterable[int]) -> None:
        if not conn.life.ready:
            conn = await self.any_connection()
        for type_id in type_ids:
            buf = new_request(OpCode.GET_BINARY_TYPE)
            encode_get_binary_type(buf, type_id)
            reply = await conn.request(buf)
            meta = decode_binary_type_reply(reply.frame, reply.header.payload_offset)
            if meta is None:
                raise RemoteProtocolError(f"ignite: the node sent an object of binary type {type_id}, "
                                          "but has no metadata for it")
            self.registry.register_type(meta, sent=True)
