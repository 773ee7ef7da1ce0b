"""Tornado's own HTTP/1.1 server, with a read gate between one request and the next on each connection.

Rules of this file:
- Everything Tornado does per connection stays Tornado's: parsing, keep-alive,
  ``xheaders``, limits, WebSocket upgrades.  What changes is one step of the serving
  loop: after a response is finished and before the next request is read, the
  connection's ``ReadGate`` (``app.http.gate``) may hold the loop, so nothing is read
  from that socket meanwhile.
- The loop below replaces ``HTTP1ServerConnection._server_request_loop`` (Tornado 6):
  a private method, so ``tests/service/test_read_gate.py`` runs requests through this
  server and fails if a Tornado release changes what it relies on.
- Handlers reach their connection's gate as ``request.connection.context.read_gate``;
  on a server without gates that attribute is missing and nothing is paused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import tornado.httpserver
from tornado import httputil, iostream
from tornado.http1connection import HTTP1Connection, HTTP1ConnectionParameters, HTTP1ServerConnection

from app.http.gate import ReadGate

log = logging.getLogger("app.http")


class _GatedConnection(HTTP1ServerConnection):
    def __init__(self, stream: iostream.IOStream, params: HTTP1ConnectionParameters | None, context: Any,
                 gate: ReadGate) -> None:
        super().__init__(stream, params, context)
        self.gate = gate

    async def _server_request_loop(self, delegate: httputil.HTTPServerConnectionDelegate) -> None:
        gate = self.gate
        try:
            while True:
                request_conn = HTTP1Connection(self.stream, False, self.params, self.context)
                request_delegate = delegate.start_request(self, request_conn)
                try:
                    keep_going = await request_conn.read_response(request_delegate)
                except (iostream.StreamClosedError, iostream.UnsatisfiableReadError, asyncio.CancelledError):
                    return
                except Exception:
                    log.error("unexpected error while serving a connection", exc_info=True)
                    request_conn.close()
                    return
                if not keep_going:
                    return
                if gate.is_open():
                    await asyncio.sleep(0)   # let other connections run between two pipelined requests
                else:
                    await gate.wait()
        finally:
            delegate.on_close(self)


class GatedHTTPServer(tornado.httpserver.HTTPServer):
    """``tornado.httpserver.HTTPServer`` whose connections each have a ``ReadGate``."""

    read_pause_max_s: float = 1.0

    def handle_stream(self, stream: iostream.IOStream, address: tuple[Any, ...]) -> None:
        context = tornado.httpserver._HTTPRequestContext(stream, address, self.protocol, self.trusted_downstream)
        gate = ReadGate(self.read_pause_max_s)
        context.read_gate = gate  # type: ignore[attr-defined]
        conn = _GatedConnection(stream, self.conn_params, context, gate)
        self._connections.add(conn)
        conn.start_serving(self)
