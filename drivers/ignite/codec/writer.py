"""Python values -> Ignite typed values, appended to a ``bytearray``.

Rules of this file:

* ``write_value(buf, value, registry)`` appends exactly one typed value (type
  code first) and nothing else.  It is chosen by ``type(value)`` through one
  dispatch dict; subclasses, dataclasses and registered classes fall back to
  ``_resolve`` once per call.
* Every struct is precompiled at import.  Nothing here allocates a class per call.
* A value that cannot be encoded raises ``LocalProtocolError`` naming its Python
  type and value; ``struct.error``/``OverflowError``/``UnicodeEncodeError`` never leak.
* Layouts follow ``BinaryWriterExImpl``: primitive arrays are a length and packed
  items; arrays of String/UUID/Date/Timestamp/Time/Decimal hold typed items
  (or 101 for null); Decimal is scale + magnitude bytes (big-endian, sign in the
  top bit of the first byte).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import struct
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from drivers.ignite.codec import hints
from drivers.ignite.codec.binary import (
    FLAG_COMPACT_FOOTER,
    FLAG_HAS_SCHEMA,
    FLAG_OFFSET_ONE_BYTE,
    FLAG_OFFSET_TWO_BYTES,
    FLAG_USER_TYPE,
    HEADER_SIZE,
    PROTO_VER,
    BinaryObject,
    BinaryTypeRegistry,
    ClassInfo,
)
from drivers.ignite.codec.hashing import binary_object_hash
from drivers.ignite.codec.typecodes import CollectionKind, MapKind, TypeCode
from drivers.ignite.errors import LocalProtocolError

Writer = Callable[[bytearray, Any, BinaryTypeRegistry], None]

_CODE = struct.Struct("<B")
_BYTE = struct.Struct("<Bb")
_SHORT = struct.Struct("<Bh")
_INT = struct.Struct("<Bi")
_LONG = struct.Struct("<Bq")
_FLOAT = struct.Struct("<Bf")
_DOUBLE = struct.Struct("<Bd")
_CHAR = struct.Struct("<BH")
_BOOL = struct.Struct("<B?")
_UUID = struct.Struct("<BQQ")
_TIMESTAMP = struct.Struct("<Bqi")
_CODE_LEN = struct.Struct("<Bi")
_CODE_LEN_KIND = struct.Struct("<Bib")
_CODE_ID_LEN = struct.Struct("<Bii")
_CODE_ID_ORD = struct.Struct("<Bii")
_DECIMAL_HEAD = struct.Struct("<Bii")
_WRAPPED_TAIL = struct.Struct("<i")
_HEADER = struct.Struct("<BBhiiiii")

_NULL = bytes([TypeCode.NULL])
_TRUE = _BOOL.pack(TypeCode.BOOL, True)
_FALSE = _BOOL.pack(TypeCode.BOOL, False)
_U64 = (1 << 64) - 1
_EPOCH_DATE = datetime.date(1970, 1, 1)
_DAY_MS = 86_400_000
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)


def write_value(buf: bytearray, value: Any, registry: BinaryTypeRegistry) -> None:
    """Append ``value`` as one typed Ignite value."""
    try:
        w = _WRITERS.get(type(value))
        if w is None:
            w = _resolve(value, registry)
        w(buf, value, registry)
    except LocalProtocolError:
        raise
    except (struct.error, OverflowError, UnicodeEncodeError, TypeError, ValueError) as exc:
        raise LocalProtocolError(
            f"cannot encode {type(value).__name__} value {_short(value)}: {exc}") from exc
    except RecursionError as exc:
        raise LocalProtocolError(
            f"cannot encode {type(value).__name__}: nested too deeply (or cyclic)") from exc


def _short(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


def _resolve(value: Any, registry: BinaryTypeRegistry) -> Writer:
    cls = type(value)
    info = registry.info_for_class(cls)
    if info is not None:
        return _class_writer(info)
    for base, w in _SUBCLASS_WRITERS:
        if isinstance(value, base):
            return w
    raise LocalProtocolError(
        f"cannot encode {cls.__name__} value {_short(value)}: no Ignite type for it "
        f"(use a hint from drivers.ignite.codec.hints, or register the class)")


# -- scalars -------------------------------------------------------------------------------

def _w_null(buf: bytearray, v: Any, r: BinaryTypeRegistry) -> None:
    buf += _NULL


def _w_bool(buf: bytearray, v: bool, r: BinaryTypeRegistry) -> None:
    buf += _TRUE if v else _FALSE


def _w_long(buf: bytearray, v: int, r: BinaryTypeRegistry) -> None:
    try:
        buf += _LONG.pack(TypeCode.LONG, v)
    except struct.error:
        raise LocalProtocolError(
            f"int {_short(v)} is outside the Java long range; use a Decimal") from None


def _w_double(buf: bytearray, v: float, r: BinaryTypeRegistry) -> None:
    buf += _DOUBLE.pack(TypeCode.DOUBLE, v)


def _w_str(buf: bytearray, v: str, r: BinaryTypeRegistry) -> None:
    b = v.encode("utf-8")
    buf += _CODE_LEN.pack(TypeCode.STRING, len(b))
    buf += b


def _w_bytes(buf: bytearray, v: bytes, r: BinaryTypeRegistry) -> None:
    buf += _CODE_LEN.pack(TypeCode.BYTE_ARR, len(v))
    buf += v


def _w_uuid(buf: bytearray, v: uuid.UUID, r: BinaryTypeRegistry) -> None:
    i = v.int
    buf += _UUID.pack(TypeCode.UUID, i >> 64, i & _U64)


def _decimal_parts(v: decimal.Decimal) -> tuple[int, bytes]:
    if not v.is_finite():
        raise LocalProtocolError(f"Decimal {v} has no Java BigDecimal form")
    exp = v.as_tuple().exponent
    assert isinstance(exp, int)
    unscaled = int(v.scaleb(-exp, context=_EXACT))
    mag = abs(unscaled)
    # BigInteger.toByteArray of the magnitude: minimal big-endian two's complement (so the
    # top bit is free), then Ignite ORs the sign into that bit.
    raw = bytearray(mag.to_bytes(mag.bit_length() // 8 + 1, "big"))
    if unscaled < 0:
        raw[0] |= 0x80
    return -exp, bytes(raw)


def _w_decimal(buf: bytearray, v: decimal.Decimal, r: BinaryTypeRegistry) -> None:
    scale, raw = _decimal_parts(v)
    buf += _DECIMAL_HEAD.pack(TypeCode.DECIMAL, scale, len(raw))
    buf += raw


def _w_datetime(buf: bytearray, v: datetime.datetime, r: BinaryTypeRegistry) -> None:
    ms, ns = hints.datetime_to_ms(v)
    buf += _TIMESTAMP.pack(TypeCode.TIMESTAMP, ms, ns)


def _date_ms(v: datetime.date) -> int:
    return (v - _EPOCH_DATE).days * _DAY_MS


def _w_date(buf: bytearray, v: datetime.date, r: BinaryTypeRegistry) -> None:
    buf += _LONG.pack(TypeCode.DATE, _date_ms(v))


def _time_ms(v: datetime.time) -> int:
    return ((v.hour * 60 + v.minute) * 60 + v.second) * 1000 + v.microsecond // 1000


def _w_time(buf: bytearray, v: datetime.time, r: BinaryTypeRegistry) -> None:
    buf += _LONG.pack(TypeCode.TIME, _time_ms(v))


# -- hinted scalars ------------------------------------------------------------------------

def _packer(s: struct.Struct, code: int) -> Writer:
    pack = s.pack

    def w(buf: bytearray, v: Any, r: BinaryTypeRegistry) -> None:
        buf += pack(code, v.value)
    return w


def _w_char(buf: bytearray, v: hints.Char, r: BinaryTypeRegistry) -> None:
    buf += _CHAR.pack(TypeCode.CHAR, _unit(v.value))


def _unit(c: Any) -> int:
    if isinstance(c, int):
        return c
    if not isinstance(c, str) or len(c) != 1 or ord(c) > 0xFFFF:
        raise LocalProtocolError(f"a Java char is one BMP character, got {c!r}")
    return ord(c)


def _w_hdate(buf: bytearray, v: hints.Date, r: BinaryTypeRegistry) -> None:
    buf += _LONG.pack(TypeCode.DATE, v.ms)


def _w_htimestamp(buf: bytearray, v: hints.Timestamp, r: BinaryTypeRegistry) -> None:
    if not 0 <= v.nanos < 1_000_000:
        raise LocalProtocolError(f"Timestamp nanos must be 0..999999 (within the ms), got {v.nanos}")
    buf += _TIMESTAMP.pack(TypeCode.TIMESTAMP, v.ms, v.nanos)


def _w_htime(buf: bytearray, v: hints.Time, r: BinaryTypeRegistry) -> None:
    buf += _LONG.pack(TypeCode.TIME, v.ms)


def _w_enum(buf: bytearray, v: hints.Enum, r: BinaryTypeRegistry) -> None:
    if v.type_id == 0:
        raise LocalProtocolError(f"{v!r}: type id 0 (unregistered class) cannot be written")
    buf += _CODE_ID_ORD.pack(v.code, v.type_id, v.ordinal)


# -- arrays --------------------------------------------------------------------------------

@lru_cache(maxsize=256)
def _items_struct(fmt: str, n: int) -> struct.Struct:
    return struct.Struct(f"<{n}{fmt}")


def _primitive_array(code: int, fmt: str) -> Writer:
    def w(buf: bytearray, v: Any, r: BinaryTypeRegistry) -> None:
        items = v.items
        n = len(items)
        buf += _CODE_LEN.pack(code, n)
        if n:
            buf += _items_struct(fmt, n).pack(*items) if n <= 4096 else \
                struct.pack(f"<{n}{fmt}", *items)
    return w


def _w_char_array(buf: bytearray, v: hints.CharArray, r: BinaryTypeRegistry) -> None:
    items = v.items
    if len(items) == 1 and isinstance(items[0], str) and len(items[0]) != 1:
        units = memoryview(items[0].encode("utf-16-le", "surrogatepass")).cast("H").tolist()
    else:
        units = [_unit(c) for c in items]
    buf += _CODE_LEN.pack(TypeCode.CHAR_ARR, len(units))
    if units:
        buf += struct.pack(f"<{len(units)}H", *units)


def _typed_array(code: int, item: Writer, accepts: tuple[type, ...]) -> Writer:
    def w(buf: bytearray, v: Any, r: BinaryTypeRegistry) -> None:
        buf += _CODE_LEN.pack(code, len(v.items))
        for x in v.items:
            if x is None:
                buf += _NULL
            elif isinstance(x, accepts):
                item(buf, x, r)
            else:
                raise LocalProtocolError(
                    f"{type(v).__name__} item {_short(x)} is not one of "
                    f"{', '.join(t.__name__ for t in accepts)}")
    return w


def _w_date_item(buf: bytearray, x: Any, r: BinaryTypeRegistry) -> None:
    if isinstance(x, hints.Date):
        buf += _LONG.pack(TypeCode.DATE, x.ms)
    elif isinstance(x, datetime.datetime):
        buf += _LONG.pack(TypeCode.DATE, hints.datetime_to_ms(x)[0])
    else:
        buf += _LONG.pack(TypeCode.DATE, _date_ms(x))


def _w_timestamp_item(buf: bytearray, x: Any, r: BinaryTypeRegistry) -> None:
    if isinstance(x, hints.Timestamp):
        _w_htimestamp(buf, x, r)
    else:
        _w_datetime(buf, x, r)


def _w_time_item(buf: bytearray, x: Any, r: BinaryTypeRegistry) -> None:
    if isinstance(x, hints.Time):
        buf += _LONG.pack(TypeCode.TIME, x.ms)
    else:
        _w_time(buf, x, r)


def _w_enum_array(buf: bytearray, v: hints.EnumArray, r: BinaryTypeRegistry) -> None:
    if v.type_id == 0:
        raise LocalProtocolError("EnumArray type id 0 (unregistered class) cannot be written")
    buf += _CODE_ID_LEN.pack(TypeCode.ENUM_ARR, v.type_id, len(v.items))
    for x in v.items:
        if x is None:
            buf += _NULL
        elif isinstance(x, hints.Enum):
            _w_enum(buf, x, r)
        else:
            raise LocalProtocolError(f"EnumArray item {_short(x)} is not an Enum hint")


# -- containers ----------------------------------------------------------------------------

def _w_list(buf: bytearray, v: list[Any], r: BinaryTypeRegistry) -> None:
    buf += _CODE_LEN_KIND.pack(TypeCode.COLLECTION, len(v), CollectionKind.ARRAY_LIST)
    for x in v:
        write_value(buf, x, r)


def _w_set(buf: bytearray, v: set[Any], r: BinaryTypeRegistry) -> None:
    buf += _CODE_LEN_KIND.pack(TypeCode.COLLECTION, len(v), CollectionKind.HASH_SET)
    for x in v:
        write_value(buf, x, r)


def _w_tuple(buf: bytearray, v: tuple[Any, ...], r: BinaryTypeRegistry) -> None:
    buf += _CODE_ID_LEN.pack(TypeCode.OBJ_ARR, -1, len(v))
    for x in v:
        write_value(buf, x, r)


def _w_dict(buf: bytearray, v: dict[Any, Any], r: BinaryTypeRegistry) -> None:
    buf += _CODE_LEN_KIND.pack(TypeCode.MAP, len(v), MapKind.HASH_MAP)
    for k, x in v.items():
        write_value(buf, k, r)
        write_value(buf, x, r)


def _w_collection(buf: bytearray, v: hints.Collection, r: BinaryTypeRegistry) -> None:
    buf += _CODE_LEN_KIND.pack(TypeCode.COLLECTION, len(v.items), v.kind)
    for x in v.items:
        write_value(buf, x, r)


def _w_map(buf: bytearray, v: hints.Map, r: BinaryTypeRegistry) -> None:
    buf += _CODE_LEN_KIND.pack(TypeCode.MAP, len(v.mapping), v.kind)
    for k, x in v.mapping.items():
        write_value(buf, k, r)
        write_value(buf, x, r)


def _w_object_array(buf: bytearray, v: hints.ObjectArray, r: BinaryTypeRegistry) -> None:
    if v.type_id == 0:
        raise LocalProtocolError("ObjectArray type id 0 (unregistered class) cannot be written")
    buf += _CODE_ID_LEN.pack(TypeCode.OBJ_ARR, v.type_id, len(v.items))
    for x in v.items:
        write_value(buf, x, r)


def _w_wrapped(buf: bytearray, v: hints.WrappedObject, r: BinaryTypeRegistry) -> None:
    buf += _CODE_LEN.pack(TypeCode.BINARY_OBJ, len(v.payload))
    buf += v.payload
    buf += _WRAPPED_TAIL.pack(v.offset)


# -- complex objects -----------------------------------------------------------------------

@lru_cache(maxsize=1024)
def _footer_struct(n: int, off_fmt: str, compact: bool) -> struct.Struct:
    return struct.Struct("<" + (off_fmt * n if compact else ("i" + off_fmt) * n))


def write_object(buf: bytearray, type_id: int, field_ids: tuple[int, ...], schema_id: int,
                 values: list[Any] | tuple[Any, ...], *, registry: BinaryTypeRegistry) -> None:
    """Append a complex object of ``type_id`` with these field values (in ``field_ids`` order)."""
    start = len(buf)
    buf += bytes(HEADER_SIZE)
    offsets = []
    for x in values:
        offsets.append(len(buf) - start)
        write_value(buf, x, registry)
    data_end = len(buf)
    flags = FLAG_USER_TYPE
    compact = registry.compact_footer
    if compact:
        flags |= FLAG_COMPACT_FOOTER
    if offsets:
        last = offsets[-1]
        if last < 0x100:
            fmt, flags = "B", flags | FLAG_OFFSET_ONE_BYTE
        elif last < 0x10000:
            fmt, flags = "H", flags | FLAG_OFFSET_TWO_BYTES
        else:
            fmt = "i"
        flags |= FLAG_HAS_SCHEMA
        footer = _footer_struct(len(offsets), fmt, compact)
        if compact:
            buf += footer.pack(*offsets)
        else:
            flat: list[int] = []
            for fid, off in zip(field_ids, offsets, strict=False):
                flat += (fid, off)
            buf += footer.pack(*flat)
        schema_off = data_end - start
    else:
        schema_id = 0
        schema_off = 0
    with memoryview(buf) as mv:
        h = binary_object_hash(mv[start + HEADER_SIZE:data_end])
    _HEADER.pack_into(buf, start, TypeCode.COMPLEX_OBJ, PROTO_VER, flags, type_id, h,
                      len(buf) - start, schema_id, schema_off)


def _class_writer(info: ClassInfo) -> Writer:
    names = info.names
    coercers = info.coercers
    tid, fids, sid = info.type_id, info.field_ids, info.schema_id

    def w(buf: bytearray, v: Any, r: BinaryTypeRegistry) -> None:
        values = []
        for name, co in zip(names, coercers, strict=False):
            x = getattr(v, name)
            if co is not None and x is not None and type(x) is not co:
                x = co(x)
            values.append(x)
        write_object(buf, tid, fids, sid, values, registry=r)
    return w


def _w_binary_object(buf: bytearray, v: BinaryObject, r: BinaryTypeRegistry) -> None:
    ids, sid = r.note_generic(v)
    write_object(buf, v.type_id, ids, sid, list(v.fields.values()), registry=r)


def _w_py_enum(buf: bytearray, v: enum.Enum, r: BinaryTypeRegistry) -> None:
    raise LocalProtocolError(
        f"cannot encode enum member {v!r}: use hints.BinaryEnum(type_id, ordinal) or its value")


_WRITERS: dict[type, Writer] = {
    type(None): _w_null,
    bool: _w_bool,
    int: _w_long,
    float: _w_double,
    str: _w_str,
    bytes: _w_bytes,
    bytearray: _w_bytes,
    memoryview: _w_bytes,
    uuid.UUID: _w_uuid,
    decimal.Decimal: _w_decimal,
    datetime.datetime: _w_datetime,
    datetime.date: _w_date,
    datetime.time: _w_time,
    list: _w_list,
    tuple: _w_tuple,
    dict: _w_dict,
    set: _w_set,
    frozenset: _w_set,
    BinaryObject: _w_binary_object,
    hints.Byte: _packer(_BYTE, TypeCode.BYTE),
    hints.Short: _packer(_SHORT, TypeCode.SHORT),
    hints.Int: _packer(_INT, TypeCode.INT),
    hints.Long: _packer(_LONG, TypeCode.LONG),
    hints.Float: _packer(_FLOAT, TypeCode.FLOAT),
    hints.Double: _packer(_DOUBLE, TypeCode.DOUBLE),
    hints.Char: _w_char,
    hints.Date: _w_hdate,
    hints.Timestamp: _w_htimestamp,
    hints.Time: _w_htime,
    hints.Enum: _w_enum,
    hints.BinaryEnum: _w_enum,
    hints.ByteArray: _primitive_array(TypeCode.BYTE_ARR, "b"),
    hints.ShortArray: _primitive_array(TypeCode.SHORT_ARR, "h"),
    hints.IntArray: _primitive_array(TypeCode.INT_ARR, "i"),
    hints.LongArray: _primitive_array(TypeCode.LONG_ARR, "q"),
    hints.FloatArray: _primitive_array(TypeCode.FLOAT_ARR, "f"),
    hints.DoubleArray: _primitive_array(TypeCode.DOUBLE_ARR, "d"),
    hints.BoolArray: _primitive_array(TypeCode.BOOL_ARR, "?"),
    hints.CharArray: _w_char_array,
    hints.StringArray: _typed_array(TypeCode.STRING_ARR, _w_str, (str,)),
    hints.UUIDArray: _typed_array(TypeCode.UUID_ARR, _w_uuid, (uuid.UUID,)),
    hints.DateArray: _typed_array(TypeCode.DATE_ARR, _w_date_item,
                                  (datetime.date, hints.Date)),
    hints.TimestampArray: _typed_array(TypeCode.TIMESTAMP_ARR, _w_timestamp_item,
                                       (datetime.datetime, hints.Timestamp)),
    hints.TimeArray: _typed_array(TypeCode.TIME_ARR, _w_time_item, (datetime.time, hints.Time)),
    hints.DecimalArray: _typed_array(TypeCode.DECIMAL_ARR, _w_decimal, (decimal.Decimal,)),
    hints.EnumArray: _w_enum_array,
    hints.ObjectArray: _w_object_array,
    hints.Collection: _w_collection,
    hints.Map: _w_map,
    hints.WrappedObject: _w_wrapped,
}

# Checked in order for types missing from _WRITERS (subclasses): most specific first.
_SUBCLASS_WRITERS: tuple[tuple[type, Writer], ...] = (
    (bool, _w_bool),
    (int, _w_long),
    (float, _w_double),
    (str, _w_str),
    (enum.Enum, _w_py_enum),
    (bytes, _w_bytes),
    (bytearray, _w_bytes),
    (datetime.datetime, _w_datetime),
    (datetime.date, _w_date),
    (datetime.time, _w_time),
    (decimal.Decimal, _w_decimal),
    (uuid.UUID, _w_uuid),
    (list, _w_list),
    (tuple, _w_tuple),
    (dict, _w_dict),
    (set, _w_set),
    (frozenset, _w_set),
)

__all__ = ["write_object", "write_value"]
