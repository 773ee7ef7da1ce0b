"""``FastHTTPServer``: Tornado's ``HTTPServer``, with connections served by ``app.http.connection``.

    server = FastHTTPServer(app, max_body_size=..., idle_connection_timeout=...)
    server.listen(8888)                 # or add_sockets / bind+start, as with HTTPServer
    ...
    server.stop(); server.begin_drain(); ...; await server.close_all_connections()

Rules of this file:
- It is a ``tornado.httpserver.HTTPServer`` (so ``HTTPServer.configure(FastHTTPServer)``
  makes every ``HTTPServer(...)`` one of these): the constructor's arguments, ``xheaders``,
  ``start_request``, ``stop`` and ``close_all_connections`` keep their meaning.  What changes is
  who accepts and serves connections: the event loop's own server (``loop.create_server``
  on the same listening sockets) with one ``HTTP1Protocol`` per connection.
- With ``ssl_options`` the stock path serves (TLS is terminated by Tornado's ``SSLIOStream``);
  this transport serves plain TCP only.
- One sweep timer per server, not one timer per connection: every ``sweep_interval`` it
  closes connections past their ``deadline`` (idle keep-alive, slow headers, slow body).
- Draining (graceful shutdown): ``begin_drain()`` closes idle connections at once, and
  every response finished from then on carries ``Connection: close``.
- Private Tornado names used by this transport, all checked by ``tests/http``:
  ``tornado.httpserver._HTTPRequestContext`` (subclassed), ``HTTPServer._connections``
  and ``conn_params``, ``tornado.http1connection._GzipMessageDelegate``,
  ``HTTPHeaders._as_list`` (read to write the response headers, ``app.http.connection``), and
  ``IOStream._read_buffer``/``_read_buffer_size`` (``app.http.handoff``).
  Tested with Tornado 6.5 and 6.6 (pinned in pyproject.toml).
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import tornado.httpserver
from tornado.http1connection import HTTP1ServerConnection
from tornado.ioloop import IOLoop

from app.http.connection import HTTP1Protocol


class FastHTTPServer(tornado.httpserver.HTTPServer):
    """Tornado's HTTP server API over an ``asyncio.Protocol`` per connection, parsed by llhttp."""

    read_pause_max_s: float = 0.0       # > 0: each connection gets a ReadGate (app.http.gate)
    header_timeout_s: float | None = None  # a request's headers must arrive within this; None: the idle timeout
    replay_refused: bool = True         # a first request llhttp refuses is served by Tornado's own code
    backlog: int = 128                  # the listen queue (create_server listens again with it)

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.idle_timeout_s: float | None = self.conn_params.header_timeout
        self.max_body_size: int = self.conn_params.max_body_size or self.max_buffer_size or 100 * 1024 * 1024
        self.draining = False
        self._servers: list[asyncio.AbstractServer] = []
        self._starting: list[tuple[asyncio.Task[None], socket.socket]] = []
        self._sweeper: asyncio.TimerHandle | None = None

    # -- listening -----------------------------------------------------------------------------

    def add_sockets(self, sockets: Any) -> None:
        if self.ssl_options is not None:
            super().add_sockets(sockets)
            return
        if self.header_timeout_s is None:
            self.header_timeout_s = self.idle_timeout_s or 3600.0
        loop = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._starting.append((loop.create_task(self._serve_socket(sock)), sock))

    async def _serve_socket(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: HTTP1Protocol(self), sock=sock, backlog=self.backlog)
        if self._stopped:
            server.close()
            return
        self._servers.append(server)

    def stop(self) -> None:
        if self._stopped:
            return
        if self.ssl_options is not None:
            super().stop()
            return
        self._stopped = True
        for task, sock in self._starting:
            if not task.done():
                task.cancel()
                sock.close()
        self._starting.clear()
        for server in self._servers:
            server.close()
        self._servers.clear()
        self._sockets.clear()

    # -- connections ---------------------------------------------------------------------------

    def connection_opened(self, proto: HTTP1Protocol) -> None:
        self._connections.add(proto)  # type: ignore[arg-type]
        if self.draining:
            proto.close()
        if self._sweeper is None:
            self._schedule_sweep()

    def connection_closed(self, proto: HTTP1Protocol) -> None:
        self._connections.discard(proto)  # type: ignore[arg-type]

    def adopt(self, conn: HTTP1ServerConnection) -> None:
        """A connection handed to Tornado's own HTTP/1.1 code (a refused first request, replayed)."""
        self._connections.add(conn)
        conn.start_serving(self)

    def on_close(self, server_conn: object) -> None:
        self._connections.discard(server_conn)  # type: ignore[arg-type]

    def begin_drain(self) -> None:
        """Graceful shutdown: idle connections close now, busy ones after their response."""
        self.draining = True
        for proto in self._protocols():
            proto.close_if_idle()

    async def close_all_connections(self) -> None:
        while self._connections:
            conn = next(iter(self._connections))
            if isinstance(conn, HTTP1Protocol):
                await conn.aclose()
                self._connections.discard(conn)  # type: ignore[arg-type]
            else:
                await conn.close()

    def _protocols(self) -> list[HTTP1Protocol]:
        """This transport's connections (``_connections`` also holds those handed to Tornado's own code)."""
        return [c for c in self._connections if isinstance(c, HTTP1Protocol)]  # type: ignore[misc]

    @property
    def sweep_interval(self) -> float:
        shortest = min(t for t in (self.idle_timeout_s, self.header_timeout_s, self.conn_params.body_timeout,
                                   4.0) if t)
        return max(0.01, min(1.0, shortest / 4))

    def _schedule_sweep(self) -> None:
        loop = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]
        self._sweeper = loop.call_later(self.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for proto in [p for p in self._protocols() if p.deadline < now]:
            proto.timed_out()
        if self._connections:
            self._schedule_sweep()
