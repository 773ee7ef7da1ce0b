"""The ``/ws`` JSON protocol and WebSocket framing, without I/O.

Rules of this file:
- Text in, commands out (``parse``); values in, bytes out (``message_payload``,
  ``frame``, ``event``).  No sockets, no Redis, no Tornado.
- A client message that is wrong in any way becomes a ``ClientError`` whose
  ``code`` and ``message`` go back to the client as an error frame; the
  connection stays open.
- Message ids are Redis Stream ids, ``"<ms>-<seq>"``: increasing per channel.
  ``StreamId`` orders them; the text form goes to clients as is.

Client to server::

    {"op": "subscribe", "channel": "news", "since": "1732291200000-0", "token": "..."}
    {"op": "unsubscribe", "channel": "news"}

Server to client::

    {"type": "subscribed", "channel": "news", "last_id": "...", "recovered": true, "replayed": 3}
    {"type": "message", "channel": "news", "id": "1732291200000-1", "data": <any JSON>}
    {"type": "unsubscribed", "channel": "news"}
    {"type": "error", "code": "bad_channel", "message": "...", "channel": "news"}
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

CHANNEL = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
PRIVATE_PREFIX = "private:"
_STREAM_ID = re.compile(r"(\d{1,20})-(\d{1,20})")

_OPS = ("subscribe", "unsubscribe")
_FIELDS = {"subscribe": {"op", "channel", "since", "token"}, "unsubscribe": {"op", "channel"}}

_HEAD_SHORT = struct.Struct("!BB")
_HEAD_MEDIUM = struct.Struct("!BBH")
_HEAD_LONG = struct.Struct("!BBQ")
_FIN_TEXT = 0x81


class ClientError(Exception):
    """What was wrong with a client's message: ``code`` for programs, ``message`` for people."""

    def __init__(self, code: str, message: str, channel: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.channel = channel


class StreamId(NamedTuple):
    """A Redis Stream id, ordered as Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str | bytes) -> StreamId:
        raw = text.decode("ascii", "replace") if isinstance(text, bytes) else text
        match = _STREAM_ID.fullmatch(raw)
        if match is None:
            raise ValueError(f"not a message id: {raw[:40]!r} (expected \"<milliseconds>-<sequence>\")")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


@dataclass(frozen=True, slots=True)
class Subscribe:
    channel: str
    since: StreamId | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    channel: str


Command = Subscribe | Unsubscribe


def check_channel(channel: Any) -> str:
    """The channel name if valid; ClientError otherwise."""
    if channel is None:
        raise ClientError("bad_request", "\"channel\" is missing")
    if not isinstance(channel, str) or not CHANNEL.fullmatch(channel):
        shown = channel[:40] if isinstance(channel, str) else type(channel).__name__
        raise ClientError("bad_channel", f"bad channel {shown!r}: 1 to 128 of A-Z a-z 0-9 _ . : -")
    return channel


def parse(text: str | bytes) -> Command:
    """One client message; ``ClientError`` says what is wrong with it."""
    if isinstance(text, bytes):
        raise ClientError("bad_request", "binary frames are not supported: send JSON text")
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ClientError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ClientError("bad_request", "a message must be a JSON object")
    op = msg.get("op")
    if op not in _OPS:
        raise ClientError("unknown_op", f"unknown op {op!r}: expected one of {', '.join(_OPS)}"
                          if op is not None else "\"op\" is missing")
    extra = set(msg) - _FIELDS[op]
    if extra:
        raise ClientError("bad_request", f"unknown fields for {op}: {', '.join(sorted(extra))}")
    channel = check_channel(msg.get("channel"))
    if op == "unsubscribe":
        return Unsubscribe(channel)
    since, token = msg.get("since"), msg.get("token")
    if token is not None and not isinstance(token, str):
        raise ClientError("bad_request", "\"token\" must be a string", channel)
    if since is None:
        return Subscribe(channel, None, token)
    if not isinstance(since, str):
        raise ClientError("bad_since", "\"since\" must be a message id string", channel)
    try:
        return Subscribe(channel, StreamId.parse(since), token)
    except ValueError as exc:
        raise ClientError("bad_since", str(exc), channel) from None


# -- server to client ------------------------------------------------------------------------------

def message_payload(channel: str, msg_id: bytes, data: bytes) -> bytes:
    """The JSON text of a message; ``data`` is JSON already, ``channel`` a checked name (no escaping needed)."""
    return b'{"type":"message","channel":"%s","id":"%s","data":%s}' % (channel.encode(), msg_id, data)


def event(kind: str, **fields: Any) -> bytes:
    """A control message's JSON text (subscribed, unsubscribed, error)."""
    return orjson.dumps({"type": kind, **fields})


def error(exc: ClientError) -> bytes:
    fields: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.channel is not None:
        fields["channel"] = exc.channel
    return event("error", **fields)


def frame(payload: bytes) -> bytes:
    """A complete, unmasked, unfragmented WebSocket text frame (server to client) around ``payload``."""
    n = len(payload)
    if n < 126:
        return _HEAD_SHORT.pack(_FIN_TEXT, n) + payload
    if n < 65536:
        return _HEAD_MEDIUM.pack(_FIN_TEXT, 126, n) + payload
    return _HEAD_LONG.pack(_FIN_TEXT, 127, n) + payload
