"""The Ignite thin client: connections through the router, caches, SQL, binary types.

Usage::

    async with Client([("127.0.0.1", 10800), ("127.0.0.1", 10801)]) as client:
        cache = await client.get_or_create_cache("people")
        await cache.put(1, "Ada")
        async with client.sql("SELECT name FROM person WHERE id > ?", query_args=[10]) as rows:
            async for row in rows:
                ...

The client keeps one connection per node (``routing.Router``).  Single-key
requests go to the key's primary node when the cache's partition map is
known; batches are split by primary node and sent in parallel.  A read that
failed because its connection was lost is retried on another node under
``retry_policy``; writes never are.
"""

from __future__ import annotations

import asyncio
import bisect
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from drivers.base import LifecycleMixin
from drivers.ignite.cache import Cache
from drivers.ignite.cluster import ClusterState, get_cluster_state, set_cluster_state
from drivers.ignite.codec import BinaryObject, BinaryTypeRegistry, UnknownBinaryTypes, hints, read_value, write_value
from drivers.ignite.codec.hashing import java_hash, string_hash
from drivers.ignite.codec.typecodes import TypeCode
from drivers.ignite.connection import Connection, new_request
from drivers.ignite.cursors import SqlFieldsCursor
from drivers.ignite.errors import IgniteConnectionError, LocalProtocolError, RemoteProtocolError
from drivers.ignite.protocol.cache_config import CacheConfig, encode_cache_config
from drivers.ignite.protocol.constants import Feature, OpCode, ProtocolVersion
from drivers.ignite.protocol.messages import (
    decode_binary_type_reply,
    decode_int,
    encode_binary_type,
    encode_get_binary_type,
)
from drivers.ignite.protocol.wire import write_string
from drivers.ignite.routing import Backoff, RetryPolicy, Router
from drivers.ignite.tx import Transaction, TransactionConcurrency, TransactionIsolation
from drivers.ignite.txcontext import active_tx

Decoder = Callable[[memoryview, int, BinaryTypeRegistry], Any]

