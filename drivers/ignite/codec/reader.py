"""Ignite typed values -> Python values, read from a ``memoryview`` at an offset.

Rules of this file:

* ``read_value(data, offset, registry)`` reads one typed value and returns it
  with the offset just past it.  Readers are chosen by type code through one
  dispatch dict and work on absolute offsets into ``data``: nothing is copied
  except the bytes a value itself owns.
* Decoding never waits and never fetches.  A complex object whose type or
  schema the registry lacks is skipped (its length is in its header) and its
  type id collected; once the whole value (or page, through ``ReadContext``)
  has been read, ``UnknownBinaryTypes`` names every missing id at once.
* Bad bytes raise ``RemoteProtocolError`` saying what and where: unknown type
  codes, negative lengths, lengths or offsets past the end, nesting deeper than
  ``MAX_DEPTH``.  ``struct.error``, ``IndexError``, ``UnicodeDecodeError`` and
  ``RecursionError`` never leak out.
* Handles (type code 102, "same object as N bytes back") are followed; their
  target must lie before them.  Cyclic object graphs are refused (depth limit).
"""

from __future__ import annotations

import datetime
import decimal
import struct
import uuid
from collections.abc import Callable
from typing import Any

from drivers.ignite.codec import hints
from drivers.ignite.codec.binary import (
    FLAG_COMPACT_FOOTER,
    FLAG_HAS_RAW,
    FLAG_HAS_SCHEMA,
    FLAG_OFFSET_ONE_BYTE,
    FLAG_OFFSET_TWO_BYTES,
    HEADER_SIZE,
    PROTO_VER,
    BinaryObject,
    BinaryTypeRegistry,
    UnknownBinaryTypes,
)
from drivers.ignite.codec.typecodes import SET_KINDS, CollectionKind, MapKind, TypeCode
from drivers.ignite.errors import RemoteProtocolError

MAX_DEPTH = 100

_I8 = struct.Struct("<b")
_I16 = struct.Struct("<h")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
_U16 = struct.Struct("<H")
_U64X2 = struct.Struct("<QQ")
_I64_I32 = struct.Struct("<qi")
_I32X2 = struct.Struct("<ii")
_I32_I8 = struct.Struct("<ib")
_HEADER = struct.Struct("<BBhiiiii")

_UTC = datetime.UTC
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=_UTC)
_DAY_MS = 86_400_000
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_COLLECTION_KINDS = frozenset(int(k) for k in CollectionKind)
_MAP_KINDS = frozenset(int(k) for k in MapKind)


class ReadContext:
    """State shared by the reads of one payload: registry, unknown type ids, depth, handles."""

    __slots__ = ("depth", "handles", "registry", "unknown")

    def __init__(self, registry: BinaryTypeRegistry) -> None:
        self.registry = registry
        self.unknown: set[int] = set()
        self.depth = 0
        self.handles: dict[int, Any] = {}

    def child(self) -> ReadContext:
        """A context for a nested buffer (wrapped object): own handle positions, shared rest."""
        c = ReadContext(self.registry)
        c.unknown = self.unknown
        c.depth = self.depth
        return c

    def finish(self) -> None:
        """Raise ``UnknownBinaryTypes`` if any complex object could not be decoded."""
        if self.unknown:
            raise UnknownBinaryTypes(frozenset(self.unknown))


Reader = Callable[[memoryview, int, ReadContext], tuple[Any, int]]


def read_value(data: memoryview, offset: int, registry: BinaryTypeRegistry) -> tuple[Any, int]:
    """Read one typed value at ``offset``; return it and the offset just past it."""
    ctx = ReadContext(registry)
    result = read_with(data, offset, ctx)
    ctx.finish()
    return result


def read_values(data: memoryview, offset: int, count: int,
                registry: BinaryTypeRegistry) -> tuple[list[Any], int]:
    """Read ``count`` consecutive typed values, collecting unknown types across all of them."""
    ctx = ReadContext(registry)
    out, offset = read_many(data, offset, count, ctx)
    ctx.finish()
    return out, offset


