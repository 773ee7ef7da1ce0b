"""Where a key lives: key hashes and partition maps, as pure functions (no I/O, no connections).

Rules of this file:
- A key's hash is the Java ``hashCode`` the cluster places it by.  A complex
  object (a registered dataclass or a ``BinaryObject``) hashes by its
  affinity-key field when its cache declares one for that type, else by the
  object hash written in its header.  A key with no stable Java hash has none
  (``None``): such a request goes to any node, and the cluster forwards it.
- A ``PartitionMap`` is one cache's primary node per partition, from an op 1101
  reply; caches the reply marks as not applicable (custom affinity, or a
  cluster still rebalancing) map to ``NOT_APPLICABLE`` and are never routed.
- The partition of a hash is ``RendezvousAffinityFunction``'s (``codec.hashing.partition_for``).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Any

from drivers.ignite.codec import BinaryObject, BinaryTypeRegistry, hints, write_value
from drivers.ignite.codec.hashing import java_hash, partition_for
from drivers.ignite.codec.typecodes import TypeCode
from drivers.ignite.errors import LocalProtocolError
from drivers.ignite.protocol.messages import CachePartitions

_OBJECT_HEADER = struct.Struct("<ii")  # type id, hash: at +4 in a complex object
# Java types whose hash is the value itself (affinity-key fields declared with hints).
_HINT_BY_CODE: dict[int, type] = {TypeCode.INT: hints.Int, TypeCode.SHORT: hints.Short, TypeCode.BYTE: hints.Byte,
                                  TypeCode.CHAR: hints.Char, TypeCode.FLOAT: hints.Float}


@dataclass(frozen=True, slots=True)
class PartitionMap:
    """Primary node of each partition of one cache, and its affinity-key fields by key type id."""

    primaries: tuple[uuid.UUID | None, ...]
    key_fields: dict[int, int]

    @property
    def partitions(self) -> int:
        return len(self.primaries)

    def node_for_hash(self, h: int) -> uuid.UUID | None:
        return self.primaries[partition_for(h, len(self.primaries))]


NOT_APPLICABLE = PartitionMap((), {})


def maps_from_reply(reply: CachePartitions) -> dict[int, PartitionMap]:
    """Cache id -> map from an op 1101 reply (NOT_APPLICABLE for caches the client must not route)."""
    out: dict[int, PartitionMap] = {}
    for group in reply.groups:
        if not group.applicable or group.default_affinity is False:
            for cache in group.caches:
                out[cache.cache_id] = NOT_APPLICABLE
            continue
        owners: list[uuid.UUID | None] = [None] * group.partition_count
        for node_id, parts in group.partitions.items():
            for p in parts:
                if 0 <= p < len(owners):
                    owners[p] = node_id
        primaries = tuple(owners)
        for cache in group.caches:
            out[cache.cache_id] = PartitionMap(primaries, dict(cache.key_configs))
    return out


def key_hash(key: Any, key_fields: dict[int, int], registry: BinaryTypeRegistry,
             buf: bytes | bytearray | None = None, at: int = 0) -> int | None:
    """The hash the cluster places ``key`` by (affinity-key field aware); None if it has none.

    ``buf[at:]``, when given, is ``key`` already encoded (a request being built):
    a complex object's header is read from there instead of encoding it again.
    """
    if buf is None or at >= len(buf) or buf[at] != TypeCode.COMPLEX_OBJ:
        if isinstance(key, BinaryObject) or hasattr(key, "__dataclass_fields__"):
            scratch = bytearray()
            write_value(scratch, key, registry)
            return key_hash(key, key_fields, registry, scratch, 0)
        try:
            return java_hash(key)
        except LocalProtocolError:
            return None
    type_id, stored = _OBJECT_HEADER.unpack_from(buf, at + 4)
    field = key_fields.get(type_id)
    if field is None:
        return int(stored)
    return _affinity_field_hash(key, type_id, field, registry)


def _affinity_field_hash(key: Any, type_id: int, field_id: int, registry: BinaryTypeRegistry) -> int | None:
    name = (registry.field_names(type_id) or {}).get(field_id)
    if name is None:
        return None
    value = key.fields.get(name) if isinstance(key, BinaryObject) else getattr(key, name, None)
    meta = registry.get_type(type_id)
    code = next((f.type_code for f in meta.fields if f.field_id == field_id), None) if meta else None
    hint = _HINT_BY_CODE.get(code) if code is not None else None
    try:
        return java_hash(value, hint)
    except LocalProtocolError:
        return None
