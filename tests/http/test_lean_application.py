"""The service's cheaper request path (``app.http.application``, ``app.handlers.base``), over real sockets.

Tornado's own web suites run against ``LeanApplication`` too (``test_tornado_suites.py``); these
check what the service's handler base changes: the template namespace built only when asked for,
the headers set directly, and the request checks kept.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.template
from tornado import httputil
from tornado.httpclient import AsyncHTTPClient

from app.handlers.base import BaseHandler
from app.http.application import LeanApplication, LeanRequest
from app.http.fast_server import FastHTTPServer
from tests.http.test_fast_server import _connect, _response

pytestmark = pytest.mark.asyncio


class Page(BaseHandler):
    """A handler on the service's base without the service: no context, no budget."""

    def initialize(self) -> None:
        pass

    def prepare(self) -> None:
        pass

    def on_finish(self) -> None:
        pass

    def get(self) -> None:
        page = tornado.template.Template("{% module linkify(url) %} {{ type(request).__name__ }} {{ args }}")
        args = self.get_query_argument("a", "none")
        self.finish(page.generate(url="http://example.com", args=args, **self.get_template_namespace()))


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = FastHTTPServer(LeanApplication([(r"/page", Page)], log_function=lambda handler: None))
    server.listen(0, "127.0.0.1")
    yield next(iter(server._sockets.values())).getsockname()[1]
    server.stop()
    await server.close_all_connections()


async def test_templates_find_their_modules_and_requests_their_arguments(port: int) -> None:
    await asyncio.sleep(0.05)
    reader, writer = await _connect(port)
    writer.write(b"GET /page HTTP/1.1\r\nHost: t\r\n\r\nGET /page?a=1&a=2 HTTP/1.1\r\nHost: t\r\n\r\n")
    status, headers, body = await _response(reader)
    assert status == 200, body
    assert body == b'<a href="http://example.com">http://example.com</a> LeanRequest none'
    assert len(headers["x-request-id"]) == 32 and headers["server"].startswith("TornadoServer/")
    status, headers, body = await _response(reader)
    assert body.endswith(b" 2")                  # with a query: Tornado's own parse
    writer.close()


@pytest.mark.parametrize(("head", "status"), [
    (b"GET /page HTTP/1.1\r\n\r\n", 400),                       # no Host
    (b"GET /page HTTP/1.1\r\nHost: a,b\r\n\r\n", 400),          # two hosts in one
    (b"GET /page HTTP/1.1\r\nHost: a b\r\n\r\n", 400),          # not a host
    (b"GET /page HTTP/1.0\r\n\r\n", 200),                       # HTTP/1.0 needs none
])
async def test_the_host_header_is_checked_as_tornado_checks_it(port: int, head: bytes, status: int) -> None:
    await asyncio.sleep(0.05)
    reader, writer = await _connect(port)
    writer.write(head)
    assert (await _response(reader))[0] == status
    writer.close()


async def test_a_request_without_a_query_has_empty_arguments() -> None:
    request = LeanRequest(None, None, httputil.RequestStartLine("GET", "/x", "HTTP/1.1"),  # type: ignore[arg-type]
                          httputil.HTTPHeaders({"Host": "h:80"}))
    assert (request.path, request.query, request.arguments, request.query_arguments) == ("/x", "", {}, {})
    assert (request.host, request.host_name, request.protocol, request.body) == ("h:80", "h", "http", b"")


def _rules() -> list[Any]:
    return [
        (r"/a/(.*)", Named, {"name": "regex-first"}),
        (r"/a", Named, {"name": "literal-a"}),
        (r"/a/b", Named, {"name": "literal-ab"}),
        (r"/b/c", Named, {"name": "literal-bc"}),
        (r"/file\.json", Named, {"name": "escaped"}),
        tornado.web.url(re.compile(r"/case$", re.IGNORECASE), Named, {"name": "ignorecase"}),
        (r"/(.*)", Named, {"name": "catch-all"}),
    ]


class Named(tornado.web.RequestHandler):
    def initialize(self, name: str) -> None:
        self.name = name

    def get(self, *args: str) -> None:
        self.write(f"{self.name} {'/'.join(args)}".strip())


