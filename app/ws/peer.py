"""One WebSocket connection as the hub sees it: where its frames go, and how much is waiting.

The hub frames a message once and hands the same bytes to every subscriber's
``Peer.send``.  The fast path writes them straight to the socket; only what the
kernel does not take right away goes to Tornado's stream buffer, and from then
on every frame queues behind it there, so the order of frames never changes.
Tornado's own ``write_message`` would frame the message again for each
connection and create a coroutine per write.

``send`` reports ``False`` when more than ``limit`` bytes are already waiting in
the stream buffer (the socket's kernel buffer is full too): the consumer is not
keeping up, and the hub decides what happens to it.  Nothing is written then, so
a stalled consumer holds at most ``limit`` plus one frame.

Connections that negotiated permessage-deflate (only when compression is turned
on) get each message compressed for them by Tornado: the slow path.
"""

from __future__ import annotations

import asyncio
import socket

import tornado.websocket
from tornado.iostream import IOStream, StreamClosedError


def payloads_of(frames: bytes) -> list[bytes]:
    """The payloads of unmasked frames built by ``protocol.frame``, one after the other in ``frames``."""
    out, pos = [], 0
    while pos < len(frames):
        n = frames[pos + 1] & 0x7F
        head = 2
        if n == 126:
            n, head = int.from_bytes(frames[pos + 2:pos + 4], "big"), 4
        elif n == 127:
            n, head = int.from_bytes(frames[pos + 2:pos + 10], "big"), 10
        out.append(frames[pos + head:pos + head + n])
        pos += head + n
    return out


class Peer:
    __slots__ = ("channels", "closing", "compressed", "handler", "limit", "name", "sock", "stream")

    def __init__(self, handler: tornado.websocket.WebSocketHandler, limit: int, name: str) -> None:
        conn = handler.ws_connection
        assert conn is not None, "a Peer is made in open(), after the handshake"
        stream = conn.stream  # type: ignore[attr-defined]
        assert stream is not None
        self.handler = handler
        self.stream: IOStream = stream
        # Plain TCP only: a TLS stream must encrypt, so its frames go through Tornado's write.
        self.sock: socket.socket | None = stream.socket if type(stream) is IOStream else None
        self.compressed = getattr(conn, "_compressor", None) is not None
        self.limit = limit
        self.name = name
        self.channels: set[str] = set()
        self.closing = False

    def buffered(self) -> int:
        """Bytes accepted but not yet taken by the kernel."""
        return len(self.stream._write_buffer)

    def send(self, frame: bytes) -> bool:
        """Queue complete frames; False (and nothing written) when the peer is over its limit."""
        if self.closing:
            return True
        stream = self.stream
        if stream.closed():
            self.closing = True  # on_close follows and removes it
            return True
        if self.compressed:
            return self._send_compressed(frame)
        waiting = len(stream._write_buffer)
        if waiting or self.sock is None:
            if waiting > self.limit:
                return False
            self._stream_write(frame)
            return True
        try:
            sent = self.sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.closing = True  # reset or broken pipe: Tornado's read side sees it and closes the stream
            return True
        if sent < len(frame):
            self._stream_write(memoryview(frame)[sent:])
        return True

    def _stream_write(self, data: bytes | memoryview) -> None:
        try:
            self.stream.write(data)
        except StreamClosedError:
            self.closing = True

    def _send_compressed(self, frame: bytes) -> bool:
        if len(self.stream._write_buffer) > self.limit:
            return False
        for payload in payloads_of(frame):
            try:
                written = self.handler.write_message(payload)
            except (StreamClosedError, tornado.websocket.WebSocketClosedError):
                self.closing = True
                break
            written.add_done_callback(_retrieve)  # a close while writing is on_close's business, not the log's
        return True

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the frame queues behind what is buffered."""
        self.closing = True
        try:
            self.handler.close(code, reason)
        except StreamClosedError:
            pass

    def abort(self) -> None:
        """Drop the TCP connection now (after a closing handshake that did not finish)."""
        self.closing = True
        self.stream.close()


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
