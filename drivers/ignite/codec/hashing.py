"""Java-exact 32-bit hashes: cache ids, type and field ids, schema ids, key partitions.

Rules of this file:

* Every result is a signed Java ``int``: arithmetic is done on Python ints and
  folded with ``i32`` at the end, which equals Java's wrap-around at each step
  because only ``+`` and ``*`` are involved (a ring homomorphism mod 2**32).
* Strings hash over UTF-16 code units, as ``String.hashCode`` does; an astral
  character counts as its two surrogates.
* Names for type and field ids are lower-cased one UTF-16 unit at a time with
  simple case mapping, as ``BinaryBasicIdMapper.lowerCaseHashCode`` does with
  ``Character.toLowerCase(char)``.
* Values with no stable Java hash (arrays, collections, maps) are refused with
  ``LocalProtocolError``: the server would not route them by content either.
"""

from __future__ import annotations

import datetime
import decimal
import math
import struct
import uuid
from collections.abc import Iterable
from operator import mul
from typing import Any

from drivers.ignite.errors import LocalProtocolError

_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_DAY_MS = 86_400_000

# _POW31[k] == 31**k mod 2**32, grown on demand; polynomial hashes become one
# C-level ``sum(map(mul, ...))`` per chunk instead of a Python loop per byte.
_POW31: list[int] = [1]
_CHUNK = 4096


def i32(v: int) -> int:
    """``v`` wrapped to a signed 32-bit Java int."""
    v &= _MASK32
    return v - 0x1_0000_0000 if v & 0x8000_0000 else v


def _ensure_pow(n: int) -> None:
    p = _POW31
    while len(p) <= n:
        p.append((p[-1] * 31) & _MASK32)


def _poly_hash(h: int, units: Iterable[int] | memoryview, n: int) -> int:
    """``for u in units: h = 31*h + u`` over ``n`` items, mod 2**32 (unsigned result)."""
    if n == 0:
        return h & _MASK32
    seq = units if isinstance(units, (list, memoryview)) else list(units)
    for start in range(0, n, _CHUNK):
        end = min(start + _CHUNK, n)
        k = end - start
        _ensure_pow(k)
        coeffs = _POW31[k - 1::-1]
        h = (h * _POW31[k] + sum(map(mul, seq[start:end], coeffs))) & _MASK32
    return h


def string_hash(s: str) -> int:
    """Java ``String.hashCode`` (over UTF-16 code units)."""
    if s.isascii():
        raw = s.encode("ascii")
        return i32(_poly_hash(0, memoryview(raw), len(raw)))
    units = memoryview(s.encode("utf-16-le", "surrogatepass")).cast("H")
    return i32(_poly_hash(0, units, len(units)))


def _lower_unit(u: int) -> int:
    if u < 0x80:
        return u + 32 if 65 <= u <= 90 else u
    if 0xD800 <= u <= 0xDFFF:
        return u
    low = chr(u).lower()
    if len(low) == 1 and ord(low) < 0x10000:
        return ord(low)
    return _SPECIAL_LOWER.get(u, u)


# Where Python's full case mapping gives several characters, Java's simple mapping gives one.
_SPECIAL_LOWER = {0x0130: 0x0069}


def lower_case_hash(name: str) -> int:
    """Java ``BinaryBasicIdMapper.lowerCaseHashCode``: hash of the name lower-cased per UTF-16 unit."""
    if name.isascii():
        raw = name.lower().encode("ascii")
        return i32(_poly_hash(0, memoryview(raw), len(raw)))
    units = memoryview(name.encode("utf-16-le", "surrogatepass")).cast("H")
    return i32(_poly_hash(0, [_lower_unit(u) for u in units], len(units)))


def type_id(name: str) -> int:
    """Binary type id of a type name (hash of the lower-cased name)."""
    return lower_case_hash(name)


def field_id(name: str) -> int:
    """Binary field id of a field name (hash of the lower-cased name)."""
    return lower_case_hash(name)


def cache_id(name: str) -> int:
    """Cache id: ``String.hashCode`` of the cache name, case kept."""
    return string_hash(name)


def schema_id(field_ids: Iterable[int]) -> int:
    """Schema id over field ids in write order (``BinaryUtils.updateSchemaId``); 0 for none.

    Despite the name the Java code uses (FNV-1), each byte is XORed in *before*
    the multiply, i.e. FNV-1a, four bytes per id, low byte first.
    """
    h = _FNV_OFFSET
    empty = True
    for fid in field_ids:
        empty = False
        for shift in (0, 8, 16, 24):
            h = ((h ^ ((fid >> shift) & 0xFF)) * _FNV_PRIME) & _MASK32
    return 0 if empty else i32(h)


