"""Complex objects (type code 103): their layout, type metadata and the type registry.

Rules of this file:

* Layout (``GridBinaryMarshaller``/``BinaryWriterExImpl.postWrite``), all little-endian::

      0  byte   103              12  int32  total length (header + data + footer)
      1  byte   version 1        16  int32  schema id (FNV-1a of the field ids; 0 if none)
      2  int16  flags            20  int32  schema offset (footer start; raw offset if no schema)
      4  int32  type id          24  field values, each a typed value; then raw data
      8  int32  hash             ..  footer: per field [int32 field id] + 1/2/4-byte offset
                                      [int32 raw offset if HAS_RAW and HAS_SCHEMA]

  Offsets are from the object's first byte; 1 byte when the last is < 256, 2 when < 65536.
  The hash is ``h = 1; h = 31*h + b`` over the signed bytes from 24 to the footer.
* The registry is plain data: it never fetches anything.  Decoding a type it
  does not know raises ``UnknownBinaryTypes`` with every unknown id of the
  payload; the connection layer fetches them (op 3002), calls ``register_type``
  and decodes again.  Types the server has not been told about are listed by
  ``pending_types`` (send them with op 3003, then ``mark_sent``).
* Python classes become binary types by ``register_class`` (dataclasses are
  registered on first use with defaults).  Field Java types come from the
  annotations: ``Annotated[int, Int]`` (or a bare hint class, ``Int``) narrows
  the Java type, plain ``int`` is a Java long, ``str`` a String, and so on.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from drivers.ignite.codec import hints
from drivers.ignite.codec.hashing import field_id, schema_id, type_id
from drivers.ignite.codec.typecodes import TypeCode
from drivers.ignite.errors import LocalProtocolError

HEADER_SIZE = 24
PROTO_VER = 1

FLAG_USER_TYPE = 0x0001
FLAG_HAS_SCHEMA = 0x0002
FLAG_HAS_RAW = 0x0004
FLAG_OFFSET_ONE_BYTE = 0x0008
FLAG_OFFSET_TWO_BYTES = 0x0010
FLAG_COMPACT_FOOTER = 0x0020


class UnknownBinaryTypes(Exception):
    """Decoding met complex objects whose type or schema the registry does not hold.

    Not an ``IgniteError``: it asks the connection layer to fetch these types
    (op 3002), register them and decode the same bytes again.
    """

    def __init__(self, type_ids: frozenset[int]) -> None:
        super().__init__(f"unknown binary type ids: {sorted(type_ids)}")
        self.type_ids = type_ids


@dataclasses.dataclass(frozen=True, slots=True)
class BinaryField:
    """One field of a binary type: name, Java type code and field id."""

    name: str
    type_code: int
    field_id: int


@dataclasses.dataclass(frozen=True, slots=True)
class BinaryType:
    """Binary type metadata as ops 3002/3003 carry it (``BinaryMetadata``)."""

    type_id: int
    type_name: str
    affinity_key_field: str | None = None
    fields: tuple[BinaryField, ...] = ()
    is_enum: bool = False
    enum_values: tuple[tuple[str, int], ...] = ()
    schemas: tuple[tuple[int, tuple[int, ...]], ...] = ()


class BinaryObject:
    """A complex object with no registered Python class: type, fields by name, stored hash.

    ``raw`` holds the object's raw-data section when it has one.  Equal when type
    id and fields are equal; hashes by its Java hash so it can be a dict key.
    """

    __slots__ = ("fields", "java_hash_code", "raw", "type_id", "type_name")

    def __init__(self, type_name: str | None = None, fields: Mapping[str, Any] | None = None, *,
                 type_id: int | None = None, java_hash_code: int | None = None,
                 raw: bytes | None = None) -> None:
        if type_id is None:
            if type_name is None:
                raise LocalProtocolError("a BinaryObject needs a type name or a type id")
            type_id = _type_id(type_name)
        self.type_id: int = type_id
        self.type_name = type_name
        self.fields: dict[str, Any] = dict(fields or {})
        self.java_hash_code = java_hash_code
        self.raw = raw

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, BinaryObject) and self.type_id == other.type_id
                and self.fields == other.fields and self.raw == other.raw)

    def __hash__(self) -> int:
        return hash(self.type_id)  # equal objects may differ in the stored Java hash

    def __repr__(self) -> str:
        return f"BinaryObject({self.type_name or self.type_id!r}, {self.fields!r})"


_type_id = type_id

# Python type -> Java field type code used in metadata.
_FIELD_CODES: dict[Any, int] = {
    int: TypeCode.LONG, bool: TypeCode.BOOL, float: TypeCode.DOUBLE, str: TypeCode.STRING,
    bytes: TypeCode.BYTE_ARR, bytearray: TypeCode.BYTE_ARR, uuid.UUID: TypeCode.UUID,
    decimal.Decimal: TypeCode.DECIMAL, datetime.datetime: TypeCode.TIMESTAMP,
    datetime.date: TypeCode.DATE, datetime.time: TypeCode.TIME, list: TypeCode.COLLECTION,
    set: TypeCode.COLLECTION, frozenset: TypeCode.COLLECTION, dict: TypeCode.MAP,
    tuple: TypeCode.OBJ_ARR, BinaryObject: TypeCode.COMPLEX_OBJ,
}


def _hint_in(tp: Any) -> type[hints.Hint] | None:
    """The hint class in ``Annotated[int, Int]`` (the mypy-friendly spelling), if any."""
    if typing.get_origin(tp) is typing.Annotated:
        for extra in tp.__metadata__:
            if isinstance(extra, type) and issubclass(extra, hints.Hint):
                return extra
    return None


def field_type_code(tp: Any) -> int:
    """Metadata type code for an annotation or a value's type (``Object``/103 when unsure)."""
    hint = _hint_in(tp)
    if hint is not None:
        return hint.code
    if typing.get_origin(tp) is typing.Annotated:
        return field_type_code(tp.__origin__)
    code = _FIELD_CODES.get(tp)
    if code is not None:
        return code
    if isinstance(tp, type) and issubclass(tp, hints.Hint):
        return tp.code
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return field_type_code(args[0]) if len(args) == 1 else TypeCode.COMPLEX_OBJ
    if origin is not None:
        return field_type_code(origin)
    return TypeCode.COMPLEX_OBJ