def read_with(data: memoryview, offset: int, ctx: ReadContext) -> tuple[Any, int]:
    """Read one typed value within a ``ReadContext`` (call ``ctx.finish()`` when done)."""
    try:
        return _read(data, offset, ctx)
    except (RemoteProtocolError, UnknownBinaryTypes):
        raise
    except (struct.error, IndexError, ValueError, OverflowError, TypeError, KeyError,
            RecursionError, decimal.DecimalException) as exc:
        raise RemoteProtocolError(
            f"malformed value at offset {offset}: {type(exc).__name__}: {exc}") from exc


def read_many(data: memoryview, offset: int, count: int, ctx: ReadContext) -> tuple[list[Any], int]:
    """Read ``count`` consecutive typed values within a ``ReadContext`` (one error boundary)."""
    out: list[Any] = []
    append = out.append
    readers = _READERS
    pos = offset
    try:
        for _ in range(count):
            r = readers.get(data[pos])  # IndexError past the end: converted below
            if r is None:
                raise RemoteProtocolError(f"unknown type code {data[pos]} at offset {pos}")
            v, pos = r(data, pos + 1, ctx)
            append(v)
    except (RemoteProtocolError, UnknownBinaryTypes):
        raise
    except (struct.error, IndexError, ValueError, OverflowError, TypeError, KeyError,
            RecursionError, decimal.DecimalException) as exc:
        raise RemoteProtocolError(
            f"malformed value at or after offset {pos}: {type(exc).__name__}: {exc}") from exc
    return out, pos


