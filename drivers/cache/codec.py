"""What a cached value looks like in the remote store: an envelope of metadata and the encoded value.

Rules of this file:
- No I/O.  Values are encoded with orjson (default) or msgpack, never pickle: a
  value read back from a shared store can only ever become data, not code.
- The envelope (little-endian)::

      0xC5 | flags:u8 | fresh_until:f64 | delta:f32 | payload | [tag: 16 bytes]

  ``fresh_until`` is a Unix time (every process reads the same clock); ``delta`` is
  how long the loader took (XFetch's recompute time, 0 when unknown); flags say
  NEGATIVE (a remembered "not found", empty payload), MSGPACK (the payload's
  codec; a reader decodes either) and SIGNED (a tag follows).
- With an HMAC key, ``encode`` appends HMAC-SHA256(key, everything before)[:16]
  and ``decode`` refuses an envelope without a valid tag; without a key, signed
  envelopes are read without checking.  Anything malformed is ``Corrupt``, which
  the cache treats as a miss (counted), never as a value.
- A value that cannot be encoded, or whose envelope would exceed the size limit,
  is an ``InterfaceError`` raised before any I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Any, Literal, NamedTuple

import msgpack
import orjson

from drivers.errors import InterfaceError

MAGIC = 0xC5
NEGATIVE = 1
MSGPACK = 2
SIGNED = 4
TAG_BYTES = 16

_HEAD = struct.Struct("<BBdf")
HEAD_BYTES = _HEAD.size


class Corrupt(Exception):
    """An envelope that is not ours, is truncated, or fails its HMAC check."""


class Envelope(NamedTuple):
    value: Any             # None for a negative entry
    fresh_until: float     # Unix time
    delta: float           # seconds the loader took (0.0: unknown)
    negative: bool
    size: int              # bytes of the whole envelope (what the local tier counts)


class Codec:
    """Encodes values into envelopes and back, with one serializer and an optional HMAC key."""

    __slots__ = ("_dumps", "_flags", "_key", "max_bytes", "name")

    def __init__(self, name: Literal["json", "msgpack"] = "json", *, hmac_key: str | bytes | None = None,
                 max_bytes: int = 1 << 20) -> None:
        if name not in ("json", "msgpack"):
            raise InterfaceError(f"cache: codec is 'json' or 'msgpack', not {name!r}", backend="cache")
        self.name = name
        self._dumps = orjson.dumps if name == "json" else msgpack.packb
        self._key = hmac_key.encode() if isinstance(hmac_key, str) else hmac_key
        self._flags = (MSGPACK if name == "msgpack" else 0) | (SIGNED if self._key else 0)
        self.max_bytes = max_bytes

    def encode(self, key: str, value: Any, fresh_until: float, delta: float = 0.0) -> bytes:
        """The envelope of ``value`` (None: a negative entry) for ``key`` (named in errors only)."""
        if value is None:
            flags, payload = self._flags | NEGATIVE, b""
        else:
            flags = self._flags
            try:
                payload = self._dumps(value)
            except (TypeError, ValueError, OverflowError) as exc:  # orjson.JSONEncodeError is a TypeError
                raise InterfaceError(f"cache: the value of key {key!r} cannot be encoded as {self.name} "
                                     f"({exc})", backend="cache") from None
        data = _HEAD.pack(MAGIC, flags, fresh_until, delta) + payload
        if self._key is not None:
            data += hmac.new(self._key, data, hashlib.sha256).digest()[:TAG_BYTES]
        if len(data) > self.max_bytes:
            raise InterfaceError(f"cache: the value of key {key!r} is {len(data)} bytes encoded, over the limit "
                                 f"of {self.max_bytes}", backend="cache")
        return data

    def decode(self, data: bytes) -> Envelope:
        """The envelope's contents; ``Corrupt`` when it is not a valid envelope (or its tag is wrong)."""
        if len(data) < HEAD_BYTES or data[0] != MAGIC:
            raise Corrupt("not a cache envelope")
        _, flags, fresh_until, delta = _HEAD.unpack_from(data)
        end = len(data)
        if flags & SIGNED:
            end -= TAG_BYTES
            if end < HEAD_BYTES:
                raise Corrupt("truncated envelope")
            if self._key is not None:
                want = hmac.new(self._key, data[:end], hashlib.sha256).digest()[:TAG_BYTES]
                if not hmac.compare_digest(want, data[end:]):
                    raise Corrupt("HMAC tag does not match")
        elif self._key is not None:
            raise Corrupt("unsigned envelope (this cache requires an HMAC tag)")
        if flags & NEGATIVE:
            return Envelope(None, fresh_until, delta, True, len(data))
        payload = data[HEAD_BYTES:end]
        try:
            value = msgpack.unpackb(payload) if flags & MSGPACK else orjson.loads(payload)
        except (ValueError, msgpack.UnpackException) as exc:
            raise Corrupt(f"payload does not decode ({exc})") from None
        return Envelope(value, fresh_until, delta, False, len(data))