def _coercer(tp: Any) -> Callable[[Any], Any] | None:
    """For a number-hint annotation (``x: Int``), the hint class that wraps plain values."""
    hint = _hint_in(tp)
    if hint is not None:
        return hint if issubclass(hint, hints._Number) else None
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coercer(args[0]) if len(args) == 1 else None
    if isinstance(tp, type) and issubclass(tp, hints._Number):
        return tp
    return None


class ClassInfo:
    """How a registered Python class is written and read: precomputed once per class."""

    __slots__ = (
        "cls",
        "coercers",
        "field_ids",
        "index_by_id",
        "is_dataclass",
        "meta",
        "names",
        "schema_id",
        "type_id",
        "type_name",
    )

    def __init__(self, cls: type, type_name: str, names: tuple[str, ...],
                 coercers: tuple[Callable[[Any], Any] | None, ...], meta: BinaryType) -> None:
        self.cls = cls
        self.type_id = meta.type_id
        self.type_name = type_name
        self.names = names
        self.coercers = coercers
        self.field_ids = tuple(f.field_id for f in meta.fields)
        self.schema_id = schema_id(self.field_ids)
        self.index_by_id = {fid: i for i, fid in enumerate(self.field_ids)}
        self.meta = meta
        self.is_dataclass = dataclasses.is_dataclass(cls)


