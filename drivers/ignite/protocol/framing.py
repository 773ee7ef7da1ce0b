"""Frames of the Ignite thin-client protocol: splitting the byte stream, request and response headers.

Rules of this file:

* Every message, the handshake included, is ``int32 length`` (not counting
  itself) followed by that many bytes of body.  ``FrameReader.feed`` turns
  arbitrary chunks into complete bodies; each byte is copied at most twice
  (into the tail buffer, then out with its frame), so feeding is amortised O(n)
  whatever the chunking.  Frames are ``memoryview``s over immutable ``bytes``.
* A length below zero or above ``max_frame`` is a desync: ``RemoteProtocolError``
  naming the length, and the connection must be dropped (no resync).
* A request is built in one ``bytearray`` (``new_request`` ... payload ...)
  so it leaves in a single ``transport.write``; the connection that sends it
  fills in the length and its request id with ``stamp_request``.
* Response headers (``ClientResponse.encode`` / ``ClientNotification.encode``):

      >= 1.4: int64 request id | int16 flags | [flags & 2: int64 topVer, int32 minor]
              | [flags & 4: int16 notification op] | [flags & 1: int32 status, String message]
      <  1.4: int64 request id | int32 status | [status != 0: String message]

  ``parse_response`` reads the header only and says where the payload starts.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from drivers.ignite.codec.reader import read_string
from drivers.ignite.errors import LocalProtocolError, RemoteProtocolError
from drivers.ignite.protocol.constants import V1_4_0, ProtocolVersion, ResponseFlag

DEFAULT_MAX_FRAME = 256 * 1024 * 1024

_LEN = struct.Struct("<i")
_REQUEST_HEADER = struct.Struct("<ihq")  # length placeholder, op code, request id
_ID = struct.Struct("<q")                # the request id, at 6 (after the length and the op code)
_ID_FLAGS = struct.Struct("<qh")
_ID_STATUS = struct.Struct("<qi")
_TOPOLOGY = struct.Struct("<qi")
_OP = struct.Struct("<h")
_STATUS = struct.Struct("<i")

REQUEST_HEADER_SIZE = _REQUEST_HEADER.size

# Plain ints on the hot path: IntFlag arithmetic costs about a microsecond per operation.
_ERROR = int(ResponseFlag.ERROR)
_TOPOLOGY_CHANGED = int(ResponseFlag.AFFINITY_TOPOLOGY_CHANGED)
_NOTIFICATION = int(ResponseFlag.NOTIFICATION)


class FrameReader:
    """Splits a byte stream into frame bodies (without their 4-byte length prefix)."""

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    @property
    def pending_bytes(self) -> int:
        """Bytes held back: an incomplete frame (or its length prefix)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[memoryview]:
        """Add received bytes; return every frame body completed by them, in order."""
        buf = self._buf
        if not buf:
            src = data if type(data) is bytes else bytes(data)
            frames, used = self._split(src)
            if used < len(src):
                buf += memoryview(src)[used:]
            return frames
        buf += data
        end = self._complete_end(buf)
        if end == 0:
            return []
        with memoryview(buf) as mv:
            chunk = bytes(mv[:end])
        del buf[:end]  # O(1) amortised: CPython moves the start of a bytearray
        frames, used = self._split(chunk)
        assert used == end
        return frames

    def _check(self, n: int, pos: int) -> None:
        if n < 0 or n > self.max_frame:
            raise RemoteProtocolError(
                f"frame length {n} at stream offset {pos} is outside 0..{self.max_frame}")

    def _complete_end(self, buf: bytearray) -> int:
        """Offset just past the last complete frame in ``buf``."""
        pos, size, unpack = 0, len(buf), _LEN.unpack_from
        while size - pos >= 4:
            n = unpack(buf, pos)[0]
            self._check(n, pos)
            if size - pos - 4 < n:
                break
            pos += 4 + n
        return pos

    def _split(self, src: bytes) -> tuple[list[memoryview], int]:
        frames: list[memoryview] = []
        mv = memoryview(src)
        pos, size, unpack = 0, len(src), _LEN.unpack_from
        while size - pos >= 4:
            n = unpack(src, pos)[0]
            self._check(n, pos)
            if size - pos - 4 < n:
                break
            frames.append(mv[pos + 4:pos + 4 + n])
            pos += 4 + n
        return frames, pos


def begin_request(op_code: int, request_id: int) -> bytearray:
    """A request buffer holding a length placeholder, the op code and the request id."""
    try:
        return bytearray(_REQUEST_HEADER.pack(0, op_code, request_id))
    except struct.error as exc:
        raise LocalProtocolError(f"bad op code {op_code} or request id {request_id}: {exc}") from None


_HEADERS: dict[int, bytes] = {}


def new_request(op_code: int) -> bytearray:
    """A request buffer for ``op_code`` with its length and request id left to ``stamp_request``.

    Append the payload, then hand it to a connection.
    """
    header = _HEADERS.get(op_code)
    if header is None:
        header = _HEADERS[op_code] = bytes(begin_request(op_code, 0))
    return bytearray(header)


def stamp_request(buf: bytearray, request_id: int) -> None:
    """Write the length prefix and ``request_id`` into a request built with ``new_request``."""
    _LEN.pack_into(buf, 0, len(buf) - 4)
    _ID.pack_into(buf, 6, request_id)


def finish_frame(buf: bytearray) -> bytearray:
    """Write the length prefix (everything after the first 4 bytes) and return ``buf``."""
    _LEN.pack_into(buf, 0, len(buf) - 4)
    return buf


def encode_request(op_code: int, request_id: int, payload: bytes | bytearray = b"") -> bytearray:
    """A whole request frame in one buffer."""
    buf = begin_request(op_code, request_id)
    buf += payload
    return finish_frame(buf)


_V14 = tuple(V1_4_0)


class ResponseHeader(NamedTuple):
    """What precedes a response payload.  ``status`` 0 is success.

    For < 1.4 responses ``flags`` is synthesised (ERROR when the status is non-zero)
    so callers can test flags the same way for every version.
    """

    request_id: int
    flags: int
    status: int
    error_message: str | None
    topology: tuple[int, int] | None
    notification_op: int | None
    payload_offset: int


def parse_response(frame: memoryview, version: ProtocolVersion) -> ResponseHeader:
    """Parse the header of a response or notification frame body."""
    try:
        if version >= _V14:
            rid, flags = _ID_FLAGS.unpack_from(frame, 0)
            pos = 10
            topology = None
            op = None
            status = 0
            message = None
            if flags & _TOPOLOGY_CHANGED:
                topology = _TOPOLOGY.unpack_from(frame, pos)
                pos += 12
            if flags & _NOTIFICATION:
                op = _OP.unpack_from(frame, pos)[0]
                pos += 2
            if flags & _ERROR:
                status = _STATUS.unpack_from(frame, pos)[0]
                message, pos = read_string(frame, pos + 4)
                if status == 0:
                    status = 1  # the ERROR flag is authoritative; never report success
            return ResponseHeader(rid, flags, status, message, topology, op, pos)
        rid, status = _ID_STATUS.unpack_from(frame, 0)
        pos = 12
        message = None
        if status != 0:
            message, pos = read_string(frame, pos)
        return ResponseHeader(rid, _ERROR if status else 0, status, message, None, None, pos)
    except struct.error:
        raise RemoteProtocolError(
            f"response header truncated: frame of {len(frame)} bytes") from None
