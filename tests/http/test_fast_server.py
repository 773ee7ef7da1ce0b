"""``FastHTTPServer`` over real sockets: what Tornado's suites do not check, or check differently.

Each test starts the transport in this process on an ephemeral loopback port with plain
Tornado handlers, and talks to it with raw sockets so the bytes on the wire are what is
checked.  Timeouts are shortened on the server object (``header_timeout_s``,
``idle_connection_timeout``) so the tests take a fraction of a second; the service's
defaults are 10 s and 75 s (``tests/service/test_transport_settings.py`` checks those
settings through the service).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import random
import re
import socket
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.web

from app.http.fast_server import FastHTTPServer
from drivers.limits import LimitConfig, Limiter
from drivers.turns import turns

pytestmark = pytest.mark.asyncio

ALIVE: weakref.WeakSet[tornado.web.RequestHandler] = weakref.WeakSet()


class Hello(tornado.web.RequestHandler):
    def initialize(self) -> None:
        ALIVE.add(self)

    def get(self) -> None:
        self.write("hello")

    def head(self) -> None:
        self.set_header("Content-Length", "5")


class Slow(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("s", "0.2")))
        self.write(f"slow {self.get_argument('s', '0.2')}")


class Echo(tornado.web.RequestHandler):
    def post(self) -> None:
        self.write(self.request.body)


class Chunks(tornado.web.RequestHandler):
    async def get(self) -> None:
        for part in ("a", "bb", "ccc"):
            self.write(part)
            await self.flush()


SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("SEEN")


class Context(tornado.web.RequestHandler):
    """Answers what a context variable held when the request began, then sets it (as a request budget does)."""

    def get(self) -> None:
        self.write(SEEN.get("unset"))
        SEEN.set(self.get_argument("me"))


class Injected(tornado.web.RequestHandler):
    """A header value with a line break, put past set_header's own check."""

    def get(self) -> None:
        self._headers["X-Note"] = self.get_argument("note")
        self.write("never sent")


def _app() -> tornado.web.Application:
    return tornado.web.Application([(r"/", Hello), (r"/slow", Slow), (r"/echo", Echo), (r"/chunks", Chunks),
                                    (r"/context", Context), (r"/injected", Injected)],
                                   log_function=lambda handler: None)


@pytest.fixture
async def server() -> AsyncIterator[tuple[FastHTTPServer, int]]:
    srv = FastHTTPServer(_app(), max_body_size=1024, max_header_size=2048, idle_connection_timeout=0.6)
    srv.header_timeout_s = 0.3
    srv.listen(0, "127.0.0.1")
    port = next(iter(srv._sockets.values())).getsockname()[1]
    await asyncio.sleep(0.05)       # the event loop's server starts listening on the next iteration
    yield srv, port
    srv.stop()
    await srv.close_all_connections()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _response(reader: asyncio.StreamReader, *, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-cased names), body (none after a HEAD request)."""
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin1")
    assert head.startswith("HTTP/1.1 "), head
    status = int(head.split(" ", 2)[1])
    headers = {k.lower(): v for k, v in re.findall(r"\r\n([^:\r\n]+): ([^\r\n]*)", head)}
    if head_request:
        body = b""
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = b""
    return status, headers, body


async def _closed(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closes the connection (EOF); fails if it stays open ``within`` seconds."""
    began = time.monotonic()
    try:
        assert await asyncio.wait_for(reader.read(100), within) == b""
    except ConnectionResetError:
        pass                    # closed while bytes of ours were unread there: a reset, not a FIN
    return time.monotonic() - began