def _read(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    if pos >= len(data):
        raise RemoteProtocolError(f"value expected at offset {pos}, but the data ends at {len(data)}")
    code = data[pos]
    r = _READERS.get(code)
    if r is None:
        raise RemoteProtocolError(f"unknown type code {code} at offset {pos}")
    return r(data, pos + 1, ctx)


def _need(data: memoryview, pos: int, n: int, what: str) -> int:
    if n < 0:
        raise RemoteProtocolError(f"negative {what} length {n} at offset {pos}")
    end = pos + n
    if end > len(data):
        raise RemoteProtocolError(
            f"{what} of {n} bytes at offset {pos} runs past the end of the data ({len(data)})")
    return end


def _enter(ctx: ReadContext, pos: int) -> None:
    ctx.depth += 1
    if ctx.depth > MAX_DEPTH:
        raise RemoteProtocolError(f"values nested deeper than {MAX_DEPTH} at offset {pos}")


# -- scalars -------------------------------------------------------------------------------

def _fixed(s: struct.Struct) -> Reader:
    unpack, size = s.unpack_from, s.size

    def r(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
        return unpack(data, pos)[0], pos + size
    return r


def _r_bool(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    return data[pos] != 0, pos + 1


def _r_char(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    return chr(_U16.unpack_from(data, pos)[0]), pos + 2


def _decode_utf8(raw: memoryview, pos: int) -> str:
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError:
        pass
    try:  # Java's "string serialization v2" writes surrogates one by one (CESU-8 style)
        return str(raw, "utf-8", "surrogatepass").encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeError as exc:
        raise RemoteProtocolError(f"string at offset {pos} is not valid UTF-8: {exc}") from None


def read_string_body(data: memoryview, pos: int) -> tuple[str, int]:
    """Read ``int32 length | UTF-8 bytes`` (a String without its type code)."""
    n = _I32.unpack_from(data, pos)[0]
    pos += 4
    end = _need(data, pos, n, "string")
    return _decode_utf8(data[pos:end], pos), end


def _r_string(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    n = _I32.unpack_from(data, pos)[0]
    pos += 4
    end = pos + n
    if n < 0 or end > len(data):
        _need(data, pos, n, "string")
    return _decode_utf8(data[pos:end], pos), end


def read_string(data: memoryview, pos: int) -> tuple[str | None, int]:
    """Read a typed String (code 9) or null (101); anything else is a protocol error."""
    if pos >= len(data):
        raise RemoteProtocolError(f"string expected at offset {pos}, but the data ends")
    code = data[pos]
    if code == TypeCode.NULL:
        return None, pos + 1
    if code != TypeCode.STRING:
        raise RemoteProtocolError(f"expected a String (type code 9) at offset {pos}, got {code}")
    try:
        return read_string_body(data, pos + 1)
    except struct.error:
        raise RemoteProtocolError(f"truncated String at offset {pos}") from None


def _r_uuid(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    hi, lo = _U64X2.unpack_from(data, pos)
    return uuid.UUID(int=(hi << 64) | lo), pos + 16


def _ms_datetime(ms: int, micros: int = 0) -> datetime.datetime | None:
    try:
        return _EPOCH + datetime.timedelta(milliseconds=ms, microseconds=micros)
    except OverflowError:
        return None


def _r_date(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    ms = _I64.unpack_from(data, pos)[0]
    dt = _ms_datetime(ms)
    return (dt if dt is not None else hints.Date(ms)), pos + 8


def _r_timestamp(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    ms, nanos = _I64_I32.unpack_from(data, pos)
    dt = _ms_datetime(ms, nanos // 1000) if 0 <= nanos < 1_000_000 else None
    return (dt if dt is not None else hints.Timestamp(ms, nanos)), pos + 12


def _r_time(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    ms = _I64.unpack_from(data, pos)[0]
    if 0 <= ms < _DAY_MS:
        return hints.Time(ms).to_time(), pos + 8
    return hints.Time(ms), pos + 8


def _r_decimal(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    scale, n = _I32X2.unpack_from(data, pos)
    pos += 8
    end = _need(data, pos, n, "decimal magnitude")
    if n == 0:
        raise RemoteProtocolError(f"decimal with an empty magnitude at offset {pos}")
    mag = bytearray(data[pos:end])
    negative = mag[0] & 0x80
    mag[0] &= 0x7F
    unscaled = int.from_bytes(mag, "big")
    value = decimal.Decimal(-unscaled if negative else unscaled).scaleb(-scale, context=_EXACT)
    return value, end


def _r_enum(code: int) -> Reader:
    cls = hints.BinaryEnum if code == TypeCode.BINARY_ENUM else hints.Enum

    def r(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
        tid, pos = _read_type_id(data, pos)
        return cls(tid, _I32.unpack_from(data, pos)[0]), pos + 4
    return r


def _read_type_id(data: memoryview, pos: int) -> tuple[int, int]:
    """A component/enum type id; 0 (unregistered) is followed by the Java class name."""
    tid = _I32.unpack_from(data, pos)[0]
    pos += 4
    if tid == 0:
        _, pos = read_string(data, pos)
    return tid, pos


# -- arrays --------------------------------------------------------------------------------

def _r_bytes(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    n = _I32.unpack_from(data, pos)[0]
    pos += 4
    end = _need(data, pos, n, "byte array")
    return bytes(data[pos:end]), end


def _primitive_array(fmt: str, size: int, what: str) -> Reader:
    def r(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
        n = _I32.unpack_from(data, pos)[0]
        pos += 4
        end = _need(data, pos, n * size if n >= 0 else n, what)
        return list(struct.unpack_from(f"<{n}{fmt}", data, pos)), end
    return r


def _r_bool_array(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    n = _I32.unpack_from(data, pos)[0]
    pos += 4
    end = _need(data, pos, n, "bool array")
    return [b != 0 for b in data[pos:end]], end


def _r_char_array(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    n = _I32.unpack_from(data, pos)[0]
    pos += 4
    end = _need(data, pos, 2 * n if n >= 0 else n, "char array")
    return [chr(u) for u in struct.unpack_from(f"<{n}H", data, pos)], end


def _read_items(data: memoryview, pos: int, ctx: ReadContext, codes: tuple[int, ...],
                what: str) -> tuple[list[Any], int]:
    """``int32 n`` then n items, each null or a value of one of ``codes`` (typed arrays, enum[])."""
    n = _I32.unpack_from(data, pos)[0]
    pos += 4
    _need(data, pos, n, what)  # every item is at least one byte
    out: list[Any] = []
    for _ in range(n):
        if pos >= len(data):
            raise RemoteProtocolError(f"{what} item expected at offset {pos}, data ends")
        c = data[pos]
        if c == TypeCode.NULL:
            out.append(None)
            pos += 1
        elif c in codes:
            v, pos = _READERS[c](data, pos + 1, ctx)
            out.append(v)
        else:
            raise RemoteProtocolError(
                f"{what} item at offset {pos} has type code {c}, expected one of {list(codes)}")
    return out, pos


def _typed_array(item_code: int, what: str) -> Reader:
    codes = (item_code,)

    def r(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
        return _read_items(data, pos, ctx, codes, what)
    return r


_ENUM_CODES = (TypeCode.ENUM, TypeCode.BINARY_ENUM)


def _r_enum_array(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    _, pos = _read_type_id(data, pos)
    return _read_items(data, pos, ctx, _ENUM_CODES, "enum array")


# -- containers ----------------------------------------------------------------------------

def _r_object_array(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    _, pos = _read_type_id(data, pos)
    n = _I32.unpack_from(data, pos)[0]
    pos += 4
    _need(data, pos, n, "object array")
    _enter(ctx, pos)
    out = []
    for _ in range(n):
        v, pos = _read(data, pos, ctx)
        out.append(v)
    ctx.depth -= 1
    return out, pos


def _freeze(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, set):
        return frozenset(v)
    if isinstance(v, dict):
        return tuple((k, _freeze(x)) for k, x in v.items())
    return v


def _r_collection(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    n, kind = _I32_I8.unpack_from(data, pos)
    pos += 5
    if kind not in _COLLECTION_KINDS:
        raise RemoteProtocolError(f"invalid collection kind {kind} at offset {pos - 1}")
    _need(data, pos, n, "collection")
    _enter(ctx, pos)
    out: list[Any] = []
    for _ in range(n):
        v, pos = _read(data, pos, ctx)
        out.append(v)
    ctx.depth -= 1
    if kind in SET_KINDS:
        try:
            return set(out), pos
        except TypeError:
            try:
                return {_freeze(x) for x in out}, pos
            except TypeError:
                return out, pos  # items Python cannot hash: keep them, as a list
    return out, pos


def _r_map(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    n, kind = _I32_I8.unpack_from(data, pos)
    pos += 5
    if kind not in _MAP_KINDS:
        raise RemoteProtocolError(f"invalid map kind {kind} at offset {pos - 1}")
    _need(data, pos, 2 * n if n >= 0 else n, "map")
    _enter(ctx, pos)
    out: dict[Any, Any] = {}
    for _ in range(n):
        k, pos = _read(data, pos, ctx)
        v, pos = _read(data, pos, ctx)
        try:
            out[k] = v
        except TypeError:
            try:
                out[_freeze(k)] = v
            except TypeError:
                raise RemoteProtocolError(f"map key of type {type(k).__name__} before offset {pos} "
                                          "cannot be a Python dict key") from None
    ctx.depth -= 1
    return out, pos


def _r_wrapped(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    n = _I32.unpack_from(data, pos)[0]
    pos += 4
    end = _need(data, pos, n, "wrapped object")
    off = _I32.unpack_from(data, end)[0]
    if not 0 <= off < n:
        raise RemoteProtocolError(f"wrapped object offset {off} outside its {n} bytes at {end}")
    inner = ctx.child()
    _enter(inner, pos)
    v, _ = _read(data[pos:end], off, inner)
    return v, end + 4


def _r_null(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    return None, pos


def _r_handle(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    here = pos - 1
    back = _I32.unpack_from(data, pos)[0]
    target = here - back
    if back <= 0 or target < 0:
        raise RemoteProtocolError(f"handle at offset {here} points to {target}, not before it")
    if target in ctx.handles:
        return ctx.handles[target], pos + 4
    _enter(ctx, here)
    v, _ = _read(data, target, ctx)
    ctx.depth -= 1
    ctx.handles[target] = v
    return v, pos + 4


def _r_unsupported(name: str) -> Reader:
    def r(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
        raise RemoteProtocolError(f"type code {data[pos - 1]} ({name}) at offset {pos - 1} "
                                  "is Java-only and not supported by this client")
    return r


# -- complex objects -----------------------------------------------------------------------

def _r_object(data: memoryview, pos: int, ctx: ReadContext) -> tuple[Any, int]:
    start = pos - 1
    _need(data, start, HEADER_SIZE, "complex object header")
    _, ver, flags, tid, h, length, sid, soff = _HEADER.unpack_from(data, start)
    if ver != PROTO_VER:
        raise RemoteProtocolError(f"complex object at offset {start} has version {ver}")
    if length < HEADER_SIZE:
        raise RemoteProtocolError(f"complex object at offset {start} has length {length}")
    end = _need(data, start, length, "complex object")
    has_raw = flags & FLAG_HAS_RAW
    raw_off = 0
    if flags & FLAG_HAS_SCHEMA:
        footer_end = end - 4 if has_raw else end
        if not HEADER_SIZE <= soff <= footer_end - start:
            raise RemoteProtocolError(f"complex object at offset {start}: schema offset {soff} "
                                      f"outside {HEADER_SIZE}..{footer_end - start}")
        fstart = start + soff
        if has_raw:
            raw_off = _I32.unpack_from(data, footer_end)[0]
    else:
        fstart = footer_end = end
        raw_off = soff
    fields_end = fstart
    raw = None
    if has_raw:
        if not HEADER_SIZE <= raw_off <= fstart - start:
            raise RemoteProtocolError(
                f"complex object at offset {start}: raw offset {raw_off} out of range")
        fields_end = start + raw_off
        raw = bytes(data[fields_end:fstart])

    if flags & FLAG_OFFSET_ONE_BYTE:
        fmt, osize = "B", 1
    elif flags & FLAG_OFFSET_TWO_BYTES:
        fmt, osize = "H", 2
    else:
        fmt, osize = "i", 4
    compact = flags & FLAG_COMPACT_FOOTER
    entry = osize if compact else 4 + osize
    flen = footer_end - fstart
    if flen % entry:
        raise RemoteProtocolError(
            f"complex object at offset {start}: footer of {flen} bytes is not whole entries")
    n = flen // entry
    registry = ctx.registry
    ids: tuple[int, ...] | None
    offs: tuple[int, ...]
    if not n:
        ids, offs = (), ()
    elif compact:
        ids = registry.schema(tid, sid)
        if ids is None:
            ctx.unknown.add(tid)
            return None, end
        if len(ids) != n:
            raise RemoteProtocolError(f"complex object at offset {start}: footer has {n} fields, "
                                      f"schema {sid} of type {tid} has {len(ids)}")
        offs = struct.unpack_from(f"<{n}{fmt}", data, fstart)
    else:
        pairs = struct.unpack_from("<" + ("i" + fmt) * n, data, fstart)
        ids, offs = pairs[0::2], pairs[1::2]

    info = registry.class_for(tid)
    names = None
    if info is None:
        names = registry.field_names(tid)
        if names is None or any(fid not in names for fid in ids):
            ctx.unknown.add(tid)
            return None, end

    _enter(ctx, start)
    values = []
    lo, hi = start + HEADER_SIZE, fields_end
    for off in offs:
        p = start + off
        if not lo <= p < hi:
            raise RemoteProtocolError(f"complex object at offset {start}: field offset {off} "
                                      f"outside {HEADER_SIZE}..{hi - start}")
        values.append(_read(data, p, ctx)[0])
    ctx.depth -= 1

    if info is not None:
        kw = dict.fromkeys(info.names)
        for fid, v in zip(ids, values, strict=False):
            i = info.index_by_id.get(fid)
            if i is not None:
                kw[info.names[i]] = v
        return info.cls(**kw), end
    assert names is not None
    meta = registry.get_type(tid)
    return BinaryObject(meta.type_name if meta else None,
                        {names[fid]: v for fid, v in zip(ids, values, strict=False)},
                        type_id=tid, java_hash_code=h, raw=raw), end


_READERS_BY_CODE: dict[TypeCode, Reader] = {
    TypeCode.BYTE: _fixed(_I8),
    TypeCode.SHORT: _fixed(_I16),
    TypeCode.INT: _fixed(_I32),
    TypeCode.LONG: _fixed(_I64),
    TypeCode.FLOAT: _fixed(_F32),
    TypeCode.DOUBLE: _fixed(_F64),
    TypeCode.CHAR: _r_char,
    TypeCode.BOOL: _r_bool,
    TypeCode.STRING: _r_string,
    TypeCode.UUID: _r_uuid,
    TypeCode.DATE: _r_date,
    TypeCode.BYTE_ARR: _r_bytes,
    TypeCode.SHORT_ARR: _primitive_array("h", 2, "short array"),
    TypeCode.INT_ARR: _primitive_array("i", 4, "int array"),
    TypeCode.LONG_ARR: _primitive_array("q", 8, "long array"),
    TypeCode.FLOAT_ARR: _primitive_array("f", 4, "float array"),
    TypeCode.DOUBLE_ARR: _primitive_array("d", 8, "double array"),
    TypeCode.CHAR_ARR: _r_char_array,
    TypeCode.BOOL_ARR: _r_bool_array,
    TypeCode.STRING_ARR: _typed_array(TypeCode.STRING, "String array"),
    TypeCode.UUID_ARR: _typed_array(TypeCode.UUID, "UUID array"),
    TypeCode.DATE_ARR: _typed_array(TypeCode.DATE, "Date array"),
    TypeCode.OBJ_ARR: _r_object_array,
    TypeCode.COLLECTION: _r_collection,
    TypeCode.MAP: _r_map,
    TypeCode.BINARY_OBJ: _r_wrapped,
    TypeCode.ENUM: _r_enum(TypeCode.ENUM),
    TypeCode.ENUM_ARR: _r_enum_array,
    TypeCode.DECIMAL: _r_decimal,
    TypeCode.DECIMAL_ARR: _typed_array(TypeCode.DECIMAL, "Decimal array"),
    TypeCode.CLASS: _r_unsupported("java.lang.Class"),
    TypeCode.TIMESTAMP: _r_timestamp,
    TypeCode.TIMESTAMP_ARR: _typed_array(TypeCode.TIMESTAMP, "Timestamp array"),
    TypeCode.PROXY: _r_unsupported("dynamic proxy"),
    TypeCode.TIME: _r_time,
    TypeCode.TIME_ARR: _typed_array(TypeCode.TIME, "Time array"),
    TypeCode.BINARY_ENUM: _r_enum(TypeCode.BINARY_ENUM),
    TypeCode.NULL: _r_null,
    TypeCode.HANDLE: _r_handle,
    TypeCode.COMPLEX_OBJ: _r_object,
    TypeCode.OPTIMIZED: _r_unsupported("OptimizedMarshaller object"),
}
# Plain int keys: looking up an int among IntEnum keys takes the slow comparison path.
_READERS: dict[int, Reader] = {int(k): v for k, v in _READERS_BY_CODE.items()}