@pytest.mark.parametrize(("path", "answer"), [
    ("/a/b", "regex-first b"),        # an earlier pattern wins over a later literal one, as in Tornado
    ("/a", "literal-a"),
    ("/b/c", "literal-bc"),
    ("/b/d", "catch-all b/d"),
    ("/file.json", "escaped"),
    ("/fileXjson", "catch-all fileXjson"),  # the escaped dot is a dot
    ("/CASE", "ignorecase"),
    ("/", "catch-all"),
])
async def test_routes_are_tried_in_their_order(path: str, answer: str) -> None:
    app = LeanApplication(_rules(), log_function=lambda handler: None)
    server = FastHTTPServer(app)
    server.listen(0, "127.0.0.1")
    port = next(iter(server._sockets.values())).getsockname()[1]
    try:
        response = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}{path}")
        assert response.body.decode() == answer
    finally:
        server.stop()
        await server.close_all_connections()


async def test_the_route_index_picks_what_tornados_routing_picks() -> None:
    lean, stock = LeanApplication(_rules()), tornado.web.Application(_rules())
    paths = ["/", "/a", "/a/", "/a/b", "/ab", "/b", "/b/c", "/b/c/", "/b/cd", "/file.json", "/file.jsonx", "/CaSe",
             "/case/", "*", "http://h/a/b", "//a", "/a//b", "/%61/b"]
    for path in paths:
        request = httputil.HTTPServerRequest(start_line=httputil.RequestStartLine("GET", path, "HTTP/1.1"),
                                             headers=httputil.HTTPHeaders({"Host": "h"}))
        ours, theirs = lean.find_handler(request), stock.find_handler(request)
        assert (ours.handler_kwargs, ours.path_args) == (theirs.handler_kwargs, theirs.path_args), path


# -- handlers without awaits run at once --------------------------------------------------------------

class Where(tornado.web.RequestHandler):
    """Says whether it ran in a Task, and can answer later through an awaitable or be held forever."""

    held: asyncio.Future[None] | None = None

    def get(self, how: str) -> Any:
        task = "task" if asyncio.current_task() is not None else "no task"
        if how == "now":
            self.write(task)
            return None
        if how == "later":                       # a plain method returning an awaitable: awaited as in Tornado
            async def later() -> None:
                await asyncio.sleep(0.01)
                self.write(f"{task}, then later")
            return later()
        if how == "fails-later":
            async def fails() -> None:
                await asyncio.sleep(0)
                raise ValueError("broken")
            return fails()
        Where.held = asyncio.get_running_loop().create_future()
        if how == "spins":                       # bare yields (sleep(0)) until the test cancels its Task
            async def spin() -> None:
                while True:
                    await asyncio.sleep(0)
            return spin()
        return Where.held                        # waits on a future until the test cancels its Task


class AsyncWhere(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write("task" if asyncio.current_task() is not None else "no task")


@pytest.fixture
async def where_port() -> AsyncIterator[int]:
    app = LeanApplication([(r"/where/(\w[\w-]*)", Where), (r"/async", AsyncWhere)], log_function=lambda handler: None)
    server = FastHTTPServer(app)
    server.listen(0, "127.0.0.1")
    yield next(iter(server._sockets.values())).getsockname()[1]
    server.stop()
    await server.close_all_connections()


async def test_a_handler_without_awaits_runs_at_once_and_an_async_one_in_a_task(where_port: int) -> None:
    """A plain ``def get`` answers inside the call that delivered its request: it waits behind nothing
    already queued on the loop, as Tornado ran such handlers before 6.0; ``async def`` gets its Task."""
    reader, writer = await _connect(where_port)
    writer.write(b"GET /where/now HTTP/1.1\r\nHost: t\r\n\r\nGET /async HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await _response(reader))[2] == b"no task"
    assert (await _response(reader))[2] == b"task"
    writer.close()


@pytest.mark.parametrize(("path", "status", "body"), [
    ("/where/later", 200, b"no task, then later"),   # the rest ran in a Task, and answered
    ("/where/fails-later", 500, b"Internal Server Error"),
])
async def test_a_plain_handler_that_returns_an_awaitable_goes_on_in_a_task(
        where_port: int, path: str, status: int, body: bytes) -> None:
    reader, writer = await _connect(where_port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    got = await _response(reader)
    assert got[0] == status and body in got[2]
    writer.close()


@pytest.mark.parametrize("how", ["held", "spins"])
async def test_a_cancelled_task_of_a_plain_handler_answers_500_as_tornado_does(where_port: int, how: str) -> None:
    from app.http import application
    Where.held = None
    reader, writer = await _connect(where_port)
    writer.write(f"GET /where/{how} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    for _ in range(100):
        if Where.held is not None:
            break
        await asyncio.sleep(0.01)
    tasks = list(application._running)
    assert len(tasks) == 1
    tasks[0].cancel()                            # into the handler's coroutine, where it waits
    assert (await _response(reader))[0] == 500
    await asyncio.sleep(0)
    assert tasks[0].cancelled() and not application._running
    writer.close()
