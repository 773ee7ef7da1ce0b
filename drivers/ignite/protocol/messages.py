"""Payload builders and parsers for the ops the client uses: pure functions over buffers.

Rules of this file:

* Encoders append a payload to a request buffer from ``framing.begin_request``;
  they never write a frame header.  Decoders take the whole frame and the
  ``payload_offset`` from ``parse_response`` and return plain values or a
  frozen slotted dataclass.
* Layouts are the Java server's request/response classes
  (``ClientCacheRequest``, ``ClientCacheSqlFieldsQueryRequest``,
  ``ClientCacheScanQueryRequest``, ``PlatformUtils.writeBinaryMetadata``,
  ``ClientCachePartitionsRequest``/``...AwarenessGroup``, ``ClientTxStartRequest``).
* Anything that depends on a negotiated feature takes the feature mask, so the
  bytes always match what the server will read.
* Decoders of value-carrying replies read every value of the page before
  raising ``UnknownBinaryTypes``, so one fetch of op 3002 covers the page.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from drivers.ignite.codec import BinaryField, BinaryType, BinaryTypeRegistry, write_value
from drivers.ignite.codec.reader import read_value
from drivers.ignite.errors import LocalProtocolError, RemoteProtocolError
from drivers.ignite.protocol.cache_config import (
    AtomicityMode,
    CacheConfig,
    CacheKeyConfiguration,
    CacheMode,
    ExpiryPolicy,
    IndexType,
    PartitionLossPolicy,
    QueryEntity,
    QueryField,
    QueryIndex,
    RebalanceMode,
    WriteSyncMode,
    decode_cache_config,
    encode_cache_config,
)
from drivers.ignite.protocol.constants import Feature, has_feature
from drivers.ignite.protocol.wire import BOOL, I8, I32, I64, U8, Cursor, pack, write_string

__all__ = [
    "CACHE_FLAG_KEEP_BINARY",
    "CACHE_FLAG_TRANSACTIONAL",
    "CACHE_FLAG_WITH_EXPIRY",
    "AtomicityMode",
    "CacheConfig",
    "CacheKeyConfiguration",
    "CacheKeyMapping",
    "CacheMode",
    "CachePartitions",
    "ClusterState",
    "Concurrency",
    "ExpiryPolicy",
    "IndexType",
    "Isolation",
    "PartitionGroup",
    "PartitionLossPolicy",
    "QueryEntity",
    "QueryField",
    "QueryIndex",
    "RebalanceMode",
    "ScanPage",
    "ScanResult",
    "SqlFieldsPage",
    "SqlFieldsResult",
    "WriteSyncMode",
    "cache_header",
    "decode_binary_type",
    "decode_binary_type_reply",
    "decode_bool",
    "decode_cache_config",
    "decode_cache_partitions",
    "decode_cluster_state",
    "decode_get_all",
    "decode_int",
    "decode_long",
    "decode_scan",
    "decode_scan_page",
    "decode_sql_fields",
    "decode_sql_fields_page",
    "decode_value",
    "encode_binary_type",
    "encode_cache_config",
    "encode_cache_partitions",
    "encode_cluster_change_state",
    "encode_get_binary_type",
    "encode_key_value",
    "encode_long",
    "encode_resource_close",
    "encode_scan",
    "encode_sql_fields",
    "encode_tx_end",
    "encode_tx_start",
]

CACHE_FLAG_KEEP_BINARY = 0x01
CACHE_FLAG_TRANSACTIONAL = 0x02
CACHE_FLAG_WITH_EXPIRY = 0x04


# -- cache operations ----------------------------------------------------------------------

def cache_header(buf: bytearray, cache_id: int, flags: int = 0,
                 expiry: tuple[int, int, int] | None = None, tx_id: int | None = None) -> None:
    """Append ``int32 cache_id | byte flags | [3 x int64 TTL ms] | [int32 tx id]``.

    The expiry and transaction bits are set from ``expiry``/``tx_id``; pass other
    bits (keep-binary) in ``flags``.  TTLs: -1 eternal, -2 unchanged.
    """
    if expiry is not None:
        flags |= CACHE_FLAG_WITH_EXPIRY
    if tx_id is not None:
        flags |= CACHE_FLAG_TRANSACTIONAL
    buf += pack(I32, cache_id)
    buf += pack(U8, flags)
    if expiry is not None:
        for ttl in expiry:
            buf += pack(I64, ttl)
    if tx_id is not None:
        buf += pack(I32, tx_id)


def encode_key_value(buf: bytearray, registry: BinaryTypeRegistry, key: Any, *values: Any) -> None:
    """Append a key and any values (put, replace, replace-if-equals ...)."""
    write_value(buf, key, registry)
    for v in values:
        write_value(buf, v, registry)


def decode_value(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> Any:
    """A reply that is one typed value (get, get-and-put, local peek ...)."""
    return read_value(frame, offset, registry)[0]


def decode_get_all(frame: memoryview, offset: int,
                   registry: BinaryTypeRegistry) -> list[tuple[Any, Any]]:
    """Op 1003 reply: ``int32 count | (key, value) x count``, as pairs.

    Pairs, not a dict: keys may be values Python cannot hash (lists, mutable
    dataclasses); the caller knows the keys it asked for.
    """
    c = Cursor(frame, offset, registry)
    n = c.count("entry count", 2)
    flat = c.values(2 * n)
    c.finish()
    return list(zip(flat[0::2], flat[1::2], strict=True))


def encode_long(buf: bytearray, value: int) -> None:
    """Append an untyped int64 (cursor ids, resource ids)."""
    buf += pack(I64, value)


def encode_resource_close(buf: bytearray, resource_id: int) -> None:
    """Op 0 payload: the cursor or other resource to close."""
    buf += pack(I64, resource_id)


def decode_int(frame: memoryview, offset: int) -> int:
    return Cursor(frame, offset).i32()


def decode_long(frame: memoryview, offset: int) -> int:
    return Cursor(frame, offset).i64()


def decode_bool(frame: memoryview, offset: int) -> bool:
    return Cursor(frame, offset).bool()


# -- SQL fields (2004 / 2005) --------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class SqlFieldsResult:
    """First page of a SQL fields query; ``field_names`` when they were asked for."""

    cursor_id: int
    field_count: int
    field_names: tuple[str, ...] | None
    rows: list[list[Any]]
    has_more: bool


@dataclasses.dataclass(frozen=True, slots=True)
class SqlFieldsPage:
    rows: list[list[Any]]
    has_more: bool


def encode_sql_fields(buf: bytearray, registry: BinaryTypeRegistry, cache_id: int, query: str,
                      args: Sequence[Any] = (), *, schema: str | None = None,
                      page_size: int = 1024, max_rows: int = -1, statement_type: int = 0,
                      distributed_joins: bool = False, local: bool = False,
                      replicated_only: bool = False, enforce_join_order: bool = False,
                      collocated: bool = False, lazy: bool = False, timeout_ms: int = 0,
                      include_field_names: bool = True, partitions: Sequence[int] | None = None,
                      update_batch_size: int = 1, features: bytes = b"", flags: int = 0,
                      tx_id: int | None = None) -> None:
    """Op 2004 payload.  Arguments are ``int32 count`` + typed values (not an Object[])."""
    if page_size <= 0:
        raise LocalProtocolError(f"page_size must be positive, got {page_size}")
    cache_header(buf, cache_id, flags, None, tx_id)
    write_string(buf, schema)
    buf += pack(I32, page_size)
    buf += pack(I32, max_rows)
    write_string(buf, query)
    buf += pack(I32, len(args))
    for a in args:
        write_value(buf, a, registry)
    buf += pack(I8, statement_type)
    for b in (distributed_joins, local, replicated_only, enforce_join_order, collocated, lazy):
        buf += pack(BOOL, b)
    buf += pack(I64, timeout_ms)
    buf += pack(BOOL, include_field_names)
    if has_feature(features, Feature.QRY_PARTITIONS_BATCH_SIZE):
        if partitions is None:
            buf += pack(I32, -1)
        else:
            buf += pack(I32, len(partitions))
            for p in partitions:
                buf += pack(I32, p)
        buf += pack(I32, update_batch_size)
    elif partitions is not None:
        raise LocalProtocolError("query partitions need feature QRY_PARTITIONS_BATCH_SIZE")


def _rows(c: Cursor, columns: int) -> list[list[Any]]:
    n = c.count("row count", max(columns, 1))
    if columns <= 0:
        return [[] for _ in range(n)]
    flat = c.values(n * columns)
    return [flat[i:i + columns] for i in range(0, n * columns, columns)]


def decode_sql_fields(frame: memoryview, offset: int, registry: BinaryTypeRegistry,
                      include_field_names: bool) -> SqlFieldsResult:
    """Op 2004 reply: cursor id, column count, [names], first page, has-more."""
    c = Cursor(frame, offset, registry)
    cursor_id = c.i64("cursor id")
    count = c.count("field count", 0)
    names = tuple(c.string() or "" for _ in range(count)) if include_field_names else None
    rows = _rows(c, count)
    more = c.bool("has-more flag")
    c.finish()
    return SqlFieldsResult(cursor_id, count, names, rows, more)


def decode_sql_fields_page(frame: memoryview, offset: int, registry: BinaryTypeRegistry,
                           field_count: int) -> SqlFieldsPage:
    """Op 2005 reply: a page of rows of ``field_count`` values, then has-more."""
    c = Cursor(frame, offset, registry)
    rows = _rows(c, field_count)
    more = c.bool("has-more flag")
    c.finish()
    return SqlFieldsPage(rows, more)


# -- scan (2000 / 2001) --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class ScanResult:
    cursor_id: int
    rows: list[tuple[Any, Any]]
    has_more: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ScanPage:
    rows: list[tuple[Any, Any]]
    has_more: bool


FILTER_PLATFORM_JAVA = 1
FILTER_PLATFORM_DOTNET = 2


def encode_scan(buf: bytearray, registry: BinaryTypeRegistry, cache_id: int, *,
                page_size: int = 1024, partition: int = -1, local: bool = False,
                filter: Any = None, filter_platform: int = FILTER_PLATFORM_JAVA,
                flags: int = 0, tx_id: int | None = None) -> None:
    """Op 2000 payload; the filter platform byte is sent only with a filter."""
    if page_size <= 0:
        raise LocalProtocolError(f"page_size must be positive, got {page_size}")
    cache_header(buf, cache_id, flags, None, tx_id)
    write_value(buf, filter, registry)
    if filter is not None:
        buf += pack(I8, filter_platform)
    buf += pack(I32, page_size)
    buf += pack(I32, partition)
    buf += pack(BOOL, local)


def _pairs(c: Cursor) -> list[tuple[Any, Any]]:
    n = c.count("row count", 2)
    flat = c.values(2 * n)
    return list(zip(flat[0::2], flat[1::2], strict=True))


def decode_scan(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> ScanResult:
    """Op 2000 reply: cursor id, then a page of key/value pairs and has-more."""
    c = Cursor(frame, offset, registry)
    cursor_id = c.i64("cursor id")
    rows = _pairs(c)
    more = c.bool("has-more flag")
    c.finish()
    return ScanResult(cursor_id, rows, more)


def decode_scan_page(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> ScanPage:
    """Op 2001 reply: a page of key/value pairs and has-more."""
    c = Cursor(frame, offset, registry)
    rows = _pairs(c)
    more = c.bool("has-more flag")
    c.finish()
    return ScanPage(rows, more)


# -- binary types (3002 / 3003) ------------------------------------------------------------

def encode_get_binary_type(buf: bytearray, type_id: int) -> None:
    """Op 3002 payload."""
    buf += pack(I32, type_id)


def encode_binary_type(buf: bytearray, meta: BinaryType) -> None:
    """Op 3003 payload (``PlatformUtils.readBinaryMetadata`` order), schemas included."""
    buf += pack(I32, meta.type_id)
    write_string(buf, meta.type_name)
    write_string(buf, meta.affinity_key_field)
    buf += pack(I32, len(meta.fields))
    for f in meta.fields:
        write_string(buf, f.name)
        buf += pack(I32, f.type_code)
        buf += pack(I32, f.field_id)
    buf += pack(BOOL, meta.is_enum)
    if meta.is_enum:
        buf += pack(I32, len(meta.enum_values))
        for name, ordinal in meta.enum_values:
            write_string(buf, name)
            buf += pack(I32, ordinal)
    buf += pack(I32, len(meta.schemas))
    for sid, ids in meta.schemas:
        buf += pack(I32, sid)
        buf += pack(I32, len(ids))
        for fid in ids:
            buf += pack(I32, fid)


def _read_binary_type(c: Cursor) -> BinaryType:
    tid = c.i32("type id")
    name = c.string() or ""
    affinity = c.string()
    fields = []
    for _ in range(c.count("binary field count", 9)):
        fname = c.string() or ""
        fields.append(BinaryField(fname, c.i32(), c.i32()))
    is_enum = c.bool()
    enum_values: tuple[tuple[str, int], ...] = ()
    if is_enum:
        enum_values = tuple((c.string() or "", c.i32()) for _ in range(c.count("enum count", 5)))
    schemas = []
    for _ in range(c.count("schema count", 8)):
        sid = c.i32()
        ids = tuple(c.i32() for _ in range(c.count("schema field count", 4)))
        schemas.append((sid, ids))
    return BinaryType(tid, name, affinity, tuple(fields), is_enum, enum_values, tuple(schemas))


def decode_binary_type(frame: memoryview, offset: int) -> BinaryType:
    """A binary type as ``encode_binary_type`` writes it."""
    return _read_binary_type(Cursor(frame, offset))


def decode_binary_type_reply(frame: memoryview, offset: int) -> BinaryType | None:
    """Op 3002 reply: ``bool exists | [binary type]``."""
    c = Cursor(frame, offset)
    return _read_binary_type(c) if c.bool("exists flag") else None


# -- partition awareness (1101) ------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class CacheKeyMapping:
    """A cache of a group and its affinity key configurations (key type id, field id)."""

    cache_id: int
    key_configs: tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class PartitionGroup:
    """Caches sharing one partition map.  ``partitions`` maps node id -> primary partitions.

    ``applicable`` False: no client-side routing for these caches (not PARTITIONED,
    or a custom affinity).  ``default_affinity`` is None without feature 13.
    """

    applicable: bool
    caches: tuple[CacheKeyMapping, ...]
    partitions: dict[uuid.UUID, tuple[int, ...]]
    default_affinity: bool | None

    @property
    def partition_count(self) -> int:
        return sum(len(p) for p in self.partitions.values())


@dataclasses.dataclass(frozen=True, slots=True)
class CachePartitions:
    topology: tuple[int, int]
    groups: tuple[PartitionGroup, ...]


def encode_cache_partitions(buf: bytearray, cache_ids: Iterable[int], features: bytes = b"",
                            custom_mappings: bool = False) -> None:
    """Op 1101 payload: ``[bool custom mappings, feature 13] | int32 n | int32 cache id x n``."""
    ids = list(cache_ids)
    if has_feature(features, Feature.ALL_AFFINITY_MAPPINGS):
        buf += pack(BOOL, custom_mappings)
    buf += pack(I32, len(ids))
    for cid in ids:
        buf += pack(I32, cid)


def _read_uuid(c: Cursor) -> uuid.UUID:
    code = c.u8("node id type code")
    if code != 10:
        raise RemoteProtocolError(f"expected a UUID (type code 10) at offset {c.pos - 1}, got {code}")
    hi = c.i64() & 0xFFFFFFFFFFFFFFFF
    lo = c.i64() & 0xFFFFFFFFFFFFFFFF
    return uuid.UUID(int=(hi << 64) | lo)


def decode_cache_partitions(frame: memoryview, offset: int, features: bytes = b"") -> CachePartitions:
    """Op 1101 reply; the default-affinity flag ends *each group* when feature 13 is on."""
    c = Cursor(frame, offset)
    topology = (c.i64("topology version"), c.i32("minor topology version"))
    with_default = has_feature(features, Feature.ALL_AFFINITY_MAPPINGS)
    groups = []
    for _ in range(c.count("group count", 5)):
        applicable = c.bool()
        caches = []
        for _ in range(c.count("cache count", 4)):
            cid = c.i32()
            keys: tuple[tuple[int, int], ...] = ()
            if applicable:
                keys = tuple((c.i32(), c.i32()) for _ in range(c.count("key config count", 8)))
            caches.append(CacheKeyMapping(cid, keys))
        parts: dict[uuid.UUID, tuple[int, ...]] = {}
        if applicable:
            for _ in range(c.count("node count", 21)):
                node = _read_uuid(c)
                parts[node] = tuple(c.i32() for _ in range(c.count("partition count", 4)))
        default = c.bool() if with_default else None
        groups.append(PartitionGroup(applicable, tuple(caches), parts, default))
    return CachePartitions(topology, tuple(groups))


# -- transactions (4000 / 4001) ------------------------------------------------------------

class Concurrency(enum.IntEnum):
    OPTIMISTIC = 0
    PESSIMISTIC = 1


class Isolation(enum.IntEnum):
    READ_COMMITTED = 0
    REPEATABLE_READ = 1
    SERIALIZABLE = 2


def encode_tx_start(buf: bytearray, concurrency: int, isolation: int, timeout_ms: int = 0,
                    label: str | None = None) -> None:
    """Op 4000 payload; the reply is an int32 tx id (``decode_int``)."""
    buf += pack(I8, concurrency)
    buf += pack(I8, isolation)
    buf += pack(I64, timeout_ms)
    write_string(buf, label)


def encode_tx_end(buf: bytearray, tx_id: int, commit: bool) -> None:
    """Op 4001 payload."""
    buf += pack(I32, tx_id)
    buf += pack(BOOL, commit)


# -- cluster state (5000 / 5001) -----------------------------------------------------------

class ClusterState(enum.IntEnum):
    INACTIVE = 0
    ACTIVE = 1
    ACTIVE_READ_ONLY = 2


def encode_cluster_change_state(buf: bytearray, state: int) -> None:
    """Op 5001 payload (a state byte)."""
    buf += pack(I8, state)


def decode_cluster_state(frame: memoryview, offset: int) -> ClusterState:
    """Op 5000 reply (a state byte)."""
    c = Cursor(frame, offset)
    v = c.i8("cluster state")
    try:
        return ClusterState(v)
    except ValueError:
        raise RemoteProtocolError(f"unknown cluster state {v} at offset {offset}") from None