class BinaryTypeRegistry:
    """Binary type metadata and schemas by id, and the Python classes bound to type names."""

    def __init__(self, *, compact_footer: bool = True) -> None:
        self.compact_footer = compact_footer
        self._types: dict[int, BinaryType] = {}
        self._schemas: dict[tuple[int, int], tuple[int, ...]] = {}
        self._names: dict[int, dict[int, str]] = {}
        self._by_class: dict[type, ClassInfo] = {}
        self._by_type_id: dict[int, ClassInfo] = {}
        self._pending: set[int] = set()

    # -- metadata -------------------------------------------------------------------------

    def register_type(self, meta: BinaryType, *, sent: bool = True) -> None:
        """Add metadata (from op 3002, or built locally with ``sent=False``), merged with what is known."""
        old = self._types.get(meta.type_id)
        if old is not None:
            known = {f.name for f in old.fields}
            fields = old.fields + tuple(f for f in meta.fields if f.name not in known)
            known_schemas = {s for s, _ in old.schemas}
            schemas = old.schemas + tuple(s for s in meta.schemas if s[0] not in known_schemas)
            changed = len(fields) != len(old.fields) or len(schemas) != len(old.schemas)
            meta = dataclasses.replace(
                old, fields=fields, schemas=schemas,
                type_name=meta.type_name or old.type_name,
                affinity_key_field=meta.affinity_key_field or old.affinity_key_field,
                is_enum=meta.is_enum or old.is_enum,
                enum_values=meta.enum_values or old.enum_values)
        else:
            changed = True
        self._types[meta.type_id] = meta
        names = self._names.setdefault(meta.type_id, {})
        for f in meta.fields:
            names[f.field_id] = f.name
        for sid, ids in meta.schemas:
            self._schemas[(meta.type_id, sid)] = tuple(ids)
        if changed and not sent:
            self._pending.add(meta.type_id)

    def get_type(self, type_id: int) -> BinaryType | None:
        """Metadata of a type id, if known."""
        return self._types.get(type_id)

    def schema(self, type_id: int, schema_id: int) -> tuple[int, ...] | None:
        """Field ids of a schema, in footer order, if known."""
        return self._schemas.get((type_id, schema_id))

    def field_names(self, type_id: int) -> dict[int, str] | None:
        """Field id -> name for a type, if its metadata is known."""
        return self._names.get(type_id)

    @property
    def has_pending(self) -> bool:
        """Whether some metadata still has to be sent (cheap; checked before every request)."""
        return bool(self._pending)

    def pending_types(self) -> list[BinaryType]:
        """Metadata the server has not been sent yet (send with op 3003)."""
        return [self._types[t] for t in sorted(self._pending)]

    def mark_sent(self, type_ids: Iterable[int] | None = None) -> None:
        """Forget pending metadata once op 3003 succeeded (all of it when ``type_ids`` is None)."""
        if type_ids is None:
            self._pending.clear()
        else:
            self._pending.difference_update(type_ids)

    # -- Python classes -------------------------------------------------------------------

    def register_class(self, cls: type, type_name: str | None = None, *,
                       fields: Mapping[str, Any] | None = None,
                       affinity_key_field: str | None = None) -> ClassInfo:
        """Bind ``cls`` to a binary type; ``fields`` maps name -> annotation-like type.

        Dataclasses need no ``fields``: their fields and annotations are used.
        Other classes must pass ``fields`` (read with ``getattr``, built with ``cls(**kw)``).
        """
        name = type_name or cls.__name__
        if fields is None:
            if not dataclasses.is_dataclass(cls):
                raise LocalProtocolError(f"{cls.__name__} is not a dataclass: pass fields=")
            try:
                hints_ = typing.get_type_hints(cls, include_extras=True)
            except Exception:  # unresolvable forward references: treat as Object
                hints_ = {}
            fields = {f.name: hints_.get(f.name, Any) for f in dataclasses.fields(cls)}
        names = tuple(fields)
        meta_fields = tuple(BinaryField(n, field_type_code(t), field_id(n)) for n, t in fields.items())
        tid = _type_id(name)
        ids = tuple(f.field_id for f in meta_fields)
        if len(set(ids)) != len(ids):
            raise LocalProtocolError(f"{cls.__name__}: two field names share a field id "
                                     "(names are case-insensitive)")
        meta = BinaryType(tid, name, affinity_key_field, meta_fields,
                          schemas=((schema_id(ids), ids),) if ids else ())
        info = ClassInfo(cls, name, names, tuple(_coercer(t) for t in fields.values()), meta)
        self._by_class[cls] = info
        self._by_type_id[tid] = info
        self.register_type(meta, sent=False)
        return info

    def info_for_class(self, cls: type) -> ClassInfo | None:
        """Write-side info for a class; dataclasses are registered on first use."""
        info = self._by_class.get(cls)
        if info is None and dataclasses.is_dataclass(cls):
            info = self.register_class(cls)
        return info

    def class_for(self, type_id: int) -> ClassInfo | None:
        """Read-side info for a type id bound to a Python class."""
        return self._by_type_id.get(type_id)

    def note_generic(self, obj: BinaryObject) -> tuple[tuple[int, ...], int]:
        """Field ids and schema id for writing a ``BinaryObject``; records new fields/schemas."""
        ids = tuple(field_id(n) for n in obj.fields)
        sid = schema_id(ids)
        names = self._names.get(obj.type_id)
        # Each write: names already known compare equal at once; only a different spelling is lower-cased.
        if len(set(ids)) != len(ids) or (names and any(names.get(fid, n) != n and names[fid].lower() != n.lower()
                                                       for n, fid in zip(obj.fields, ids, strict=True))):
            raise LocalProtocolError(_collision(obj, ids, names or {}))
        if names is None or (obj.type_id, sid) not in self._schemas or \
                any(fid not in names for fid in ids):
            if obj.type_name is None and obj.type_id not in self._types:
                raise LocalProtocolError(
                    f"BinaryObject of unknown type id {obj.type_id} needs a type_name")
            meta = BinaryType(
                obj.type_id, obj.type_name or self._types[obj.type_id].type_name, None,
                tuple(BinaryField(n, field_type_code(type(v)) if v is not None
                                  else TypeCode.COMPLEX_OBJ, fid)
                      for (n, v), fid in zip(obj.fields.items(), ids, strict=False)),
                schemas=((sid, ids),) if ids else ())
            self.register_type(meta, sent=False)
        return ids, sid


def _collision(obj: BinaryObject, ids: tuple[int, ...], known: dict[int, str]) -> str:
    """Which field names share a field id (Java's String.hashCode of the lower-cased name), as Ignite refuses."""
    seen: dict[int, str] = {}
    for name, fid in zip(obj.fields, ids, strict=True):
        other = seen.get(fid)
        if other is None and known.get(fid, name).lower() != name.lower():
            other = known[fid]
        if other is not None:
            return (f"{obj.type_name or obj.type_id}: fields {other!r} and {name!r} have the same field id {fid} "
                    "(the hash of the lower-cased name): rename one")
        seen[fid] = name
    return f"{obj.type_name or obj.type_id}: two fields share a field id"
