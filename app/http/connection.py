"""One HTTP/1.1 connection: an ``asyncio.Protocol`` parsing with llhttp (httptools), serving Tornado delegates.

    server.start_request(protocol, RequestConnection) -> delegate
    delegate.headers_received(start_line, headers) / data_received(chunk) / finish()
    handler -> RequestConnection.write_headers(...) / write(...) / finish() / detach()

Rules of this file:
- The application side is Tornado's, unchanged: every request goes through the
  server's ``start_request()`` and its delegate (``tornado.web.Application``'s
  dispatcher, or any ``HTTPMessageDelegate``); handlers see a ``RequestConnection``,
  which implements ``tornado.httputil.HTTPConnection`` plus what ``RequestHandler``
  and ``WebSocketHandler`` use of Tornado's own connection (``set_close_callback``,
  ``detach``, ``context``, the body limits).
- Framing mirrors ``tornado.http1connection.HTTP1Connection`` so a handler cannot tell
  the difference: keep-alive rules, chunked output, HEAD/1xx/204/304 without bodies,
  Content-Length checked both ways, ``Connection: close``/``Keep-Alive`` headers,
  ``Expect: 100-continue``.  Deliberate differences: a body over the limit gets 413 and
  headers over the limit 431 (Tornado answers 400 to both); a refused message gets a
  short body saying why.
- One request at a time, in order: pipelined requests are parsed as they arrive and
  wait in a queue, reading pauses while one waits, and the next starts (on the next
  loop iteration, as Tornado's own loop does) once the response before it is finished.
- The next request of a connection whose last request went through a backend limit
  waits for a turn before it is parsed (``ReadGate.turn``): its bytes are kept as they
  came, and fed to the parser by the turn's callback.  A connection closed meanwhile
  leaves the line; a draining server serves a kept request before it closes.
- No task per request.  Delegate calls run in the protocol's callbacks; only when a
  delegate returns an awaitable (``@stream_request_body``, ``prepare`` of such a
  handler, gzip decoding) does delivery wait for it, with the body queued and reading
  paused past ``chunk_size`` bytes.
- A delegate that raises is logged once (``tornado.application``, "Uncaught
  exception", as Tornado does) and the connection closes; ``HTTPInputError`` from a
  delegate is the client's fault: 400.
- A request that finished is forgotten at once (delegate, handler, request): the
  cycle connection -> delegate -> handler -> request -> connection is cut, so keep-
  alive connections do not feed the garbage collector.
- Each request starts in the connection's own context (a copy of the one the
  connection was made in), never in the context of the request before it: what is
  scheduled when a response finishes (the next pipelined request, the wait for the
  read gate) runs in ``self.base_context``, since ``finish()`` is called from inside
  the handler, where its budget and other context variables are set.
- Timeouts are the server's sweep (``app.http.fast_server``): this file only says,
  in ``deadline``, until when the connection may stay in its current state.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httptools
from tornado import httputil, iostream
from tornado.http1connection import HTTP1ServerConnection, _GzipMessageDelegate, parse_int
from tornado.httpserver import _HTTPRequestContext
from tornado.log import app_log, gen_log

from app.http.gate import ReadGate
from app.http.handoff import hand_off
from app.http.headers import Headers

log = logging.getLogger("app.http")

_NEVER = float("inf")
_CONTINUE = b"HTTP/1.1 100 (Continue)\r\n\r\n"

# Framing headers noted on the message as they are parsed: lower-cased name -> _Message attribute
_NOTED = {"connection": "connection", "transfer-encoding": "te", "content-length": "length", "expect": "expect",
          "content-encoding": "encoding"}

# Stages of a request: headers to deliver, the checks after them, body to deliver, all read
_HEADERS, _CHECK, _BODY, _READ = 0, 1, 2, 3


class ServerSide(Protocol):
    """What a connection needs from its server (``app.http.fast_server.FastHTTPServer``)."""

    conn_params: Any
    protocol: str | None
    trusted_downstream: list[str] | None
    max_body_size: int
    max_buffer_size: int | None
    read_pause_max_s: float
    header_timeout_s: float | None
    idle_timeout_s: float | None
    replay_refused: bool
    draining: bool

    def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) \
            -> httputil.HTTPMessageDelegate: ...

    def connection_opened(self, proto: HTTP1Protocol) -> None: ...

    def connection_closed(self, proto: HTTP1Protocol) -> None: ...

    def adopt(self, conn: HTTP1ServerConnection) -> None: ...


class RequestContext(_HTTPRequestContext):
    """``request.connection.context``: the peer's address and the scheme, as Tornado's own context has them.

    ``_apply_xheaders`` / ``_unapply_xheaders`` (for ``HTTPServer(xheaders=True)``) are
    inherited; only the constructor differs (there is no ``IOStream`` to look at).
    """

    read_gate: ReadGate | None

    def __init__(self, address: Any, family: int, protocol: str | None,
                 trusted_downstream: list[str] | None, gate: ReadGate | None) -> None:
        self.address = address
        self.address_family = family  # type: ignore[assignment]
        if family in (socket.AF_INET, socket.AF_INET6) and address is not None:
            self.remote_ip = address[0]
        else:
            self.remote_ip = "0.0.0.0"
        self.protocol = protocol or "http"
        self._orig_remote_ip = self.remote_ip
        self._orig_protocol = self.protocol
        self.trusted_downstream = set(trusted_downstream or [])
        if gate is not None:
            self.read_gate = gate


class _Message:
    """A request as parsed: its start line and headers, then body chunks not yet delivered."""

    __slots__ = ("body_size", "chunks", "complete", "connection", "encoding", "expect", "headers", "keep_alive",
                 "length", "start_line", "te")

    def __init__(self) -> None:
        # The framing headers, noted while the headers are parsed (a missing one costs HTTPHeaders.get
        # an exception: about 3 µs a request on this path).
        self.connection: str | None = None
        self.te: str | None = None
        self.length: str | None = None
        self.expect: str | None = None
        self.encoding: str | None = None
        self.start_line: httputil.RequestStartLine | None = None
        self.headers: httputil.HTTPHeaders | None = None
        self.chunks: deque[bytes] = deque()
        self.body_size = 0
        self.complete = False
        self.keep_alive = True


class RequestConnection(httputil.HTTPConnection):
    """The ``HTTPConnection`` of one request (``request.connection``)."""

    def __init__(self, proto: HTTP1Protocol, msg: _Message) -> None:
        self.proto = proto
        self.msg = msg
        self.context = proto.context
        self.delegate: httputil.HTTPMessageDelegate | None = None
        self.stage = _HEADERS
        self.blocked = False                 # waiting on an awaitable the delegate returned
        self.read_finished = False
        self.write_started = False
        self.write_finished = False
        self.detached = False
        self.status = 0
        self.chunking = False
        self.remaining: int | None = None    # bytes the response still owes its Content-Length
        self.body_read = 0
        self.max_body_size = proto.server.max_body_size
        self.body_timeout = proto.params.body_timeout
        self.close_callback: Callable[[], None] | None = None
        assert msg.start_line is not None and msg.headers is not None
        self.disconnect_on_finish = not self._can_keep_alive(msg.start_line, msg)
        self.held: list[bytes] | None = None  # a 101 response, sent by whoever takes the socket

    # -- what RequestHandler uses -------------------------------------------------

    def set_close_callback(self, callback: Callable[[], None] | None) -> None:
        self.close_callback = callback

    def set_body_timeout(self, timeout: float) -> None:
        self.body_timeout = timeout
        if not self.read_finished and self.proto.current is self:
            self.proto.deadline = time.monotonic() + timeout

    def set_max_body_size(self, max_body_size: int) -> None:
        self.max_body_size = max_body_size

    def detach(self) -> iostream.IOStream:
        """The socket as an ``IOStream`` (WebSocket upgrades); HTTP processing of this connection stops."""
        return self.proto.detach(self)

    # -- HTTPConnection ------------------------------------------------------------

    def write_headers(self, start_line: httputil.RequestStartLine | httputil.ResponseStartLine,
                      headers: httputil.HTTPHeaders, chunk: bytes | None = None) -> asyncio.Future[None]:
        assert isinstance(start_line, httputil.ResponseStartLine)
        request = self.msg.start_line
        assert request is not None and self.msg.headers is not None
        code = start_line.code
        self.status = code
        self.write_started = True
        http11 = request.version == "HTTP/1.1"
        self.chunking = (http11 and request.method != "HEAD" and code not in (204, 304)
                         and not 100 <= code < 200 and "Content-Length" not in headers)
        if not self.disconnect_on_finish and self.proto.server.draining and code != 101:
            self.disconnect_on_finish = True
        if http11 and self.disconnect_on_finish:
            headers["Connection"] = "close"
        if request.version == "HTTP/1.0" and (self.msg.connection or "").lower() == "keep-alive" \
                and not self.disconnect_on_finish:
            headers["Connection"] = "Keep-Alive"
        if self.chunking:
            headers["Transfer-Encoding"] = "chunked"
        if request.method == "HEAD" or code == 304:
            self.remaining = 0
        elif "Content-Length" in headers:
            self.remaining = parse_int(headers["Content-Length"])
        else:
            self.remaining = None
        # HTTPHeaders.get_all(), without its generator: the same pairs in the same order.
        lines = [f"{name}: {value}" for name, values in headers._as_list.items() for value in values]
        if lines:
            block = "\r\n".join(lines)
            # The separators hold len(lines) - 1 of each; any more is a CR or LF inside a line.
            if block.count("\n") >= len(lines) or block.count("\r") >= len(lines):
                bad = next(line for line in lines if "\n" in line or "\r" in line)
                raise ValueError(f"Illegal characters (CR or LF) in header: {bad!r}")
            data = f"HTTP/1.1 {code} {start_line.reason}\r\n{block}\r\n\r\n".encode("latin1")
        else:
            data = f"HTTP/1.1 {code} {start_line.reason}\r\n\r\n".encode("latin1")
        if chunk:
            data += self._format_chunk(chunk)
        if code == 101:
            self.held = [data]
            return self.proto.done_future()
        return self.proto.send(data)

    def write(self, chunk: bytes) -> asyncio.Future[None]:
        data = self._format_chunk(chunk)
        if self.held is not None:
            self.held.append(data)
            return self.proto.done_future()
        return self.proto.send(data)

    def finish(self) -> None:
        proto = self.proto
        if self.remaining:
            proto.abort()
            raise httputil.HTTPOutputError(f"Tried to write {self.remaining} bytes less than Content-Length")
        if self.chunking:
            proto.send(b"0\r\n\r\n")
        self.write_finished = True
        if not self.read_finished:
            # The rest of the body is not read: closing is the only way not to read it.
            self.disconnect_on_finish = True
        proto.response_finished(self)

    # -- helpers ---------------------------------------------------------------------

    def _format_chunk(self, chunk: bytes) -> bytes:
        if self.remaining is not None:
            self.remaining -= len(chunk)
            if self.remaining < 0:
                self.proto.abort()
                raise httputil.HTTPOutputError("Tried to write more data than Content-Length")
        if self.chunking and chunk:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return chunk

    def _can_keep_alive(self, start_line: httputil.RequestStartLine, msg: _Message) -> bool:
        if self.proto.params.no_keep_alive:
            return False
        connection = msg.connection.lower() if msg.connection is not None else None
        if start_line.version == "HTTP/1.1":
            return connection != "close"
        if msg.length is not None or msg.te is not None or start_line.method in ("HEAD", "GET"):
            return connection == "keep-alive"
        return False


class _InputError(Exception):
    """The client's message cannot be served: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


