"""Error paths: 400 saying what was wrong, 404, 504 on a deadline, 503 naming a stopped backend, 500 for misuse."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web

from app.context import Context
from app.handlers.base import BaseHandler
from app.settings import Settings
from drivers.errors import BackendError, InterfaceError, ProtocolError
from tests.conftest import ServerProcess, run_app, run_stack, start_server
from tests.service.http import async_client, call


@pytest.mark.parametrize(("path", "message"), [
    ("/mysql/items/abc", "id must be an integer, not 'abc'"),
    ("/fanout/1x", "id must be an integer, not '1x'"),
    ("/mysql/sleep?s=99", "s must be from 0 to 5, not 99"),
    ("/mysql/sleep?s=-1", "s must be from 0 to 5, not -1"),
    ("/mysql/sleep?s=soon", "s must be a number, not 'soon'"),
    ("/mysql/sleep", "missing query argument s"),
    ("/ignite/range?n=1.5", "n must be an integer, not '1.5'"),
    ("/redis/kv/bad%20key", "a key is 1-200 characters"),
])
def test_bad_input_is_400_saying_what_was_wrong(service: ServerProcess, path: str, message: str) -> None:
    status, _, body = call(service.url + path)
    assert status == 400
    assert message in body["error"]
    assert body["request_id"]


@pytest.mark.parametrize(("raw", "ctype", "message"), [
    (b'{"a": ', "application/json", "malformed JSON body"),
    (b"[1, 2]", "application/json", "the JSON body must be an object, not list"),
    (b'{"a": 1}', "text/plain", "Content-Type must be application/json, not 'text/plain'"),
    (b'{"a": "' + b"x" * 70_000 + b'"}', "application/json", "the JSON body is 70009 bytes; at most 65536"),
])
def test_bad_json_body_is_400_saying_what_was_wrong(service: ServerProcess, raw: bytes, ctype: str,
                                                    message: str) -> None:
    status, _, body = call(service.url + "/mongo/docs", "POST", raw=raw, headers={"Content-Type": ctype})
    assert status == 400
    assert message in body["error"]


def test_unknown_route_is_json_404_with_request_id(service: ServerProcess) -> None:
    status, headers, body = call(service.url + "/nope", headers={"X-Request-ID": "abc-123"})
    assert (status, body) == (404, {"error": "no route for /nope", "request_id": "abc-123"})
    assert headers["X-Request-ID"] == "abc-123"


def test_backend_deadline_is_504_naming_the_backend(seeded: None) -> None:
    srv = start_server(env={"ASYNCSTACK_MYSQL__QUERY_TIMEOUT_S": "0.3"})
    try:
        began = time.monotonic()
        status, _, body = call(srv.url + "/mysql/sleep?s=2")
        took = time.monotonic() - began
        assert status == 504
        assert (body["error"], body["backend"]) == ("backend timeout", "mysql")
        assert 0.3 - 0.002 <= took < 0.3 + 0.3, f"answered after {took:.2f} s"   # at the deadline, not after the 2 s
        assert call(srv.url + "/mysql/items/7")[0] == 200   # the pool is still usable
    finally:
        srv.stop()


def test_stopped_backend_is_503_naming_it_and_recovers(service: ServerProcess) -> None:
    assert call(service.url + "/redis/kv/items:7")[0] == 200
    stopped = run_stack("down", "redis")
    assert stopped.returncode == 0, stopped.stderr
    try:
        for path in ("/redis/kv/items:7", "/fanout/7"):
            status, _, body = call(service.url + path)
            assert status == 503, body
            assert (body["error"], body["backend"]) == ("backend unavailable", "redis")
            assert body["request_id"]
            assert "Traceback" not in body["detail"]
        assert call(service.url + "/mysql/items/7")[0] == 200  # the other backends still answer
    finally:
        restarted = run_stack("up", "redis")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    # The same server, without a restart: its pooled connections were dead and are replaced.
    assert call(service.url + "/redis/kv/after-restart", "PUT", {"value": "back"})[0] == 200
    assert call(service.url + "/redis/kv/after-restart")[2]["value"] == "back"
    reseeded = run_app("seed")  # Redis here keeps nothing on disk
    assert reseeded.returncode == 0, reseeded.stderr
    assert call(service.url + "/fanout/7")[0] == 200


def test_a_number_bson_cannot_hold_is_400_not_a_crash(service: ServerProcess) -> None:
    # JSON allows 18446744073709551615 (2**64 - 1); BSON holds at most 64-bit signed integers.
    # PyMongo raises OverflowError before sending: the driver calls it a misuse (InterfaceError),
    # and the handler marks the document as the request's data, so the answer is 400, not 500.
    status, _, body = call(service.url + "/mongo/docs", "POST", raw=b'{"n": 18446744073709551615}',
                           headers={"Content-Type": "application/json"})
    assert status == 400, body
    assert "mongo: cannot store this document" in body["error"]
    assert body["request_id"]


class _Misuse(BaseHandler):
    """Raises the driver error named in the path, as a handler with a bug would."""

    def get(self, kind: str) -> None:
        if kind == "interface":
            raise InterfaceError("redis: a BLPOP timeout must be under the socket timeout (5 s), not 9 s",
                                 backend="redis")
        if kind == "backend":
            raise BackendError("redis: ERR unknown command 'X'", backend="redis")
        if kind == "protocol":
            raise ProtocolError("redis 127.0.0.1:16379: a reply came with no command pending", backend="redis")
        with self.request_input():
            raise InterfaceError("mongo: cannot store this document: too large", backend="mongo")


@pytest.fixture
async def misuse_app(settings: Settings) -> AsyncIterator[str]:
    """The service's own handler base and error rendering, on a free port in this loop (nothing is started)."""
    ctx = Context.build(settings)
    app = tornado.web.Application([(r"/misuse/(\w+)", _Misuse, {"ctx": ctx, "route": "misuse"})])
    server = tornado.httpserver.HTTPServer(app)
    sock, = tornado.netutil.bind_sockets(0, "127.0.0.1")
    server.add_sockets([sock])
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.stop()