async def test_pipelined_requests_are_answered_in_order(server: tuple[FastHTTPServer, int]) -> None:
    _, port = server
    reader, writer = await _connect(port)
    writer.write(b"GET /slow?s=0.2 HTTP/1.1\r\nHost: t\r\n\r\n"
                 b"GET /slow?s=0.01 HTTP/1.1\r\nHost: t\r\n\r\n"
                 b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    bodies = [(await _response(reader))[2] for _ in range(3)]
    assert bodies == [b"slow 0.2", b"slow 0.01", b"hello"]
    writer.close()


async def test_pipelined_requests_do_not_inherit_the_context_of_the_request_before(
        server: tuple[FastHTTPServer, int]) -> None:
    # A request's context variables (its budget, say) are its own: the next request on the
    # connection, started when this one finishes, begins in the connection's context, not in its.
    _, port = server
    reader, writer = await _connect(port)
    writer.write(b"".join(b"GET /context?me=%d HTTP/1.1\r\nHost: t\r\n\r\n" % i for i in range(3)))
    bodies = [(await _response(reader))[2] for _ in range(3)]
    assert bodies == [b"unset"] * 3
    writer.write(b"GET /context?me=3 HTTP/1.1\r\nHost: t\r\n\r\n")     # and read after a pause
    assert (await _response(reader))[2] == b"unset"
    writer.close()


@pytest.mark.parametrize("note", ["a%0D%0AX-Evil:%201", "a%0AX-Evil:%201", "a%0Db", "fine"])
async def test_a_header_with_a_line_break_is_never_sent(server: tuple[FastHTTPServer, int], note: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    _, port = server
    reader, writer = await _connect(port)
    writer.write(b"GET /injected?note=%b HTTP/1.1\r\nHost: t\r\n\r\n" % note.encode())
    if note == "fine":
        status, headers, body = await _response(reader)
        assert (status, headers["x-note"], body) == (200, "fine", b"never sent")
    else:
        with caplog.at_level(logging.ERROR, logger="tornado.application"):
            assert await asyncio.wait_for(reader.read(), 5) == b""      # closed, nothing written
        assert "Illegal characters (CR or LF) in header" in caplog.text
    writer.close()


async def test_http10_head_and_chunked_responses(server: tuple[FastHTTPServer, int]) -> None:
    _, port = server
    reader, writer = await _connect(port)
    writer.write(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /chunks HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, body = await _response(reader, head_request=True)
    assert (status, headers["content-length"]) == (200, "5")        # HEAD: the length, no body
    status, headers, body = await _response(reader)                 # ... so the next response parses
    assert (headers["transfer-encoding"], body) == ("chunked", b"abbccc")
    writer.close()
    reader, writer = await _connect(port)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    status, headers, body = await _response(reader)
    assert (status, body) == (200, b"hello")
    assert await _closed(reader, 1.0) < 1.0                         # HTTP/1.0 without keep-alive: closed


async def test_a_body_over_the_limit_gets_413_and_headers_over_it_431(server: tuple[FastHTTPServer, int]) -> None:
    _, port = server
    reader, writer = await _connect(port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n")
    status, headers, body = await _response(reader)
    assert (status, headers["connection"]) == (413, "close")
    assert b"Content-Length too long" in body
    reader, writer = await _connect(port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"400\r\n" + b"x" * 1024 + b"\r\n" + b"10\r\n" + b"y" * 16 + b"\r\n0\r\n\r\n")
    assert (await _response(reader))[0] == 413                       # a chunked body is counted as it comes
    reader, writer = await _connect(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"z" * 3000 + b"\r\n\r\n")
    assert (await _response(reader))[0] == 431
    reader, writer = await _connect(port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
    assert (await _response(reader))[2] == b"hello"                  # under the limit: served
    writer.close()


async def test_slow_headers_are_cut_off_after_header_timeout(server: tuple[FastHTTPServer, int]) -> None:
    srv, port = server
    srv.idle_timeout_s = 30.0                        # only the header timeout (0.3 s) may close it
    reader, writer = await _connect(port)
    began = time.monotonic()
    writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")

    async def trickle() -> None:                     # a byte every 0.1 s keeps a per-read timer alive
        for _ in range(20):
            await asyncio.sleep(0.1)
            if writer.is_closing():
                return
            writer.write(b"X")

    dribbling = asyncio.ensure_future(trickle())
    await _closed(reader, 3.0)
    took = time.monotonic() - began
    dribbling.cancel()
    assert 0.25 <= took < 0.8, f"closed {took:.2f} s after the first byte; header_timeout_s is 0.3"


async def test_an_idle_kept_alive_connection_is_closed_after_idle_timeout(
        server: tuple[FastHTTPServer, int]) -> None:
    _, port = server
    reader, writer = await _connect(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    await _response(reader)
    began = time.monotonic()
    await _closed(reader, 3.0)
    idle = time.monotonic() - began
    assert 0.5 <= idle < 1.5, f"closed after {idle:.2f} s idle; idle_connection_timeout is 0.6"


async def test_a_request_llhttp_refuses_is_answered_by_tornado(server: tuple[FastHTTPServer, int]) -> None:
    _, port = server
    reader, writer = await _connect(port)
    writer.write(b"FROB / HTTP/1.1\r\nHost: t\r\n\r\n")        # an unknown method: Tornado says 405
    assert (await _response(reader))[0] == 405
    writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")         # ... and keeps serving the connection
    assert (await _response(reader))[2] == b"hello"
    writer.close()
    reader, writer = await _connect(port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
    assert (await _response(reader))[0] == 400                  # llhttp takes it; Tornado would not


async def test_draining_closes_idle_connections_and_finishes_busy_ones(server: tuple[FastHTTPServer, int]) -> None:
    srv, port = server
    idle_reader, idle_writer = await _connect(port)
    idle_writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    await _response(idle_reader)
    busy_reader, busy_writer = await _connect(port)
    busy_writer.write(b"GET /slow?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n")
    await asyncio.sleep(0.1)
    srv.stop()
    srv.begin_drain()
    assert await _closed(idle_reader, 0.5) < 0.5
    status, headers, body = await _response(busy_reader)
    assert (status, body, headers.get("connection")) == (200, b"slow 0.3", "close")
    await _closed(busy_reader, 0.5)


async def test_a_finished_request_leaves_no_cycle_behind(server: tuple[FastHTTPServer, int]) -> None:
    """connection -> delegate -> handler -> request -> connection is cut when a response ends."""
    _, port = server
    reader, writer = await _connect(port)
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            await _response(reader)
        await asyncio.sleep(0.05)
        alive: list[Any] = list(ALIVE)
    finally:
        gc.enable()
    assert len(alive) <= 1, f"{len(alive)} handlers kept alive by reference cycles (the last may be in flight)"
    writer.close()


class Late(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(0.2)
        self.write("late")          # the client is gone: the write fails quietly, nothing is served after


async def test_a_client_that_leaves_mid_request_is_forgotten(server: tuple[FastHTTPServer, int],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    srv, port = server
    srv.request_callback.wildcard_router.add_rules([(r"/late", Late)])  # type: ignore[union-attr]
    reader, writer = await _connect(port)
    writer.write(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
    await asyncio.sleep(0.05)
    writer.close()
    await asyncio.sleep(0.4)                       # the handler finishes after the peer left
    assert not srv._connections, "a closed connection is still tracked"
    reader, writer = await _connect(port)          # and the server serves on
    writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await _response(reader))[2] == b"hello"
    writer.close()
    gc.collect()                                   # an unretrieved future's error is logged when it is freed
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


PIPELINE = (b"GET /?a=1 HTTP/1.1\r\nHost: t\r\nX-One: 1\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nchunk\r\n3\r\ned!\r\n0\r\n\r\n"
            b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /chunks HTTP/1.1\r\nHost: t\r\n\r\n")
EXPECTED = [b"hello", b"hello world", b"chunked!", b"", b"abbccc"]


async def test_requests_split_anywhere_are_answered_the_same(server: tuple[FastHTTPServer, int]) -> None:
    """Five pipelined requests (plain, Content-Length, chunked, HEAD, chunked answer) cut at random places,
    each piece its own TCP segment: the answers never depend on where the cuts fall."""
    _, port = server
    rng = random.Random(20261130)
    for _ in range(40):
        cuts = sorted(rng.sample(range(1, len(PIPELINE)), rng.randint(1, 12)))
        pieces = [PIPELINE[a:b] for a, b in zip([0, *cuts], [*cuts, len(PIPELINE)], strict=True)]
        reader, writer = await _connect(port)
        writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.001)
        bodies = [(await _response(reader, head_request=i == 3))[2] for i in range(len(EXPECTED))]
        assert bodies == EXPECTED, pieces
        writer.close()


# -- the next request of a connection whose backends take turns ----------------------------------------

ORDER: list[str] = []


class Limited(tornado.web.RequestHandler):
    """A route whose calls go through a limiter (as the service's handlers remember theirs)."""

    async def get(self) -> None:
        ORDER.append("limited request")
        self.request.connection.context.read_gate.remember([self.application.settings["limiter"]])  # type: ignore
        self.write("limited")


class Cheap(tornado.web.RequestHandler):
    def get(self) -> None:
        ORDER.append("cheap request")
        self.write("cheap")


@pytest.fixture
async def gated() -> AsyncIterator[tuple[FastHTTPServer, int, Limiter]]:
    """A server whose connections have read gates (the service's default), with a limiter taking turns."""
    limiter = Limiter("test", LimitConfig())          # turns of the default slice (1 ms)
    app = tornado.web.Application([(r"/limited", Limited), (r"/cheap", Cheap)], limiter=limiter,
                                  log_function=lambda handler: None)
    srv = FastHTTPServer(app)
    srv.read_pause_max_s = 1.0
    srv.listen(0, "127.0.0.1")
    port = next(iter(srv._sockets.values())).getsockname()[1]
    await asyncio.sleep(0.05)
    yield srv, port, limiter
    srv.stop()
    await srv.close_all_connections()


async def _burst(limiter: Limiter, callers: int) -> list[asyncio.Task[None]]:
    """Callers that each take a turn and then work 0.5 ms: past the first slice, they wait in line."""
    async def caller(n: int) -> None:
        wait = limiter.turn()
        if wait is not None:
            await wait
        ORDER.append(f"caller {n}")
        began = time.perf_counter()
        while time.perf_counter() - began < 0.0005:
            pass

    tasks = [asyncio.create_task(caller(n)) for n in range(callers)]
    await asyncio.sleep(0)          # every caller has taken its turn or its place in line
    assert turns().busy()
    return tasks


async def test_the_next_request_of_a_limited_route_is_read_in_its_turn_and_a_cheap_route_at_once(
        gated: tuple[FastHTTPServer, int, Limiter]) -> None:
    _, port, limiter = gated
    limited_r, limited_w = await _connect(port)
    limited_w.write(b"GET /limited HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await _response(limited_r))[2] == b"limited"      # the connection now remembers the limiter
    cheap_r, cheap_w = await _connect(port)
    ORDER.clear()
    tasks = await _burst(limiter, 20)
    limited_w.write(b"GET /limited HTTP/1.1\r\nHost: t\r\n\r\n")
    cheap_w.write(b"GET /cheap HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await _response(limited_r))[2] == b"limited"
    assert (await _response(cheap_r))[2] == b"cheap"
    await asyncio.gather(*tasks)
    in_line = [n for n, what in enumerate(ORDER) if what.startswith("caller")]
    # The limited request was parsed and started only when the line reached it: after every caller
    # that was in line when its bytes came (parsed in the poll that read them, it started after two).
    assert ORDER.index("limited request") > in_line[-1], ORDER
    # The cheap one was read and answered in the poll that read it, long before the line emptied.
    assert ORDER.index("cheap request") < in_line[len(in_line) // 2], ORDER
    limited_w.close()
    cheap_w.close()


async def test_a_connection_closed_while_its_request_waits_for_a_turn_leaves_the_line(
        gated: tuple[FastHTTPServer, int, Limiter]) -> None:
    srv, port, limiter = gated
    reader, writer = await _connect(port)
    writer.write(b"GET /limited HTTP/1.1\r\nHost: t\r\n\r\n")
    await _response(reader)
    ORDER.clear()
    tasks = await _burst(limiter, 20)
    writer.write(b"GET /limited HTTP/1.1\r\nHost: t\r\n\r\n")
    for _ in range(5):
        if any(p._held for p in srv._protocols()):
            break
        await asyncio.sleep(0)
    assert any(p._held for p in srv._protocols()), "the request was not held for its turn"
    writer.transport.abort()        # gone before its turn: a reset
    await asyncio.gather(*tasks)
    for _ in range(20):
        await asyncio.sleep(0)
    assert "limited request" not in ORDER and not turns().busy()
    assert not srv._protocols(), "the closed connection is still held"
