"""The thin-client handshake: the first request on a connection and its reply.

Rules of this file (``ClientListenerNioListener.onHandshake``,
``ClientConnectionContext.initializeFromHandshake``):

* Request body: ``byte 1 | int16 major, minor, patch | byte 2 (thin client)``,
  then ``>= 1.7``: the feature mask as a typed byte[] (12); with the
  USER_ATTRIBUTES bit: a Map<String,String> (this client sends an empty one);
  ``>= 1.1`` and credentials given: typed String user, typed String password
  (lengths in UTF-8 bytes).  The server reads credentials only if bytes remain.
* Success: ``byte 1 | [>= 1.7: typed byte[] server features] | [>= 1.4: typed UUID node id]``.
* Failure: ``byte 0 | int16 major, minor, patch | String message | [int32 code]``;
  the server's version is 0.0.0 on an authentication failure, and the code is
  present only when the *requested* version is >= 1.1 (2000 = auth failed).
* The client starts at 1.7.0 and retries once with the server's version when
  it is in ``SUPPORTED_VERSIONS``; that decision belongs to the connection layer.
"""

from __future__ import annotations

import dataclasses
import struct
import uuid

from drivers.ignite.codec.reader import read_string
from drivers.ignite.codec.typecodes import MapKind, TypeCode
from drivers.ignite.errors import LocalProtocolError, RemoteProtocolError
from drivers.ignite.protocol.constants import (
    V1_1_0,
    V1_4_0,
    V1_7_0,
    Feature,
    ProtocolVersion,
    has_feature,
)

_HEAD = struct.Struct("<iBhhhB")
_CODE_LEN = struct.Struct("<Bi")
_CODE_LEN_KIND = struct.Struct("<Bib")
_VERSION = struct.Struct("<hhh")
_I32 = struct.Struct("<i")
_U64X2 = struct.Struct("<QQ")

HANDSHAKE_CODE = 1
THIN_CLIENT = 2


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeAccepted:
    """The node accepted: its feature mask (empty before 1.7) and node id (None before 1.4)."""

    features: bytes
    node_id: uuid.UUID | None


@dataclasses.dataclass(frozen=True, slots=True)
class HandshakeRejected:
    """The node refused: the version it proposes, its message and code (None before 1.1)."""

    server_version: ProtocolVersion
    message: str
    code: int | None


def _typed_string(buf: bytearray, s: str) -> None:
    raw = s.encode("utf-8")
    buf += _CODE_LEN.pack(TypeCode.STRING, len(raw))
    buf += raw


def encode_handshake(version: ProtocolVersion, features: bytes | None,
                     username: str | None, password: str | None) -> bytes:
    """The complete handshake frame, length prefix included."""
    buf = bytearray(_HEAD.pack(0, HANDSHAKE_CODE, *version, THIN_CLIENT))
    if version >= V1_7_0:
        mask = features or b""
        buf += _CODE_LEN.pack(TypeCode.BYTE_ARR, len(mask))
        buf += mask
        if has_feature(mask, Feature.USER_ATTRIBUTES):
            buf += _CODE_LEN_KIND.pack(TypeCode.MAP, 0, MapKind.HASH_MAP)
    elif features:
        raise LocalProtocolError(f"feature masks need protocol 1.7.0, not {version}")
    if username is not None or password is not None:
        if version < V1_1_0:
            raise LocalProtocolError(f"authentication needs protocol 1.1.0, not {version}")
        try:
            _typed_string(buf, username or "")
            _typed_string(buf, password or "")
        except UnicodeEncodeError as exc:
            raise LocalProtocolError(f"credentials are not encodable as UTF-8: {exc}") from None
    _I32.pack_into(buf, 0, len(buf) - 4)
    return bytes(buf)


def decode_handshake_reply(frame: memoryview,
                           version: ProtocolVersion) -> HandshakeAccepted | HandshakeRejected:
    """Decode the reply body (without its length prefix) to the handshake sent with ``version``."""
    try:
        if len(frame) < 1:
            raise RemoteProtocolError("empty handshake reply")
        ok = frame[0]
        pos = 1
        if ok == 1:
            features = b""
            node_id = None
            if version >= V1_7_0:
                features, pos = _read_byte_array(frame, pos)
            if version >= V1_4_0 and pos < len(frame):
                code = frame[pos]
                if code == TypeCode.UUID:
                    hi, lo = _U64X2.unpack_from(frame, pos + 1)
                    node_id = uuid.UUID(int=(hi << 64) | lo)
                elif code != TypeCode.NULL:
                    raise RemoteProtocolError(
                        f"handshake reply: expected a UUID at offset {pos}, got type code {code}")
            return HandshakeAccepted(features, node_id)
        if ok != 0:
            raise RemoteProtocolError(f"handshake reply starts with {ok}, expected 0 or 1")
        server = ProtocolVersion(*_VERSION.unpack_from(frame, pos))
        message, pos = read_string(frame, pos + 6)
        err: int | None = None
        if version >= V1_1_0 and len(frame) - pos >= 4:
            err = _I32.unpack_from(frame, pos)[0]
        return HandshakeRejected(server, message or "", err)
    except (struct.error, IndexError):
        raise RemoteProtocolError(
            f"handshake reply truncated: {len(frame)} bytes") from None


def _read_byte_array(frame: memoryview, pos: int) -> tuple[bytes, int]:
    code = frame[pos]
    if code == TypeCode.NULL:
        return b"", pos + 1
    if code != TypeCode.BYTE_ARR:
        raise RemoteProtocolError(
            f"handshake reply: expected the feature byte[] at offset {pos}, got type code {code}")
    n = _I32.unpack_from(frame, pos + 1)[0]
    start = pos + 5
    if n < 0 or start + n > len(frame):
        raise RemoteProtocolError(f"handshake reply: feature mask length {n} at offset {pos}")
    return bytes(frame[start:start + n]), start + n