_MAX_TYPE_ROUNDS = 8  # nested unknown types are fetched level by level
_OBJECT_HEADER = struct.Struct("<ii")  # type id, hash: at +4 in a complex object
# Java types whose hash is the value itself (affinity-key fields declared with hints).
_HINT_BY_CODE: dict[int, type] = {TypeCode.INT: hints.Int, TypeCode.SHORT: hints.Short, TypeCode.BYTE: hints.Byte,
                 TypeCode.CHAR: hints.Char, TypeCode.FLOAT: hints.Float}
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Client(LifecycleMixin):
    """An asyncio client for Apache Ignite 2.x clusters (thin-client protocol up to 1.7.0)."""

    name = "ignite"

    def __init__(self, nodes: Iterable[tuple[str, int]] | None = None, *, username: str | None = None,
                 password: str | None = None, timeout: float = 10.0, connect_timeout: float = 5.0,
                 ssl: Any = None, max_frame: int = 256 << 20, compact_footer: bool = True,
                 protocol_version: tuple[int, int, int] = (1, 7, 0), partition_aware: bool = True,
                 retry_policy: RetryPolicy | None = None, reconnect_backoff: Backoff | None = None,
                 heartbeat_interval: float | None = None) -> None:
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
        self.retry_policy = retry_policy or RetryPolicy()
        self.heartbeat_interval = heartbeat_interval  # None: a third of the node's idle timeout; 0: off
        self.registry = BinaryTypeRegistry(compact_footer=compact_footer)
        self._router = Router(self.nodes, self._open_connection, partition_aware=partition_aware,
                              backoff=reconnect_backoff)
        self._closed = True
        self._version = self.protocol_version_wanted
        self._latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._retries = 0

    @property
    def address(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.nodes)

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to the nodes (at least one must answer; the others are retried in the background)."""
        self._closed = False
        try:
            await self._router.start()
        except BaseException:
            self._closed = True
            await self._router.aclose()
            raise

    start = connect

    async def aclose(self) -> None:
        """Close every connection; pending requests fail with ``IgniteConnectionError``.  Idempotent."""
        self._closed = True
        await self._router.aclose()

    close = aclose

    async def _open_connection(self, host: str, port: int) -> Connection:
        conn = await Connection.open(host, port, username=self.username, password=self.password,
                                     connect_timeout=self.connect_timeout, request_timeout=self.timeout,
                                     ssl=self.ssl, max_frame=self.max_frame, version=self.protocol_version_wanted,
                                     on_lost=self._router.lost, on_topology=self._router.topology_changed,
                                     heartbeat_interval=self.heartbeat_interval)
        self._version = conn.version
        return conn

    async def _ping(self) -> None:
        conn = await self._connection()
        op = OpCode.HEARTBEAT if conn.has(Feature.HEARTBEAT) else OpCode.CACHE_GET_NAMES
        await self._roundtrip(new_request(op), _ignore, conn=conn)

    def stats(self) -> dict[str, Any]:
        """Plain data for metrics: per-node connections, latency histogram, maps, retries."""
        nodes = self._router.stats()
        return {
            "address": self.address,
            "connected": any(n["state"] == "ready" for n in nodes),
            "protocol": self.protocol_version_text,
            "nodes": nodes,
            "in_flight": sum(n["in_flight"] for n in nodes),
            "requests": sum(n["requests"] for n in nodes),
            "late_replies": sum(n["late_replies"] for n in nodes),
            "reconnects": sum(n["reconnects"] for n in nodes),
            "retries": self._retries,
            "partition_map_version": list(self._router.map_version),
            "partition_map_refreshes": self._router.map_refreshes,
            "latency_buckets": list(LATENCY_BUCKETS),
            "latency_counts": list(self._latency),
            "latency_sum_s": self._latency_sum,
        }

    @property
    def protocol_version(self) -> ProtocolVersion:
        return self._version

    @property
    def protocol_version_text(self) -> str:
        return ".".join(map(str, self._version))

    # -- connections -------------------------------------------------------------------------

    async def _connection(self) -> Connection:
        """Any live connection, waiting up to ``connect_timeout`` for a reconnect."""
        if self._closed:
            raise IgniteConnectionError("ignite: the client is closed (call connect() first)")
        conn = self._router.any()
        if conn is not None:
            return conn
        return await self._router.wait_any(self.connect_timeout)

    def _tx_id(self) -> int | None:
        tx = active_tx(self)
        return tx.tx_id if tx is not None else None

    async def _request_connection(self) -> Connection:
        """The connection for a request without a key: the transaction's, else any live one."""
        tx = active_tx(self)
        return tx.conn if tx is not None else await self._connection()

    # -- requests ----------------------------------------------------------------------------

    def _primary(self, cache_id: int, key: Any, buf: bytearray, key_at: int) -> Connection | None:
        """The connection of the primary node of ``key`` (written in ``buf`` at ``key_at``)."""
        return self._router.primary(cache_id, lambda fields: self.key_hash(key, fields, buf, key_at))

    def key_hash(self, key: Any, key_fields: dict[int, int], buf: bytes | bytearray | None = None,
                 at: int = 0) -> int | None:
        """The hash the cluster places ``key`` by (affinity-key field aware); None if unknown."""
        if buf is None or at >= len(buf) or buf[at] != TypeCode.COMPLEX_OBJ:
            if isinstance(key, BinaryObject) or hasattr(key, "__dataclass_fields__"):
                scratch = bytearray()
                write_value(scratch, key, self.registry)
                return self.key_hash(key, key_fields, scratch, 0)
            try:
                return java_hash(key)
            except LocalProtocolError:
                return None
        type_id, stored = _OBJECT_HEADER.unpack_from(buf, at + 4)
        field = key_fields.get(type_id)
        if field is None:
            return int(stored)
        return self._affinity_field_hash(key, type_id, field)

    def _affinity_field_hash(self, key: Any, type_id: int, field_id: int) -> int | None:
        names = self.registry.field_names(type_id) or {}
        name = names.get(field_id)
        if name is None:
            return None
        value = key.fields.get(name) if isinstance(key, BinaryObject) else getattr(key, name, None)
        meta = self.registry.get_type(type_id)
        code = next((f.type_code for f in meta.fields if f.field_id == field_id), None) if meta else None
        hint = _HINT_BY_CODE.get(code) if code is not None else None
        try:
            return java_hash(value, hint)
        except LocalProtocolError:
            return None

    async def _roundtrip(self, buf: bytearray, decode: Decoder, *, conn: Connection | None = None,
                         timeout: float | None = None, retry: bool = False) -> Any:
        """Send a request built with ``new_request`` and decode its reply payload.

        ``retry``: the request is an idempotent read; if its connection is lost it is
        sent again on another node under ``retry_policy``.  Never inside a transaction.
        """
        if conn is None:
            tx = active_tx(self)
            if tx is not None:
                conn = tx.conn  # a transaction's requests go to its own connection, never elsewhere
                retry = False
            else:
                conn = self._router.any() or await self._connection()
        registry = self.registry
        if registry.has_pending:
            await self._push_types(conn)
        began = time.perf_counter()
        try:
            reply = await conn.request(buf, self.timeout if timeout is None else timeout)
        except IgniteConnectionError:
            if not retry:
                raise
            reply = await self._retry(buf, timeout)
        elapsed = time.perf_counter() - began
        self._latency[bisect.bisect_left(LATENCY_BUCKETS, elapsed)] += 1
        self._latency_sum += elapsed
        frame, offset = reply.frame, reply.header.payload_offset
        for _ in range(_MAX_TYPE_ROUNDS):
            try:
                return decode(frame, offset, registry)
            except UnknownBinaryTypes as missing:
                await self._fetch_types(conn, missing.type_ids)
        raise RemoteProtocolError("ignite: binary types nested too deeply to resolve")

    async def _retry(self, buf: bytearray, timeout: float | None) -> Any:
        """Send an idempotent read again on any live node; the one place reads are retried."""
        last: IgniteConnectionError | None = None
        for delay in self.retry_policy.delays():
            await asyncio.sleep(delay)
            self._retries += 1
            try:
                conn = await self._connection()
                return await conn.request(buf, self.timeout if timeout is None else timeout)
            except IgniteConnectionError as exc:
                last = exc
        assert last is not None or self.retry_policy.attempts <= 1
        raise last or IgniteConnectionError("ignite: connection lost and retries are off")

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

    # -- transactions and cluster state --

    def tx_start(self, concurrency: TransactionConcurrency = TransactionConcurrency.PESSIMISTIC,
                 isolation: TransactionIsolation = TransactionIsolation.REPEATABLE_READ, timeout: float = 0,
                 label: str | None = None) -> Transaction:
        """A transaction, for ``async with``: commits on normal exit, rolls back on an exception.

        ``timeout`` is the node's transaction timeout in seconds (0: none).  See ``drivers.ignite.tx``.
        """
        return Transaction(self, concurrency, isolation, timeout, label)

    async def get_cluster_state(self) -> ClusterState:
        """INACTIVE, ACTIVE or ACTIVE_READ_ONLY (feature CLUSTER_STATES)."""
        return await get_cluster_state(self)

    async def set_cluster_state(self, state: ClusterState, *, timeout: float | None = None) -> None:
        """Change the cluster's state (INACTIVE drops every in-memory cache)."""
        await set_cluster_state(self, state, timeout=timeout)


def _ignore(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> None:
    return None

