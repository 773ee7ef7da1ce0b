"""The Ignite thin client: what an application holds.  It builds the layers below and hands out caches.

Usage::

    async with Client([("127.0.0.1", 10800), ("127.0.0.1", 10801)]) as client:
        cache = await client.get_or_create_cache("people")
        await cache.put(1, "Ada")
        async with client.sql("SELECT name FROM person WHERE id > ?", query_args=[10]) as rows:
            async for row in rows:
                ...

Layers, each calling only the ones below it::

    client         this file: lifecycle, cache handles, SQL, transactions, cluster state, stats
    cache, cursors, tx, cluster      the API modules: build requests, call the session
    session        the request pipeline: transaction, routing, send, retry, binary types, latency
    routing        the nodes' connections and partition maps;  affinity: key hashes (pure)
    connection     one socket to one node (an I/O pump built from drivers.kit)
    protocol, codec                  sans-I/O: bytes in, values out

Settings are one ``IgniteConfig`` (``drivers.ignite.config``): pass it whole, or
any of its fields as keywords (``Client(nodes, request_timeout_s=5)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from drivers.base import Calls, ClientStats, LifecycleMixin, client_stats
from drivers.ignite.affinity import PartitionMap, key_hash
from drivers.ignite.cache import Cache
from drivers.ignite.cluster import ClusterState, get_cluster_state, set_cluster_state
from drivers.ignite.codec import BinaryTypeRegistry, read_value
from drivers.ignite.codec.hashing import string_hash
from drivers.ignite.config import IgniteConfig
from drivers.ignite.cursors import SqlFieldsCursor
from drivers.ignite.errors import IgniteInterfaceError
from drivers.ignite.protocol.cache_config import CacheConfig, encode_cache_config
from drivers.ignite.protocol.constants import OpCode, ProtocolVersion
from drivers.ignite.protocol.messages import decode_int
from drivers.ignite.protocol.wire import write_string
from drivers.ignite.routing import Router
from drivers.ignite.session import LATENCY_BUCKETS, Session
from drivers.ignite.tx import Transaction, TransactionConcurrency, TransactionIsolation


class Client(LifecycleMixin):
    """An asyncio client for Apache Ignite 2.x clusters (thin-client protocol up to 1.7.0)."""

    name = "ignite"

    def __init__(self, nodes: Iterable[tuple[str, int]] | None = None, *, config: IgniteConfig | None = None,
                 ssl: Any = None, **settings: Any) -> None:
        if nodes is not None:
            settings["nodes"] = tuple((str(h), int(p)) for h, p in nodes)
        try:
            self.config = dataclasses.replace(config or IgniteConfig(), **settings)
        except TypeError as exc:
            fields = ", ".join(f.name for f in dataclasses.fields(IgniteConfig))
            raise IgniteInterfaceError(f"ignite: {exc}; the settings are: {fields}") from None
        if not self.config.nodes:
            raise IgniteInterfaceError("ignite: Client needs at least one (host, port) node address")
        self.address = self.config.address
        self.registry = BinaryTypeRegistry(compact_footer=self.config.compact_footer)
        self.calls = Calls("ignite")
        self._router = Router(self.config, ssl)
        self._session = Session(self._router, self.registry, self.config, self.calls)

    def __repr__(self) -> str:
        ready = sum(n.ready for n in self._router.nodes)
        return f"<Client ignite {self.address} {ready}/{len(self._router.nodes)} nodes ready>"

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return list(self.config.nodes)

    # -- lifecycle ---------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to the nodes (at least one must answer; the others are retried in the background)."""
        self._session.closed = False
        try:
            await self._router.start()
        except BaseException:
            self._session.closed = True
            await self._router.aclose()
            raise

    start = connect

    async def aclose(self) -> None:
        """Close every connection; pending requests fail with ``IgniteConnectionError``.  Idempotent."""
        self._session.closed = True
        await self._router.aclose()

    close = aclose

    async def _ping(self) -> None:
        await self._session.ping()

    @property
    def protocol_version(self) -> ProtocolVersion:
        return self._router.version

    @property
    def protocol_version_text(self) -> str:
        return ".".join(map(str, self._router.version))

    # -- observability -----------------------------------------------------------------------

    def stats(self) -> ClientStats:
        """The common ``ClientStats``; ``detail`` has per-node state, partition maps and the latency histogram."""
        router, session = self._router, self._session
        nodes = router.stats()
        return client_stats(
            self.calls, address=self.address, connected=any(n["state"] == "ready" for n in nodes),
            late_replies=sum(n["late_replies"] for n in nodes), reconnects=sum(n["reconnects"] for n in nodes),
            retries=session.retrier.retries,
            detail={"protocol": self.protocol_version_text, "nodes": nodes,
                    "partition_map_version": list(router.map_version),
                    "partition_map_refreshes": router.map_refreshes,
                    "latency_buckets": list(LATENCY_BUCKETS), "latency_counts": list(session.latency_counts),
                    "latency_sum_s": session.latency_sum_s, "limit": session.queries.stats()})

    def ready_nodes(self) -> list[str]:
        """The addresses of the nodes with a live connection now."""
        return [n.address for n in self._router.nodes if n.ready]

    def partition_map(self, cache: Cache | str) -> PartitionMap | None:
        """The cache's partition map as the client knows it now (None: not known, or not routable)."""
        return self._router.map_for(_cache_id(cache))

    def primary_address(self, cache: Cache | str, key: Any) -> str | None:
        """The node a request for ``key`` goes to now ("host:port"), or None when it goes to any node."""
        pmap = self.partition_map(cache)
        if pmap is None:
            return None
        h = key_hash(key, pmap.key_fields, self.registry)
        conn = self._router.node_conn(pmap.node_for_hash(h)) if h is not None else None
        return f"{conn.host}:{conn.port}" if conn is not None else None

    # -- caches ------------------------------------------------------------------------------

    def cache(self, name: str) -> Cache:
        """A handle on an existing cache, without I/O."""
        return Cache(self._session, name)

    async def get_cache(self, settings: str | CacheConfig) -> Cache:
        """A handle on an existing cache (no I/O; async for pyignite compatibility)."""
        return Cache(self._session, settings if isinstance(settings, str) else settings.name)

    async def create_cache(self, settings: str | CacheConfig) -> Cache:
        """Create a cache; ``CacheExists`` if it already exists."""
        return await self._make_cache(settings, OpCode.CACHE_CREATE_WITH_NAME,
                                      OpCode.CACHE_CREATE_WITH_CONFIGURATION)

    async def get_or_create_cache(self, settings: str | CacheConfig) -> Cache:
        return await self._make_cache(settings, OpCode.CACHE_GET_OR_CREATE_WITH_NAME,
                                      OpCode.CACHE_GET_OR_CREATE_WITH_CONFIGURATION)

    async def _make_cache(self, settings: str | CacheConfig, by_name: int, by_config: int) -> Cache:
        session = self._session
        if isinstance(settings, str):
            req = session.request(by_name)
            write_string(req.buf, settings)
            name = settings
        elif isinstance(settings, CacheConfig):
            req = session.request(by_config)
            conn = await session.pin(req)   # the configuration is encoded for this connection's version
            encode_cache_config(req.buf, settings, conn.version, self.registry)
            name = settings.name
        else:
            raise IgniteInterfaceError(f"ignite: a cache is named by a str or a CacheConfig, "
                                       f"not {type(settings).__name__}")
        await session.send(req, _ignore)
        return Cache(session, name)

    async def get_cache_names(self) -> list[str]:
        def decode(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> list[str]:
            count = decode_int(frame, offset)
            names, pos = [], offset + 4
            for _ in range(count):
                name, pos = read_value(frame, pos, registry)
                names.append(name)
            return names

        result: list[str] = await self._session.send(self._session.request(OpCode.CACHE_GET_NAMES), decode)
        return result

    # -- SQL ---------------------------------------------------------------------------------

    def sql(self, query: str, query_args: Sequence[Any] | None = None, *, page_size: int = 1024,
            include_field_names: bool = False, schema: str | None = None, max_rows: int = -1,
            statement_type: int = 0, distributed_joins: bool = False, local: bool = False,
            replicated_only: bool = False, enforce_join_order: bool = False, collocated: bool = False,
            lazy: bool = False, timeout_s: float = 0, cache: Cache | str | None = None) -> SqlFieldsCursor:
        """Run a SQL fields query (SELECT, DML or DDL); an async iterator of rows (lists).

        ``timeout_s`` is the server-side query timeout (0: none).  The cursor
        fetches further pages as it is iterated; use it with ``async with``.
        ``schema`` defaults to the node's choice: the schema of ``cache`` when one
        is given (a table made by a ``CacheConfig``'s query entities lives there,
        under the cache's name), else PUBLIC.
        """
        cache_id = 0 if cache is None else _cache_id(cache)
        options = dict(page_size=page_size, include_field_names=include_field_names, schema=schema,
                       max_rows=max_rows, statement_type=statement_type, distributed_joins=distributed_joins,
                       local=local, replicated_only=replicated_only, enforce_join_order=enforce_join_order,
                       collocated=collocated, lazy=lazy, timeout_ms=int(timeout_s * 1000))
        return SqlFieldsCursor(self._session, cache_id, query, list(query_args or ()), options)

    # -- binary types ------------------------------------------------------------------------

    def register_binary_type(self, cls: type, type_name: str | None = None, *,
                             fields: dict[str, Any] | None = None, affinity_key_field: str | None = None) -> None:
        """Map a dataclass (or any class with annotations) to an Ignite complex-object type.

        The node is told the type's schema before the first request that carries one.
        """
        self.registry.register_class(cls, type_name, fields=fields, affinity_key_field=affinity_key_field)

    # -- transactions and cluster state ------------------------------------------------------

    def tx_start(self, concurrency: TransactionConcurrency = TransactionConcurrency.PESSIMISTIC,
                 isolation: TransactionIsolation = TransactionIsolation.REPEATABLE_READ, timeout_s: float = 0,
                 label: str | None = None) -> Transaction:
        """A transaction, for ``async with``: commits on normal exit, rolls back on an exception.

        ``timeout_s`` is the node's transaction timeout (0: none).  See ``drivers.ignite.tx``.
        """
        return Transaction(self._session, concurrency, isolation, timeout_s, label)

    async def get_cluster_state(self) -> ClusterState:
        """INACTIVE, ACTIVE or ACTIVE_READ_ONLY (feature CLUSTER_STATES)."""
        return await get_cluster_state(self._session)

    async def set_cluster_state(self, state: ClusterState, *, timeout_s: float | None = None) -> None:
        """Change the cluster's state (INACTIVE drops every in-memory cache)."""
        await set_cluster_state(self._session, state, timeout_s=timeout_s)


def _cache_id(cache: Cache | str) -> int:
    return cache.cache_id if isinstance(cache, Cache) else string_hash(cache)


def _ignore(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> None:
    return None
