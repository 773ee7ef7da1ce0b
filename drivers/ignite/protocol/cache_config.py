"""Cache configuration for ops 1053/1054 (create) and 1055 (get): ``ClientCacheConfigurationSerializer``.

Rules of this file:

* Writing (1053/1054): ``int32 length (of what follows) | int16 count | (int16 code, value)*``.
  Only properties that are not None are sent.  Values are untyped ints/longs/
  bools; strings are typed.  The server ignores unknown codes *without*
  consuming their value, so only the codes below may ever be written.
* Reading (1055): a fixed order, every property present, preceded by the same
  length; query-entity fields carry precision and scale from 1.2, the expiry
  policy follows from 1.6.
* Enums travel as their Java ordinals: cache mode LOCAL 0 / REPLICATED 1 /
  PARTITIONED 2, atomicity TRANSACTIONAL 0 / ATOMIC 1, write sync FULL_SYNC 0 /
  FULL_ASYNC 1 / PRIMARY_SYNC 2, rebalance SYNC 0 / ASYNC 1 / NONE 2, partition
  loss READ_ONLY_SAFE 0 / READ_ONLY_ALL 1 / READ_WRITE_SAFE 2 / READ_WRITE_ALL 3 /
  IGNORE 4, index SORTED 0 / FULLTEXT 1 / GEOSPATIAL 2.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from drivers.ignite.codec import BinaryTypeRegistry, write_value
from drivers.ignite.protocol.constants import V1_2_0, V1_6_0, ProtocolVersion
from drivers.ignite.protocol.wire import BOOL, I8, I16, I32, I64, Cursor, pack, write_string


class CacheMode(enum.IntEnum):
    LOCAL = 0
    REPLICATED = 1
    PARTITIONED = 2


class AtomicityMode(enum.IntEnum):
    TRANSACTIONAL = 0
    ATOMIC = 1


class WriteSyncMode(enum.IntEnum):
    FULL_SYNC = 0
    FULL_ASYNC = 1
    PRIMARY_SYNC = 2


class RebalanceMode(enum.IntEnum):
    SYNC = 0
    ASYNC = 1
    NONE = 2


class PartitionLossPolicy(enum.IntEnum):
    READ_ONLY_SAFE = 0
    READ_ONLY_ALL = 1
    READ_WRITE_SAFE = 2
    READ_WRITE_ALL = 3
    IGNORE = 4


class IndexType(enum.IntEnum):
    SORTED = 0
    FULLTEXT = 1
    GEOSPATIAL = 2


@dataclasses.dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    """TTLs in milliseconds: -1 eternal, -2 unchanged."""

    create: int = -2
    update: int = -2
    access: int = -2


@dataclasses.dataclass(frozen=True, slots=True)
class QueryField:
    name: str
    type_name: str
    is_key_field: bool = False
    is_notnull: bool = False
    default_value: Any = None
    precision: int = -1
    scale: int = -1


@dataclasses.dataclass(frozen=True, slots=True)
class QueryIndex:
    name: str | None
    index_type: int = IndexType.SORTED
    inline_size: int = -1
    fields: tuple[tuple[str, bool], ...] = ()  # (field name, descending)


@dataclasses.dataclass(frozen=True, slots=True)
class QueryEntity:
    key_type_name: str | None
    value_type_name: str | None
    table_name: str | None = None
    key_field_name: str | None = None
    value_field_name: str | None = None
    fields: tuple[QueryField, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()
    indexes: tuple[QueryIndex, ...] = ()

    @property
    def key_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.is_key_field)


@dataclasses.dataclass(frozen=True, slots=True)
class CacheKeyConfiguration:
    type_name: str | None
    affinity_key_field_name: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class CacheConfig:
    """A cache configuration; None means "not sent, server default" when creating."""

    name: str
    cache_mode: int | None = None
    atomicity_mode: int | None = None
    backups: int | None = None
    write_synchronization_mode: int | None = None
    copy_on_read: bool | None = None
    read_from_backup: bool | None = None
    data_region_name: str | None = None
    onheap_cache_enabled: bool | None = None
    query_entities: tuple[QueryEntity, ...] | None = None
    query_parallelism: int | None = None
    query_detail_metrics_size: int | None = None
    sql_schema: str | None = None
    sql_index_max_inline_size: int | None = None
    sql_escape_all: bool | None = None
    max_query_iterators: int | None = None
    rebalance_mode: int | None = None
    rebalance_delay: int | None = None
    rebalance_timeout: int | None = None
    rebalance_batch_size: int | None = None
    rebalance_batches_prefetch_count: int | None = None
    rebalance_order: int | None = None
    rebalance_throttle: int | None = None
    group_name: str | None = None
    key_configurations: tuple[CacheKeyConfiguration, ...] | None = None
    default_lock_timeout: int | None = None
    max_concurrent_async_operations: int | None = None
    partition_loss_policy: int | None = None
    eager_ttl: bool | None = None
    statistics_enabled: bool | None = None
    expiry_policy: ExpiryPolicy | None = None


# (property code, attribute, kind) — ClientCacheConfigurationSerializer's constants.
PROPERTIES: tuple[tuple[int, str, str], ...] = (
    (0, "name", "str"),
    (1, "cache_mode", "int"),
    (2, "atomicity_mode", "int"),
    (3, "backups", "int"),
    (4, "write_synchronization_mode", "int"),
    (5, "copy_on_read", "bool"),
    (6, "read_from_backup", "bool"),
    (100, "data_region_name", "str"),
    (101, "onheap_cache_enabled", "bool"),
    (200, "query_entities", "entities"),
    (201, "query_parallelism", "int"),
    (202, "query_detail_metrics_size", "int"),
    (203, "sql_schema", "str"),
    (204, "sql_index_max_inline_size", "int"),
    (205, "sql_escape_all", "bool"),
    (206, "max_query_iterators", "int"),
    (300, "rebalance_mode", "int"),
    (301, "rebalance_delay", "long"),
    (302, "rebalance_timeout", "long"),
    (303, "rebalance_batch_size", "int"),
    (304, "rebalance_batches_prefetch_count", "long"),
    (305, "rebalance_order", "int"),
    (306, "rebalance_throttle", "long"),
    (400, "group_name", "str"),
    (401, "key_configurations", "keys"),
    (402, "default_lock_timeout", "long"),
    (403, "max_concurrent_async_operations", "int"),
    (404, "partition_loss_policy", "int"),
    (405, "eager_ttl", "bool"),
    (406, "statistics_enabled", "bool"),
    (407, "expiry_policy", "expiry"),
)

_REGISTRY = BinaryTypeRegistry()


def _write_expiry(buf: bytearray, e: ExpiryPolicy | None) -> None:
    if e is None:
        buf += pack(BOOL, False)
    else:
        buf += pack(BOOL, True)
        for v in (e.create, e.update, e.access):
            buf += pack(I64, v)


def _write_entity(buf: bytearray, e: QueryEntity, version: ProtocolVersion,
                  registry: BinaryTypeRegistry) -> None:
    for s in (e.key_type_name, e.value_type_name, e.table_name, e.key_field_name,
              e.value_field_name):
        write_string(buf, s)
    buf += pack(I32, len(e.fields))
    for f in e.fields:
        write_string(buf, f.name)
        write_string(buf, f.type_name)
        buf += pack(BOOL, f.is_key_field)
        buf += pack(BOOL, f.is_notnull)
        write_value(buf, f.default_value, registry)
        if version >= V1_2_0:
            buf += pack(I32, f.precision)
            buf += pack(I32, f.scale)
    buf += pack(I32, len(e.aliases))
    for field, alias in e.aliases:
        write_string(buf, field)
        write_string(buf, alias)
    buf += pack(I32, len(e.indexes))
    for ix in e.indexes:
        write_string(buf, ix.name)
        buf += pack(I8, ix.index_type)
        buf += pack(I32, ix.inline_size)
        buf += pack(I32, len(ix.fields))
        for name, desc in ix.fields:
            write_string(buf, name)
            buf += pack(BOOL, desc)


def encode_cache_config(buf: bytearray, cfg: CacheConfig, version: ProtocolVersion,
                        registry: BinaryTypeRegistry | None = None) -> None:
    """Append the payload of op 1053/1054 (the configuration with its length and count)."""
    reg = registry or _REGISTRY
    start = len(buf)
    buf += bytes(6)  # int32 length, int16 property count
    count = 0
    for code, attr, kind in PROPERTIES:
        v = getattr(cfg, attr)
        if v is None:
            continue
        if kind == "expiry" and version < V1_6_0:
            continue
        count += 1
        buf += pack(I16, code)
        if kind == "int":
            buf += pack(I32, v)
        elif kind == "long":
            buf += pack(I64, v)
        elif kind == "bool":
            buf += pack(BOOL, v)
        elif kind == "str":
            write_string(buf, v)
        elif kind == "keys":
            buf += pack(I32, len(v))
            for k in v:
                write_string(buf, k.type_name)
                write_string(buf, k.affinity_key_field_name)
        elif kind == "entities":
            buf += pack(I32, len(v))
            for e in v:
                _write_entity(buf, e, version, reg)
        else:
            _write_expiry(buf, v)
    I32.pack_into(buf, start, len(buf) - start - 4)
    I16.pack_into(buf, start + 4, count)


def _read_entity(c: Cursor, version: ProtocolVersion) -> QueryEntity:
    key_type, value_type, table, key_field, value_field = (c.string() for _ in range(5))
    fields = []
    for _ in range(c.count("query field count")):
        name, type_name = c.string(), c.string()
        is_key, notnull = c.bool(), c.bool()
        default = c.value()
        precision = scale = -1
        if version >= V1_2_0:
            precision, scale = c.i32(), c.i32()
        fields.append(QueryField(name or "", type_name or "", is_key, notnull, default,
                                 precision, scale))
    aliases = tuple((c.string() or "", c.string() or "") for _ in range(c.count("alias count")))
    indexes = []
    for _ in range(c.count("index count")):
        name = c.string()
        itype, inline = _enum(IndexType, c.i8()), c.i32()
        ifields = tuple((c.string() or "", c.bool()) for _ in range(c.count("index field count")))
        indexes.append(QueryIndex(name, itype, inline, ifields))
    return QueryEntity(key_type, value_type, table, key_field, value_field, tuple(fields),
                       aliases, tuple(indexes))


def _enum(kind: type[enum.IntEnum], value: int) -> Any:
    """The enum member for ``value``; a value this client does not know (a newer node's) stays an int."""
    try:
        return kind(value)
    except ValueError:
        return value


def decode_cache_config(data: memoryview, offset: int, version: ProtocolVersion,
                        registry: BinaryTypeRegistry | None = None) -> CacheConfig:
    """Decode the op 1055 reply payload."""
    c = Cursor(data, offset, registry)
    c.i32("configuration length")
    kw: dict[str, Any] = {}
    kw["atomicity_mode"] = _enum(AtomicityMode, c.i32())
    kw["backups"] = c.i32()
    kw["cache_mode"] = _enum(CacheMode, c.i32())
    kw["copy_on_read"] = c.bool()
    kw["data_region_name"] = c.string()
    kw["eager_ttl"] = c.bool()
    kw["statistics_enabled"] = c.bool()
    kw["group_name"] = c.string()
    kw["default_lock_timeout"] = c.i64()
    kw["max_concurrent_async_operations"] = c.i32()
    kw["max_query_iterators"] = c.i32()
    name = c.string()
    kw["onheap_cache_enabled"] = c.bool()
    kw["partition_loss_policy"] = _enum(PartitionLossPolicy, c.i32())
    kw["query_detail_metrics_size"] = c.i32()
    kw["query_parallelism"] = c.i32()
    kw["read_from_backup"] = c.bool()
    kw["rebalance_batch_size"] = c.i32()
    kw["rebalance_batches_prefetch_count"] = c.i64()
    kw["rebalance_delay"] = c.i64()
    kw["rebalance_mode"] = _enum(RebalanceMode, c.i32())
    kw["rebalance_order"] = c.i32()
    kw["rebalance_throttle"] = c.i64()
    kw["rebalance_timeout"] = c.i64()
    kw["sql_escape_all"] = c.bool()
    kw["sql_index_max_inline_size"] = c.i32()
    kw["sql_schema"] = c.string()
    kw["write_synchronization_mode"] = _enum(WriteSyncMode, c.i32())
    kw["key_configurations"] = tuple(CacheKeyConfiguration(c.string(), c.string())
                                     for _ in range(c.count("key configuration count")))
    kw["query_entities"] = tuple(_read_entity(c, version)
                                 for _ in range(c.count("query entity count")))
    if version >= V1_6_0 and c.bool("expiry policy flag"):
        kw["expiry_policy"] = ExpiryPolicy(c.i64(), c.i64(), c.i64())
    c.finish()
    return CacheConfig(name=name or "", **kw)
