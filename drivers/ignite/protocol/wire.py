"""Small helpers for message payloads: untyped primitives out, and a bounds-checked cursor in.

Rules of this file:

* Payload fields outside values are untyped (``BinaryRawWriter.writeInt`` etc.:
  little-endian, no type code); strings are typed (9, or 101 for null);
  values are full typed values through the codec.
* ``Cursor`` reads sequentially from a frame and converts every short read into
  ``RemoteProtocolError`` naming the field and offset.  Values read through one
  cursor share one ``ReadContext``: ``finish()`` then reports every unknown
  binary type of the payload at once.
"""

from __future__ import annotations

import struct
from typing import Any

from drivers.ignite.codec import BinaryTypeRegistry
from drivers.ignite.codec.reader import ReadContext, read_many, read_string, read_with
from drivers.ignite.codec.typecodes import TypeCode
from drivers.ignite.errors import LocalProtocolError, RemoteProtocolError

I8 = struct.Struct("<b")
U8 = struct.Struct("<B")
I16 = struct.Struct("<h")
I32 = struct.Struct("<i")
I64 = struct.Struct("<q")
BOOL = struct.Struct("<?")
U64X2 = struct.Struct("<QQ")
_CODE_LEN = struct.Struct("<Bi")
_NULL = bytes([TypeCode.NULL])


def write_string(buf: bytearray, s: str | None) -> None:
    """Append a typed String, or null."""
    if s is None:
        buf += _NULL
        return
    try:
        raw = s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LocalProtocolError(f"string {s[:40]!r} is not encodable as UTF-8: {exc}") from None
    buf += _CODE_LEN.pack(TypeCode.STRING, len(raw))
    buf += raw


def pack(s: struct.Struct, *values: Any) -> bytes:
    """``s.pack`` with ``struct.error`` turned into ``LocalProtocolError``."""
    try:
        return s.pack(*values)
    except struct.error as exc:
        raise LocalProtocolError(f"cannot encode {values!r} as {s.format}: {exc}") from None


class Cursor:
    """Sequential, bounds-checked reading of one payload."""

    __slots__ = ("ctx", "data", "pos")

    def __init__(self, data: memoryview, pos: int, registry: BinaryTypeRegistry | None = None) -> None:
        self.data = data
        self.pos = pos
        self.ctx = ReadContext(registry if registry is not None else _EMPTY)

    def _unpack(self, s: struct.Struct, what: str) -> Any:
        try:
            v = s.unpack_from(self.data, self.pos)[0]
        except struct.error:
            raise RemoteProtocolError(
                f"{what} expected at offset {self.pos}, but the frame ends at {len(self.data)}") from None
        self.pos += s.size
        return v

    def i8(self, what: str = "byte") -> int:
        return int(self._unpack(I8, what))

    def u8(self, what: str = "byte") -> int:
        return int(self._unpack(U8, what))

    def i16(self, what: str = "short") -> int:
        return int(self._unpack(I16, what))

    def i32(self, what: str = "int") -> int:
        return int(self._unpack(I32, what))

    def i64(self, what: str = "long") -> int:
        return int(self._unpack(I64, what))

    def bool(self, what: str = "bool") -> bool:
        return bool(self._unpack(U8, what) != 0)

    def count(self, what: str, min_item: int = 1) -> int:
        """An int32 element count, checked against the bytes left (each item >= ``min_item``)."""
        at = self.pos
        n = self.i32(what)
        if n < 0 or n * min_item > len(self.data) - self.pos:
            raise RemoteProtocolError(f"{what} {n} at offset {at} does not fit the frame")
        return n

    def string(self) -> str | None:
        v, self.pos = read_string(self.data, self.pos)
        return v

    def value(self) -> Any:
        v, self.pos = read_with(self.data, self.pos, self.ctx)
        return v

    def values(self, count: int) -> list[Any]:
        """``count`` consecutive typed values."""
        out, self.pos = read_many(self.data, self.pos, count, self.ctx)
        return out

    def finish(self) -> None:
        """Raise ``UnknownBinaryTypes`` for complex objects that could not be decoded."""
        self.ctx.finish()


_EMPTY = BinaryTypeRegistry()
