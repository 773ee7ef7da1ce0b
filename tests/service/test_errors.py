"""Error paths: 400 that says what was wrong, 404, 504 on a backend deadline, 503 naming a stopped backend."""

from __future__ import annotations

import pytest

from tests.conftest import ServerProcess, run_app, run_stack, start_server
from tests.service.http import call


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
        status, _, body = call(srv.url + "/mysql/sleep?s=2")
        assert status == 504
        assert (body["error"], body["backend"]) == ("backend timeout", "mysql")
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


def test_backend_error_is_502_naming_the_backend(service: ServerProcess) -> None:
    status, _, body = call(service.url + "/redis/counters/items:7/incr", "POST", raw=b"")  # not an integer
    assert status == 502
    assert (body["error"], body["backend"]) == ("backend error", "redis")