async def _get(url: str) -> tuple[int, dict[str, Any]]:
    response = await async_client().fetch(url, raise_error=False)
    return response.code, json.loads(response.body)


async def test_a_driver_misused_by_the_service_is_500_and_logged_as_its_bug(
        misuse_app: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="app.error"):
        status, body = await _get(misuse_app + "/misuse/interface")
    assert status == 500
    assert (body["error"], body["backend"]) == ("internal server error", "redis")
    assert "BLPOP" not in json.dumps(body)          # the detail goes to the log, not to the client
    [record] = [r for r in caplog.records if r.name == "app.error"]
    assert record.exc_info is not None and record.exc_info[0] is InterfaceError


async def test_misuse_with_the_requests_own_data_is_400_saying_why(misuse_app: str) -> None:
    status, body = await _get(misuse_app + "/misuse/input")
    assert (status, body["error"]) == (400, "mongo: cannot store this document: too large")


async def test_backend_error_is_502_naming_the_backend(misuse_app: str) -> None:
    # (INCR of a key holding text, once the example here, is the key's state: 409, test_bad_input.py)
    status, body = await _get(misuse_app + "/misuse/backend")
    assert status == 502
    assert (body["error"], body["backend"]) == ("backend error", "redis")
    assert body["detail"] == "redis: ERR unknown command 'X'"


async def test_a_backend_that_breaks_its_protocol_is_502(misuse_app: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="app.error"):
        status, body = await _get(misuse_app + "/misuse/protocol")
    assert status == 502
    assert (body["error"], body["backend"]) == ("backend protocol error", "redis")
    assert "no command pending" in body["detail"]
    assert not [r for r in caplog.records if r.name == "app.error"]   # the backend's fault: not logged as ours
