"""Explicit Java types for values Python cannot type on its own.

Rules of this file:

* A hint is a tiny slotted value object: ``Int(5)`` is "5 as a Java int"
  (type code 3) where a bare ``5`` would be a Java long.  Hints compare and
  hash by type and contents, so they work as dict keys.
* Hints hold data only; ``writer.py`` owns the bytes.  The only behaviour here is
  ``java_hash()``, the ``hashCode`` the server computes for the same Java value.
* Decoding never produces the number hints (``Int``, ``Short`` ...): a Java int
  comes back as a plain ``int``.  It does produce ``Enum``/``BinaryEnum`` (no
  Python equivalent), and ``Date``/``Timestamp``/``Time`` only for instants a
  ``datetime`` cannot hold.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from drivers.ignite.codec import hashing
from drivers.ignite.codec.typecodes import OBJECT_TYPE_ID, CollectionKind, MapKind, TypeCode
from drivers.ignite.errors import LocalProtocolError

_UTC = datetime.UTC
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)


def _slots(cls: type) -> tuple[str, ...]:
    got = _SLOTS.get(cls)
    if got is None:
        got = _SLOTS[cls] = tuple(
            s for c in reversed(cls.__mro__) for s in c.__dict__.get("__slots__", ()))
    return got


_SLOTS: dict[type, tuple[str, ...]] = {}


class Hint:
    """Base of all hints: equality and hashing by (type, fields)."""

    __slots__ = ()
    code: ClassVar[int] = 0

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in _slots(type(self)))

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(repr(v) for v in self._key())})"

    def java_hash(self) -> int:
        """The Java ``hashCode`` of the value this hint stands for."""
        raise LocalProtocolError(f"no Java hash for {type(self).__name__}")


class _Number(Hint):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Byte(_Number):
    """Java ``byte`` (type code 1), -128..127."""

    __slots__ = ()
    code = TypeCode.BYTE
    value: int

    def java_hash(self) -> int:
        return hashing.i32(((self.value + 128) & 0xFF) - 128)


class Short(_Number):
    """Java ``short`` (type code 2)."""

    __slots__ = ()
    code = TypeCode.SHORT
    value: int

    def java_hash(self) -> int:
        return hashing.i32(((self.value + 32768) & 0xFFFF) - 32768)


class Int(_Number):
    """Java ``int`` (type code 3)."""

    __slots__ = ()
    code = TypeCode.INT
    value: int

    def java_hash(self) -> int:
        return hashing.i32(self.value)


class Long(_Number):
    """Java ``long`` (type code 4); what a bare ``int`` is already."""

    __slots__ = ()
    code = TypeCode.LONG
    value: int

    def java_hash(self) -> int:
        return hashing.long_hash(self.value)


class Float(_Number):
    """Java ``float`` (type code 5)."""

    __slots__ = ()
    code = TypeCode.FLOAT
    value: float

    def java_hash(self) -> int:
        return hashing.float_hash(self.value)


class Double(_Number):
    """Java ``double`` (type code 6); what a bare ``float`` is already."""

    __slots__ = ()
    code = TypeCode.DOUBLE
    value: float

    def java_hash(self) -> int:
        return hashing.double_hash(self.value)


class Char(_Number):
    """Java ``char`` (type code 7): a one-character ``str`` in the BMP."""

    __slots__ = ()
    code = TypeCode.CHAR
    value: str

    def java_hash(self) -> int:
        return ord(self.value)


def _ms_to_datetime(ms: int, micros: int = 0) -> datetime.datetime:
    return _EPOCH + datetime.timedelta(milliseconds=ms, microseconds=micros)


def datetime_to_ms(value: datetime.datetime) -> tuple[int, int]:
    """(epoch milliseconds, nanoseconds within the millisecond); naive means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    delta = value - _EPOCH
    us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    ms, rest = divmod(us, 1000)
    return ms, rest * 1000


class Date(Hint):
    """Java ``java.util.Date`` (type code 11) as epoch milliseconds."""

    __slots__ = ("ms",)
    code = TypeCode.DATE

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def to_datetime(self) -> datetime.datetime:
        return _ms_to_datetime(self.ms)

    def java_hash(self) -> int:
        return hashing.long_hash(self.ms)


