"""Handing a connection's socket from an asyncio transport to a Tornado ``IOStream``.

    stream = hand_off(transport, unread=b"...", unsent=b"HTTP/1.1 101 ...")

Rules of this file:
- Used twice by ``app.http.connection``: a WebSocket upgrade (Tornado's own WebSocket
  code runs on the ``IOStream``, unchanged) and a first request that llhttp refuses
  but Tornado would answer (Tornado's own HTTP/1.1 connection then serves it, so the
  answer is Tornado's, byte for byte).
- The socket is duplicated, the transport is aborted (its descriptor closed, nothing
  shut down: the peer sees nothing), and the duplicate becomes the stream's socket.
  Bytes the transport read but HTTP did not consume are put in front of the stream's
  read buffer; bytes not yet sent go out first on the stream.
- Two private attributes of ``tornado.iostream.IOStream`` are written here:
  ``_read_buffer`` and ``_read_buffer_size`` (Tornado 6.x).  ``tests/http`` runs
  Tornado's WebSocket suite through this path, so a release that renames them fails
  there.
"""

from __future__ import annotations

import asyncio
import os
import socket

from tornado import iostream


def hand_off(transport: asyncio.Transport, unread: bytes = b"", unsent: bytes = b"",
             max_buffer_size: int | None = None) -> iostream.IOStream:
    """The transport's connection as an ``IOStream``; the transport is closed."""
    raw = transport.get_extra_info("socket")
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    sock.setblocking(False)
    transport.pause_reading()
    transport.abort()
    stream = iostream.IOStream(sock, max_buffer_size=max_buffer_size)
    if unread:
        stream._read_buffer += unread
        stream._read_buffer_size += len(unread)
    if unsent:
        stream.write(unsent)
    return stream