def binary_object_hash(data: bytes | bytearray | memoryview) -> int:
    """Hash of a complex object's data bytes: ``h = 1; h = 31*h + (signed byte)``."""
    mv = memoryview(data)
    if mv.format != "b":
        mv = mv.cast("b")
    return i32(_poly_hash(1, mv, len(mv)))


def long_hash(v: int) -> int:
    """Java ``Long.hashCode``: ``(int)(v ^ (v >>> 32))``."""
    u = v & _MASK64
    return i32(u ^ (u >> 32))


def double_hash(v: float) -> int:
    """Java ``Double.hashCode`` over ``doubleToLongBits`` (canonical NaN)."""
    if math.isnan(v):
        return long_hash(0x7FF8000000000000)
    return long_hash(struct.unpack("<q", struct.pack("<d", v))[0])


def float_hash(v: float) -> int:
    """Java ``Float.hashCode``: ``floatToIntBits`` (canonical NaN)."""
    if math.isnan(v):
        return 0x7FC00000
    try:
        return int(struct.unpack("<i", struct.pack("<f", v))[0])
    except OverflowError:
        return int(struct.unpack("<i", struct.pack("<f", math.copysign(math.inf, v)))[0])


def uuid_hash(u: uuid.UUID) -> int:
    """Java ``UUID.hashCode``: ``hilo = msb ^ lsb; (int)(hilo >> 32) ^ (int)hilo``."""
    hilo = (u.int >> 64) ^ (u.int & _MASK64)
    return i32((hilo >> 32) ^ hilo)


def decimal_hash(d: decimal.Decimal) -> int:
    """Java ``BigDecimal.hashCode``: ``31 * unscaledValue.hashCode() + scale``."""
    if not d.is_finite():
        raise LocalProtocolError(f"{d!r} has no Java BigDecimal form")
    sign, _, exp = d.as_tuple()
    assert isinstance(exp, int)
    unscaled = abs(int(d.scaleb(-exp, context=_EXACT)))  # no str round trip: no digit limit
    # BigInteger.hashCode: over 32-bit magnitude words, most significant first, times signum.
    h = 0
    if unscaled:
        nwords = (unscaled.bit_length() + 31) // 32
        for i in range(nwords - 1, -1, -1):
            h = (31 * h + ((unscaled >> (32 * i)) & _MASK32)) & _MASK32
        if sign:
            h = -h
    return i32(31 * h + (-exp))


def _epoch_ms(value: datetime.datetime | datetime.date | datetime.time) -> int:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if isinstance(value, datetime.date):
        return (value - _EPOCH.date()).days * _DAY_MS
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1000 + value.microsecond // 1000


def java_hash(value: Any, hint: type | None = None) -> int:
    """The Java ``hashCode`` the server computes for ``value`` as a cache key.

    ``hint`` is one of the hint classes of ``drivers.ignite.codec.hints`` (``Int``,
    ``Short``, ``Float`` ...) when the plain Python value stands for that Java type.
    Hinted values (``Int(5)``) carry their own type and need no ``hint``: anything
    with a ``java_hash()`` method is asked for its hash.  (``hints`` imports this
    module, never the other way round.)
    """
    if hint is not None and not hasattr(value, "java_hash"):
        value = hint(value)
    t = type(value)
    if t is bool:
        return 1231 if value else 1237
    if t is int:
        if not -(1 << 63) <= value < (1 << 63):
            raise LocalProtocolError(f"int {value} does not fit a Java long")
        return long_hash(value)
    if t is str:
        return string_hash(value)
    if t is float:
        return double_hash(value)
    if t is uuid.UUID:
        return uuid_hash(value)
    if t is decimal.Decimal:
        return decimal_hash(value)
    if t is datetime.datetime or t is datetime.date or t is datetime.time:
        return long_hash(_epoch_ms(value))
    if value is None:
        raise LocalProtocolError("a null key has no hash")
    own = getattr(value, "java_hash", None)
    if own is not None:
        return int(own())
    stored = getattr(value, "java_hash_code", None)
    if isinstance(stored, int):
        return stored
    if isinstance(value, int):  # IntEnum and other int subclasses are written as long
        return long_hash(int(value))
    raise LocalProtocolError(
        f"no Java hash for {t.__name__} values: encode the key and use binary_object_hash, "
        f"or route without partition awareness")


def partition_for(h: int, parts: int) -> int:
    """Partition of a key hash with ``RendezvousAffinityFunction``'s rule."""
    if parts <= 0:
        raise LocalProtocolError(f"partition count must be positive, got {parts}")
    h = i32(h)
    if parts & (parts - 1) == 0:
        u = h & _MASK32
        return (u ^ (u >> 16)) & (parts - 1)
    # Java: safeAbs(h % parts) with truncating %; |h % parts| < parts, so safeAbs never
    # meets MIN_VALUE here and the result is |h| mod parts (also for h == MIN_VALUE).
    return abs(h) % parts