class HTTP1Protocol(asyncio.Protocol):
    """One client connection.  Created by ``FastHTTPServer`` for each accepted socket."""

    def __init__(self, server: ServerSide) -> None:
        self.server = server
        self.params = server.conn_params
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.context: RequestContext | None = None
        self.gate: ReadGate | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.closed = False
        self.closed_future: asyncio.Future[None] = self.loop.create_future()
        self.deadline = _NEVER                # the server's sweep closes the connection after this
        self._building: _Message | None = None
        self._url: list[bytes] = []
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._queue: deque[_Message] = deque()
        self.current: RequestConnection | None = None
        self._served = 0
        self._first: bytearray | None = bytearray()   # bytes of the first request, until its headers parse
        self._tail = b""                      # bytes after an upgrade request, not parsed
        self._upgraded = False
        self._last_keep_alive = True
        self._read_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._gate_waits = False              # reading waits for the read gate (gate.when_open)
        self._held: list[bytes] | None = None  # bytes of the next request, kept until its turn (gate.turn)
        self._turn: asyncio.Future[None] | None = None
        self.base_context = contextvars.copy_context()
        self._done: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]   # uvloop's transports are not registered subclasses
        sock = transport.get_extra_info("socket")
        family = sock.family if sock is not None else socket.AF_INET
        server = self.server
        if server.read_pause_max_s > 0:
            self.gate = ReadGate(server.read_pause_max_s)
        self.context = RequestContext(transport.get_extra_info("peername"), family, server.protocol,
                                      server.trusted_downstream, self.gate)
        server.connection_opened(self)
        self._await_request()

    def data_received(self, data: bytes) -> None:
        if self._upgraded:
            self._tail += data
            return
        held = self._held
        if held is not None:
            held.append(data)
            return
        gate = self.gate
        if gate is not None and self.current is None and not self._queue:
            turn = gate.turn()
            if turn is not None:
                # A request for a route whose backends take turns: parsed and started in its turn,
                # not in the poll that read it (see the read gate's rules).
                self._held, self._turn = [data], turn
                turn.add_done_callback(self._turn_came, context=self.base_context.copy())
                return
        self._feed(data)

    def _turn_came(self, turn: asyncio.Future[None]) -> None:
        held, self._held, self._turn = self._held, None, None
        if held is not None and not self.closed and not turn.cancelled():
            self._feed(b"".join(held) if len(held) > 1 else held[0])

    def _feed(self, data: bytes) -> None:
        first = self._first
        if first is not None:
            first += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgraded = True
            self._tail = data[exc.args[0]:]
            self._pause_reading()
        except httptools.HttpParserError as exc:
            cause = exc.__context__    # an exception of ours, raised in a callback, comes wrapped
            if isinstance(cause, _InputError):
                self._refuse(cause)
            else:
                self._parse_failed(exc)

    def eof_received(self) -> bool | None:
        return None    # close the transport: half-closed clients get no more answers (as Tornado)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.deadline = _NEVER
        rc = self.current
        if rc is not None and not rc.detached:
            self.current = None
            self._end_request(rc, closed=True)
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_exception(iostream.StreamClosedError())
                waiter.exception()
        self._drain_waiters.clear()
        if self._gate_waits and self.gate is not None:
            self._gate_waits = False
            self.gate.cancel()
        turn = self._turn
        if turn is not None:
            self._turn = None
            turn.cancel()          # leaves the line
        self._queue.clear()
        if not self.closed_future.done():
            self.closed_future.set_result(None)
        self.server.connection_closed(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- llhttp callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._building = _Message()
        self._url.clear()
        self._raw_headers.clear()
        self._header_bytes = 0
        # Slow headers: from a request's first byte, its headers get header_timeout_s at most
        # (a request pipelined behind one being served waits for its turn without a deadline).
        header_timeout = self.server.header_timeout_s
        if self.current is None and header_timeout is not None:
            self.deadline = min(self.deadline, time.monotonic() + header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))
        self._count_header_bytes(len(name) + len(value) + 4)

    def on_headers_complete(self) -> None:
        msg = self._building
        assert msg is not None
        parser = self.parser
        version = parser.get_http_version()
        if not version.startswith("1."):
            raise _InputError(505, "HTTP Version Not Supported", f"HTTP/{version} is not served here")
        url = b"".join(self._url).decode("latin1")
        msg.start_line = httputil.RequestStartLine(parser.get_method().decode("latin1"), url, "HTTP/" + version)
        headers = Headers.of({})
        try:
            for raw_name, raw_value in self._raw_headers:
                name, value = raw_name.decode("latin1"), raw_value.decode("latin1")
                headers.add(name, value)
                noted = _NOTED.get(name.lower())
                if noted is not None:
                    before = getattr(msg, noted)
                    setattr(msg, noted, value if before is None else f"{before},{value}")
        except httputil.HTTPInputError as exc:
            raise _InputError(400, "Bad Request", str(exc)) from None
        te = msg.te
        if te is not None and te.lower() != "chunked":
            raise _InputError(400, "Bad Request", f"unsupported Transfer-Encoding {te!r}")
        msg.headers = headers
        msg.keep_alive = parser.should_keep_alive()
        self._first = None
        if self.current is None and not self._queue:
            self._start(msg)
        else:
            self._queue.append(msg)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        msg = self._building
        assert msg is not None
        msg.body_size += len(body)
        size = self.params.chunk_size
        if len(body) <= size:
            msg.chunks.append(body)
        else:
            msg.chunks.extend(body[i:i + size] for i in range(0, len(body), size))
        rc = self.current
        if rc is not None and rc.msg is msg and not rc.blocked:
            self._pump(rc)
        elif msg.body_size > size:
            # Queued behind another request, or its delegate is busy (the body limit is checked as
            # the body is delivered, because prepare() may change it): read no further for now.
            self._pause_reading()

    def on_message_complete(self) -> None:
        msg = self._building
        assert msg is not None
        msg.complete = True
        self._building = None
        self._last_keep_alive = msg.keep_alive
        rc = self.current
        if rc is not None and rc.msg is msg and not rc.blocked:
            self._pump(rc)

    # -- serving a request ----------------------------------------------------------------------

    def _start(self, msg: _Message) -> None:
        rc = RequestConnection(self, msg)
        self.current = rc
        self.deadline = _NEVER
        try:
            delegate = self.server.start_request(self, rc)
            assert msg.headers is not None
            if self.params.decompress and (msg.encoding or "").lower() == "gzip":
                delegate = _GzipMessageDelegate(delegate, self.params.chunk_size, rc.max_body_size)
        except Exception:
            app_log.error("Uncaught exception", exc_info=True)
            self.abort()
            return
        rc.delegate = delegate
        self._pump(rc)

    def _pump(self, rc: RequestConnection) -> None:
        """Deliver what has arrived to the delegate, until it is all delivered or the delegate makes us wait."""
        msg = rc.msg
        delegate = rc.delegate
        assert delegate is not None and msg.start_line is not None and msg.headers is not None
        while not rc.blocked and self.current is rc:
            stage = rc.stage
            if stage == _HEADERS:
                rc.stage = _CHECK
                pending = self._call(rc, delegate.headers_received, msg.start_line, msg.headers)
                if pending is not None and self.current is rc and not rc.detached:
                    self._wait_for(rc, pending)
            elif stage == _CHECK:
                rc.stage = _BODY
                self._after_headers(rc)
            elif msg.chunks:
                chunk = msg.chunks.popleft()
                if rc.write_finished:
                    continue
                rc.body_read += len(chunk)
                if rc.body_read > rc.max_body_size:
                    what = "Content-Length too long" if msg.length is not None else "chunked body too large"
                    self._refuse(_InputError(413, "Content Too Large", f"{what}: over {rc.max_body_size} bytes"))
                    return
                pending = self._call(rc, delegate.data_received, chunk)
                if pending is not None and self.current is rc:
                    self._wait_for(rc, pending)
            elif msg.complete:
                rc.stage = _READ
                rc.read_finished = True
                self.deadline = _NEVER
                if not rc.write_finished:
                    self._call(rc, delegate.finish)
                return
            else:
                if self._read_paused and not self._queue and not self._upgraded:
                    self._resume_reading()
                return

    def _after_headers(self, rc: RequestConnection) -> None:
        """Once the delegate has the headers: the body limit it may have changed, and 100-continue."""
        msg = rc.msg
        assert msg.headers is not None and msg.start_line is not None
        length = msg.length
        if length is not None and length.isdigit() and int(length) > rc.max_body_size:
            self._refuse(_InputError(413, "Content Too Large",
                                     f"Content-Length too long: over {rc.max_body_size} bytes"))
            return
        if not msg.complete and rc.body_timeout is not None:
            self.deadline = time.monotonic() + rc.body_timeout
        if msg.expect == "100-continue" and not rc.write_finished and not msg.complete:
            self.send(_CONTINUE)

    def _call(self, rc: RequestConnection, method: Callable[..., Any], *args: Any) -> Awaitable[None] | None:
        """A delegate method, with Tornado's rules for what it raises."""
        try:
            return method(*args)  # type: ignore[no-any-return]
        except httputil.HTTPInputError as exc:
            self._refuse(_InputError(400, "Bad Request", str(exc)))
        except Exception:
            app_log.error("Uncaught exception", exc_info=True)
            self.abort()
        return None

    def _wait_for(self, rc: RequestConnection, pending: Awaitable[None]) -> None:
        rc.blocked = True
        future = asyncio.ensure_future(pending)

        def resume(done: asyncio.Future[None]) -> None:
            rc.blocked = False
            if done.cancelled():
                self.abort()
                return
            exc = done.exception()
            if exc is not None:
                if isinstance(exc, httputil.HTTPInputError):
                    self._refuse(_InputError(400, "Bad Request", str(exc)))
                else:
                    app_log.error("Uncaught exception", exc_info=exc)
                    self.abort()
                return
            if self.current is rc and not self.closed:
                self._pump(rc)

        future.add_done_callback(resume)

    def response_finished(self, rc: RequestConnection) -> None:
        """``RequestConnection.finish``: the response is complete; on to the next request (or close)."""
        if rc.status == 101:
            # WebSocketHandler detaches right after finishing the 101; if nothing does, close.
            self._soon(self._upgrade_abandoned, rc)
            return
        self._served += 1
        self._end_request(rc)
        if self.closed or self.current is not None:
            return              # the peer went away while the handler ran: nothing more to serve
        if rc.disconnect_on_finish:
            self.close()
            return
        if self._upgraded:
            # A request with an Upgrade header that was answered as plain HTTP: parse on.
            self._upgraded = False
            self.parser = httptools.HttpRequestParser(self)
            tail, self._tail = self._tail, b""
            if tail:
                self._soon(self._feed_tail, tail)
        if self.server.draining and not self._queue:
            self.close()
            return
        gate = self.gate
        if gate is not None and not gate.is_open():
            self._pause_reading()
            self._gate_waits = True
            gate.when_open(self._gate_opened, self.base_context.copy())
            return
        self._next()

    def _end_request(self, rc: RequestConnection, closed: bool = False) -> None:
        if self.current is rc:
            self.current = None
        delegate = rc.delegate
        if closed and delegate is not None:
            try:
                if not rc.read_finished:
                    delegate.on_connection_close()
                elif rc.close_callback is not None:
                    rc.close_callback()
            except Exception:
                app_log.error("Uncaught exception", exc_info=True)
        rc.delegate = None
        rc.close_callback = None

    def _soon(self, callback: Callable[..., None], *args: Any) -> None:
        """``call_soon`` in a fresh copy of the connection's context (see the rules above)."""
        self.loop.call_soon(callback, *args, context=self.base_context.copy())

    def _gate_opened(self, paused_s: float) -> None:
        self._gate_waits = False
        if not self.closed:
            self._next()

    def _next(self) -> None:
        if self._queue:
            self._soon(self._start_queued)
        else:
            self._await_request()
            if self._read_paused and not self._upgraded:
                self._resume_reading()

    def _start_queued(self) -> None:
        if self.closed or self.current is not None or not self._queue:
            return
        msg = self._queue.popleft()
        self._start(msg)
        if not self._queue and self._read_paused and self.current is not None and not self._upgraded \
                and not self.current.blocked:
            self._resume_reading()

    def _await_request(self) -> None:
        idle = self.server.idle_timeout_s
        self.deadline = _NEVER if idle is None else time.monotonic() + idle

    def _feed_tail(self, tail: bytes) -> None:
        if not self.closed:
            self.data_received(tail)

    def _upgrade_abandoned(self, rc: RequestConnection) -> None:
        if not rc.detached and not self.closed:
            if rc.held:
                self.send(b"".join(rc.held))
            self.close()

    # -- detaching ---------------------------------------------------------------------------

    def detach(self, rc: RequestConnection) -> iostream.IOStream:
        assert self.transport is not None
        rc.detached = True
        held = b"".join(rc.held or ())
        rc.held = None
        self._end_request(rc)
        stream = hand_off(self.transport, unread=self._tail, unsent=held,
                          max_buffer_size=self.server.max_buffer_size)
        self._tail = b""
        return stream

    def _parse_failed(self, exc: httptools.HttpParserError) -> None:
        first = self._first
        if first is not None and self._served == 0 and self.current is None and self.server.replay_refused:
            # llhttp refuses some requests Tornado answers (an unknown method gets 405, bare-LF line
            # ends are served): hand the connection to Tornado's own HTTP/1.1 code, from the first byte.
            self._replay(bytes(first))
            return
        if self._building is None and not self._last_keep_alive:
            self._pause_reading()     # bytes after a message that closes the connection: ignored
            return
        detail = str(exc) or type(exc).__name__
        if "chunk size" in detail:
            detail = f"invalid chunk size ({detail})"
        self._refuse(_InputError(400, "Bad Request", detail))

    def _replay(self, data: bytes) -> None:
        assert self.transport is not None and self.context is not None
        self._building = None
        stream = hand_off(self.transport, unread=data, max_buffer_size=self.server.max_buffer_size)
        self.closed = True
        context = _HTTPRequestContext(stream, self.context.address, self.server.protocol,
                                      self.server.trusted_downstream)
        conn = HTTP1ServerConnection(stream, self.params, context)
        self.server.adopt(conn)

    def _refuse(self, exc: _InputError) -> None:
        if exc.status == 431:   # Tornado's words for it, as its stream cannot hold the headers
            gen_log.info("Unsatisfiable read from %s: %s", self.context, exc.detail)
        else:
            gen_log.info("Malformed HTTP message from %s: %s", self.context, exc.detail)
        rc = self.current
        if rc is None or not rc.write_started:
            body = f"{exc.detail}\n".encode("latin1", "replace")
            self.send(b"HTTP/1.1 %d %b\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%b"
                      % (exc.status, exc.reason.encode(), len(body), body))
        if rc is not None:
            self._end_request(rc, closed=not rc.read_finished)
        self.close()

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.params.max_header_size:
            raise _InputError(431, "Request Header Fields Too Large",
                              f"the request line and headers are over {self.params.max_header_size} bytes")

    # -- writing and closing --------------------------------------------------------------------

    def done_future(self) -> asyncio.Future[None]:
        """A future already done (one per connection, shared: a done future cannot change)."""
        future = self._done
        if future is None:
            future = self._done = self.loop.create_future()
            future.set_result(None)
        return future

    def send(self, data: bytes) -> asyncio.Future[None]:
        """Write; the future is done when the bytes are with the transport and it is not over its limit."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            failed: asyncio.Future[None] = self.loop.create_future()
            failed.set_exception(iostream.StreamClosedError())
            failed.exception()
            return failed
        transport.write(data)
        if self._write_paused:
            future: asyncio.Future[None] = self.loop.create_future()
            self._drain_waiters.append(future)
            return future
        return self.done_future()

    def close(self) -> None:
        """Close after what is written has been sent."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Close now; unsent bytes are dropped."""
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def timed_out(self) -> None:
        """The sweep found this connection past its deadline."""
        rc = self.current
        if rc is not None and not rc.read_finished:
            gen_log.info("Timeout reading body from %s", self.context)
        self.abort()

    def close_if_idle(self) -> None:
        if self.current is None and not self._queue and self._held is None:   # a held request is served
            self.close()

    def _pause_reading(self) -> None:
        if not self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._read_paused and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()

    async def aclose(self) -> None:
        """For ``HTTPServer.close_all_connections``: close now and wait until the connection is gone."""
        self.abort()
        await self.closed_future
