"""The Ignite thin client: connection management, caches, SQL, binary types.

Usage::

    async with Client([("127.0.0.1", 10800)]) as client:
        cache = await client.get_or_create_cache("people")
        await cache.put(1, "Ada")
        async with client.sql("SELECT name FROM person WHERE id > ?", query_args=[10]) as rows:
            async for row in rows:
                ...

Connections: the client talks to the first node of ``nodes`` that answers;
when that connection is lost, the next request reconnects (trying the nodes in
order) with one attempt shared by all waiting callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from drivers.base import LifecycleMixin
from drivers.ignite.cache import Cache
from drivers.ignite.codec import BinaryTypeRegistry, UnknownBinaryTypes, read_value
from drivers.ignite.codec.hashing import string_hash
from drivers.ignite.connection import Connection, State, new_request
from drivers.ignite.cursors import SqlFieldsCursor
from drivers.ignite.errors import HandshakeError, IgniteConnectionError, IgniteTimeout, RemoteProtocolError
from drivers.ignite.protocol.cache_config import CacheConfig, encode_cache_config
from drivers.ignite.protocol.constants import Feature, OpCode, ProtocolVersion
from drivers.ignite.protocol.messages import (
    decode_binary_type_reply,
    decode_int,
    encode_binary_type,
    encode_get_binary_type,
)
from drivers.ignite.protocol.wire import write_string
from drivers.ignite.txcontext import active_tx

Decoder = Callable[[memoryview, int, BinaryTypeRegistry], Any]

_MAX_TYPE_ROUNDS = 8  # nested unknown types are fetched level by level


class Client(LifecycleMixin):
    """An asyncio client for Apache Ignite 2.x nodes (thin-client protocol up to 1.7.0)."""

    name = "ignite"

    def __init__(self, nodes: Iterable[tuple[str, int]] | None = None, *, username: str | None = None,
                 password: str | None = None, timeout: float = 10.0, connect_timeout: float = 5.0,
                 ssl: Any = None, max_frame: int = 256 << 20, compact_footer: bool = True,
                 protocol_version: tuple[int, int, int] = (1, 7, 0)) -> None:
        self.nodes: list[tuple[str, int]] = [(str(h), int(p)) for h, p in (nodes or [("127.0.0.1", 10800)])]
        if not self.nodes:
            raise ValueError("Client needs at least one (host, port) node address")
        self.username = username
        self.password = password
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.ssl = ssl
        self.max_frame = max_frame
        self.protocol_version_wanted = ProtocolVersion(*protocol_version)
        self.registry = BinaryTypeRegistry(compact_footer=compact_footer)
        self._conn: Connection | None = None
        self._connecting: asyncio.Task[Connection] | None = None
        self._closed = False
        self._reconnects = 0
        self._late_replies_closed = 0

    @property
    def address(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.nodes)

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection (to the first node that answers)."""
        self._closed = False
        await self._connection()

    start = connect

    async def aclose(self) -> None:
        """Close the connection; pending requests fail with ``IgniteConnectionError``.  Idempotent."""
        self._closed = True
        task, self._connecting = self._connecting, None
        if task is not None:
            task.cancel()
            try:
                await task
            except BaseException:
                pass
        conn, self._conn = self._conn, None
        if conn is not None:
            self._late_replies_closed += conn.late_replies
            await conn.aclose()

    close = aclose

    async def _ping(self) -> None:
        conn = await self._connection()
        op = OpCode.HEARTBEAT if conn.has(Feature.HEARTBEAT) else OpCode.CACHE_GET_NAMES
        await self._roundtrip(new_request(op), _ignore, conn=conn)

    def stats(self) -> dict[str, Any]:
        conn = self._conn
        return {
            "address": self.address,
            "connected": conn is not None and conn.state is State.READY,
            "node": f"{conn.host}:{conn.port}" if conn else None,
            "protocol": self.protocol_version_text if conn else None,
            "in_flight": conn.in_flight if conn else 0,
            "requests": conn.requests_sent if conn else 0,
            "late_replies": self._late_replies_closed + (conn.late_replies if conn else 0),
            "reconnects": self._reconnects,
        }

    @property
    def protocol_version(self) -> ProtocolVersion:
        return self._conn.version if self._conn is not None else ProtocolVersion(1, 7, 0)

    @property
    def protocol_version_text(self) -> str:
        return ".".join(map(str, self.protocol_version))

    # -- connections -------------------------------------------------------------------------

    async def _connection(self) -> Connection:
        conn = self._conn
        if conn is not None and conn.state is State.READY:
            return conn
        if self._closed:
            raise IgniteConnectionError("ignite: the client is closed")
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open_any())
        task = self._connecting
        try:
            return await asyncio.shield(task)
        finally:
            if task.done() and self._connecting is task:
                self._connecting = None

    async def _open_any(self) -> Connection:
        errors: list[str] = []
        for host, port in self.nodes:
            try:
                conn = await Connection.open(host, port, username=self.username, password=self.password,
                                             connect_timeout=self.connect_timeout, request_timeout=self.timeout,
                                             ssl=self.ssl, max_frame=self.max_frame,
                                             version=self.protocol_version_wanted)
            except HandshakeError:
                raise  # the node answered and said no: another node would say the same
            except (IgniteConnectionError, IgniteTimeout) as exc:
                errors.append(str(exc))
                continue
            if self._conn is not None:
                self._reconnects += 1
                self._late_replies_closed += self._conn.late_replies
            self._conn = conn
            return conn
        raise IgniteConnectionError("ignite: no node answered: " + "; ".join(errors))

    def _tx_id(self) -> int | None:
        tx = active_tx()
        return tx.tx_id if tx is not None else None

    # -- requests ----------------------------------------------------------------------------

    async def _roundtrip(self, buf: bytearray, decode: Decoder, *, conn: Connection | None = None,
                         timeout: float | None = None) -> Any:
        """Send a request built with ``new_request`` and decode its reply payload."""
        if conn is None:
            tx = active_tx()
            if tx is not None:
                conn = tx.conn  # a transaction's requests go to its own connection, never elsewhere
            else:
                conn = self._conn
                if conn is None or conn.state is not State.READY:
                    conn = await self._connection()
        registry = self.registry
        if registry.has_pending:
            await self._push_types(conn)
        reply = await conn.request(buf, self.timeout if timeout is None else timeout)
        frame, offset = reply.frame, reply.header.payload_offset
        for _ in range(_MAX_TYPE_ROUNDS):
            try:
                return decode(frame, offset, registry)
            except UnknownBinaryTypes as missing:
                await self._fetch_types(conn, missing.type_ids)
        raise RemoteProtocolError("ignite: binary types nested too deeply to resolve")

    async def _push_types(self, conn: Connection) -> None:
        for meta in self.registry.pending_types():
            buf = new_request(OpCode.PUT_BINARY_TYPE)
            encode_binary_type(buf, meta)
            await conn.request(buf)
            self.registry.mark_sent([meta.type_id])

    async def _fetch_types(self, conn: Connection, type_ids: Iterable[int]) -> None:
        for type_id in type_ids:
            buf = new_request(OpCode.GET_BINARY_TYPE)
            encode_get_binary_type(buf, type_id)
            reply = await conn.request(buf)
            meta = decode_binary_type_reply(reply.frame, reply.header.payload_offset)
            if meta is None:
                raise RemoteProtocolError(f"ignite: the node sent an object of binary type {type_id}, "
                                          "but has no metadata for it")
            self.registry.register_type(meta, sent=True)

    # -- caches ------------------------------------------------------------------------------

    def cache(self, name: str) -> Cache:
        """A handle on an existing cache, without I/O."""
        return Cache(self, name)

    async def get_cache(self, settings: str | CacheConfig) -> Cache:
        """A handle on an existing cache (no I/O; async for pyignite compatibility)."""
        return Cache(self, settings if isinstance(settings, str) else settings.name)

    async def create_cache(self, settings: str | CacheConfig) -> Cache:
        """Create a cache; ``CacheExists`` if it already exists."""
        return await self._make_cache(settings, OpCode.CACHE_CREATE_WITH_NAME,
                                      OpCode.CACHE_CREATE_WITH_CONFIGURATION)

    async def get_or_create_cache(self, settings: str | CacheConfig) -> Cache:
        return await self._make_cache(settings, OpCode.CACHE_GET_OR_CREATE_WITH_NAME,
                                      OpCode.CACHE_GET_OR_CREATE_WITH_CONFIGURATION)

    async def _make_cache(self, settings: str | CacheConfig, by_name: int, by_config: int) -> Cache:
        if isinstance(settings, str):
            buf = new_request(by_name)
            write_string(buf, settings)
            name = settings
        elif isinstance(settings, CacheConfig):
            conn = await self._connection()
            buf = new_request(by_config)
            encode_cache_config(buf, settings, conn.version, self.registry)
            name = settings.name
        else:
            raise TypeError(f"a cache is named by a str or a CacheConfig, not {type(settings).__name__}")
        await self._roundtrip(buf, _ignore)
        return Cache(self, name)

    async def get_cache_names(self) -> list[str]:
        def decode(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> list[str]:
            count = decode_int(frame, offset)
            names, pos = [], offset + 4
            for _ in range(count):
                name, pos = read_value(frame, pos, registry)
                names.append(name)
            return names

        result: list[str] = await self._roundtrip(new_request(OpCode.CACHE_GET_NAMES), decode)
        return result

    # -- SQL ---------------------------------------------------------------------------------

    def sql(self, query: str, query_args: Sequence[Any] | None = None, *, page_size: int = 1024,
            include_field_names: bool = False, schema: str | None = "PUBLIC", max_rows: int = -1,
            statement_type: int = 0, distributed_joins: bool = False, local: bool = False,
            replicated_only: bool = False, enforce_join_order: bool = False, collocated: bool = False,
            lazy: bool = False, timeout: float = 0, cache: Cache | str | None = None) -> SqlFieldsCursor:
        """Run a SQL fields query (SELECT, DML or DDL); an async iterator of rows (lists).

        ``timeout`` is the server-side query timeout in seconds (0: none).  The
        cursor fetches further pages as it is iterated; use it with ``async with``.
        """
        cache_id = 0 if cache is None else cache.cache_id if isinstance(cache, Cache) else string_hash(cache)
        options = dict(page_size=page_size, include_field_names=include_field_names, schema=schema,
                       max_rows=max_rows, statement_type=statement_type, distributed_joins=distributed_joins,
                       local=local, replicated_only=replicated_only, enforce_join_order=enforce_join_order,
                       collocated=collocated, lazy=lazy, timeout_ms=int(timeout * 1000))
        return SqlFieldsCursor(self, cache_id, query, list(query_args or ()), options)

    # -- binary types ------------------------------------------------------------------------

    def register_binary_type(self, cls: type, type_name: str | None = None, *,
                             fields: dict[str, Any] | None = None, affinity_key_field: str | None = None) -> None:
        """Map a dataclass (or any class with annotations) to an Ignite complex-object type.

        The node is told the type's schema before the first request that carries one.
        """
        self.registry.register_class(cls, type_name, fields=fields, affinity_key_field=affinity_key_field)


def _ignore(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> None:
    return None