class Timestamp(Hint):
    """Java ``java.sql.Timestamp`` (type code 33): epoch ms plus nanoseconds within the ms."""

    __slots__ = ("ms", "nanos")
    code = TypeCode.TIMESTAMP

    def __init__(self, ms: int, nanos: int = 0) -> None:
        self.ms = ms
        self.nanos = nanos

    @classmethod
    def from_datetime(cls, value: datetime.datetime, nanos: int | None = None) -> Timestamp:
        """From a datetime; ``nanos`` (0..999999) replaces its sub-millisecond part."""
        ms, ns = datetime_to_ms(value)
        return cls(ms, ns if nanos is None else nanos)

    def to_datetime(self) -> datetime.datetime:
        """The instant as an aware UTC datetime (nanoseconds below 1 µs dropped)."""
        return _ms_to_datetime(self.ms, self.nanos // 1000)

    def java_hash(self) -> int:
        return hashing.long_hash(self.ms)


class Time(Hint):
    """Java ``java.sql.Time`` (type code 36) as milliseconds (since midnight for a time of day)."""

    __slots__ = ("ms",)
    code = TypeCode.TIME

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def to_time(self) -> datetime.time:
        ms = self.ms % 86_400_000
        s, ms = divmod(ms, 1000)
        m, s = divmod(s, 60)
        h, m = divmod(m, 60)
        return datetime.time(h, m, s, ms * 1000)

    def java_hash(self) -> int:
        return hashing.long_hash(self.ms)


class Enum(Hint):
    """A Java enum constant (type code 28) by binary type id and ordinal."""

    __slots__ = ("ordinal", "type_id")
    code = TypeCode.ENUM

    def __init__(self, type_id: int, ordinal: int) -> None:
        self.type_id = type_id
        self.ordinal = ordinal

    def java_hash(self) -> int:
        return hashing.i32(31 * self.type_id + self.ordinal)  # BinaryEnumObjectImpl.hashCode


class BinaryEnum(Enum):
    """A binary enum constant (type code 38), as the server writes enums it holds in binary form."""

    __slots__ = ()
    code = TypeCode.BINARY_ENUM


class _Array(Hint):
    __slots__ = ("items",)
    elem: ClassVar[int] = 0

    def __init__(self, items: Iterable[Any]) -> None:
        self.items = tuple(items)


class ByteArray(_Array):
    """Java ``byte[]`` from ints in -128..127 (``bytes`` values map to byte[] already)."""

    __slots__ = ()
    code = TypeCode.BYTE_ARR


class ShortArray(_Array):
    __slots__ = ()
    code = TypeCode.SHORT_ARR


class IntArray(_Array):
    __slots__ = ()
    code = TypeCode.INT_ARR


class LongArray(_Array):
    __slots__ = ()
    code = TypeCode.LONG_ARR


class FloatArray(_Array):
    __slots__ = ()
    code = TypeCode.FLOAT_ARR


class DoubleArray(_Array):
    __slots__ = ()
    code = TypeCode.DOUBLE_ARR


class CharArray(_Array):
    """Java ``char[]`` from one-character strings (or a str, one char per unit)."""

    __slots__ = ()
    code = TypeCode.CHAR_ARR


class BoolArray(_Array):
    __slots__ = ()
    code = TypeCode.BOOL_ARR


class StringArray(_Array):
    __slots__ = ()
    code = TypeCode.STRING_ARR


class UUIDArray(_Array):
    __slots__ = ()
    code = TypeCode.UUID_ARR


class DateArray(_Array):
    """Java ``Date[]`` from ``datetime``/``date``/``Date`` items (or None)."""

    __slots__ = ()
    code = TypeCode.DATE_ARR


class TimestampArray(_Array):
    __slots__ = ()
    code = TypeCode.TIMESTAMP_ARR


class TimeArray(_Array):
    __slots__ = ()
    code = TypeCode.TIME_ARR


class DecimalArray(_Array):
    __slots__ = ()
    code = TypeCode.DECIMAL_ARR


class EnumArray(Hint):
    """Java enum array (type code 29): element type id and ``Enum``/``BinaryEnum``/None items."""

    __slots__ = ("items", "type_id")
    code = TypeCode.ENUM_ARR

    def __init__(self, type_id: int, items: Iterable[Enum | None]) -> None:
        self.type_id = type_id
        self.items = tuple(items)


class ObjectArray(Hint):
    """Java ``Object[]`` (type code 23) with its component type id (-1 = ``Object``)."""

    __slots__ = ("items", "type_id")
    code = TypeCode.OBJ_ARR

    def __init__(self, items: Iterable[Any], type_id: int = OBJECT_TYPE_ID) -> None:
        self.items = tuple(items)
        self.type_id = type_id


class Collection(Hint):
    """A Java collection (type code 24) of a given kind (``CollectionKind``)."""

    __slots__ = ("items", "kind")
    code = TypeCode.COLLECTION

    def __init__(self, kind: int, items: Iterable[Any]) -> None:
        self.kind = kind
        self.items = tuple(items)


class Map(Hint):
    """A Java map (type code 25) of a given kind (``MapKind``)."""

    __slots__ = ("kind", "mapping")
    code = TypeCode.MAP

    def __init__(self, kind: int, mapping: Mapping[Any, Any]) -> None:
        self.kind = kind
        self.mapping = dict(mapping)

    def _key(self) -> tuple[Any, ...]:
        return (self.kind, tuple(self.mapping.items()))


class WrappedObject(Hint):
    """A wrapped binary object (type code 27): raw object bytes and the offset of the value in them."""

    __slots__ = ("offset", "payload")
    code = TypeCode.BINARY_OBJ

    def __init__(self, payload: bytes, offset: int = 0) -> None:
        self.payload = bytes(payload)
        self.offset = offset


ARRAY_LIST = CollectionKind.ARRAY_LIST
HASH_SET = CollectionKind.HASH_SET
HASH_MAP = MapKind.HASH_MAP
LINKED_HASH_MAP = MapKind.LINKED_HASH_MAP

NUMBER_HINTS: tuple[type[_Number], ...] = (Byte, Short, Int, Long, Float, Double, Char)
ARRAY_HINTS: tuple[type[_Array], ...] = (
    ByteArray, ShortArray, IntArray, LongArray, FloatArray, DoubleArray, CharArray, BoolArray,
    StringArray, UUIDArray, DateArray, TimestampArray, TimeArray, DecimalArray)

__all__ = [
    "BinaryEnum",
    "BoolArray",
    "Byte",
    "ByteArray",
    "Char",
    "CharArray",
    "Collection",
    "Date",
    "DateArray",
    "DecimalArray",
    "Double",
    "DoubleArray",
    "Enum",
    "EnumArray",
    "Float",
    "FloatArray",
    "Hint",
    "Int",
    "IntArray",
    "Long",
    "LongArray",
    "Map",
    "ObjectArray",
    "Short",
    "ShortArray",
    "StringArray",
    "Time",
    "TimeArray",
    "Timestamp",
    "TimestampArray",
    "UUIDArray",
    "WrappedObject",
    "datetime_to_ms",
]
