"""What the service answers, as docs/service.md and docs/overload.md say, through its real routes.

- a bug (anything that is not an HTTP or driver error) is a 500 whose traceback goes to the log and
  never to the client: provoked with data the handler cannot render (a MongoDB document holding a
  regular expression, written there by another client, as another application could);
- the backend's own error is 502 for MySQL and MongoDB (real server errors: a database without the
  table, a database name the server refuses) and for Ignite (its replies turned into error replies by
  a proxy: no real node fails every request on demand), and a backend that breaks its protocol is 502 for
  Ignite and MongoDB (garbage injected by a proxy in front of the real server);
- a BLPOP that finds every pool connection taken is 503 ``backend busy`` with ``Retry-After``
  within ``pool_wait_timeout_s``; a BLPOP returns what was pushed, also to a caller already waiting;
- an ``X-Request-ID`` that is not 1-128 of ``A-Za-z0-9._:-`` is replaced by a new id;
- ``backend_errors_total`` counts failed calls by kind, ``http_requests_in_flight`` the requests
  being handled.

(503 for a backend that cannot be reached and 504 for one that does not answer, for each backend
and fault, are in ``tests/service/test_faults.py``.)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import bson
import pytest
import redis.asyncio as aredis
from pymongo import AsyncMongoClient

from app.settings import Settings
from tests.conftest import ServerProcess, start_server
from tests.service.http import async_client, call
from tests.service.test_faults import fetch, serve, stop, target, through
from tests.service.test_metrics import scrape, value
from tests.support.ignite_errors import FailingIgniteProxy
from tests.support.proxy import Proxy


@pytest.fixture(scope="module")
def plain(seeded: None) -> Iterator[ServerProcess]:
    """A server at the default settings."""
    srv = start_server()
    yield srv
    srv.stop()


POOL_WAIT_S = 0.5     # not the default 0.2: a wait that ignored the setting would be told apart


@pytest.fixture(scope="module")
def odd(seeded: None) -> Iterator[ServerProcess]:
    """A server whose MySQL database has no ``items`` table, whose MongoDB database has a name the server
    refuses, and whose Redis pool holds one connection, waited for ``POOL_WAIT_S``."""
    srv = start_server(env={"ASYNCSTACK_MYSQL__DATABASE": "information_schema",
                            "ASYNCSTACK_MONGO__DATABASE": "no+such+db",
                            "ASYNCSTACK_REDIS__POOL_MAX": "1",
                            "ASYNCSTACK_REDIS__POOL_WAIT_TIMEOUT_S": str(POOL_WAIT_S)})
    yield srv
    srv.stop()


def stderr_of(srv: ServerProcess) -> list[dict[str, Any]]:
    """The JSON log lines the server wrote to stderr (it must have exited)."""
    assert srv.proc.poll() is not None
    return [json.loads(line) for line in srv.stderr().splitlines() if line.startswith("{")]


async def test_a_bug_is_500_with_the_traceback_in_the_log_never_to_the_client(
        settings: Settings, seeded: None) -> None:
    doc_id = f"claims-{uuid.uuid4().hex}"
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(settings.mongo.host, settings.mongo.port)
    srv = start_server()
    try:
        # Another application stored what JSON has no form for; the handler cannot render it.
        await mongo[settings.mongo.database]["docs"].insert_one({"_id": doc_id, "pattern": bson.Regex("^a", "i")})
        status, headers, body = await asyncio.to_thread(call, f"{srv.url}/mongo/docs/{doc_id}")
        assert call(srv.url + "/now")[0] == 200          # the server goes on
    finally:
        await mongo[settings.mongo.database]["docs"].delete_one({"_id": doc_id})
        await mongo.aclose()
        assert srv.stop() == 0
    assert status == 500, body
    assert body == {"error": "internal server error", "request_id": headers["X-Request-ID"]}
    [logged] = [e for e in stderr_of(srv) if e["logger"] == "app.error"]
    assert headers["X-Request-ID"] in logged["msg"] and f"/mongo/docs/{doc_id}" in logged["msg"]
    assert "Traceback (most recent call last)" in logged["traceback"] and "Regex" in logged["traceback"]


def test_a_mysql_server_error_is_502_naming_it(odd: ServerProcess) -> None:
    status, _, body = call(odd.url + "/mysql/items/7")
    assert status == 502, body
    assert (body["error"], body["backend"]) == ("backend error", "mysql")
    assert "items" in body["detail"] and body["request_id"]


def test_a_mongo_server_error_is_502_naming_it(odd: ServerProcess) -> None:
    status, _, body = call(odd.url + "/mongo/docs/abc")
    assert status == 502, body
    assert (body["error"], body["backend"]) == ("backend error", "mongo")
    assert "Invalid namespace" in body["detail"] and body["request_id"]


async def test_backend_errors_total_counts_failed_calls_by_kind(odd: ServerProcess) -> None:
    before = scrape(odd.url)
    for path in ("/mysql/items/7", "/mongo/docs/abc"):
        assert call(odd.url + path)[0] == 502
    status, _, body = call(odd.url + "/mysql/sleep?s=1", headers={"X-Request-Timeout": "0.2"})
    assert status == 504, body
    after = scrape(odd.url)

    def grew(backend: str, kind: str) -> float:
        return value(after, "backend_errors_total", backend=backend, kind=kind) - \
            value(before, "backend_errors_total", backend=backend, kind=kind)

    assert (grew("mysql", "error"), grew("mongo", "error"), grew("mysql", "timeout")) == (1, 1, 1)
    assert grew("mysql", "unavailable") == 0


async def test_a_blpop_that_finds_every_pool_connection_taken_is_503_with_retry_after(odd: ServerProcess) -> None:
    client = async_client(4)
    key = f"claims-{uuid.uuid4().hex}"
    try:
        holding = asyncio.ensure_future(fetch(client, f"{odd.url}/redis/blpop/{key}?s=1.5"))
        await asyncio.sleep(0.3)                   # it holds the pool's one connection
        turned_away = await fetch(client, f"{odd.url}/redis/blpop/{key}?s=1")
        held = await holding
    finally:
        client.close()
    assert turned_away.status == 503, turned_away.body
    assert (turned_away.body["error"], turned_away.body["backend"]) == ("backend busy", "redis")
    assert int(turned_away.headers["Retry-After"]) >= 1
    assert POOL_WAIT_S <= turned_away.took < POOL_WAIT_S + 0.4, turned_away.took   # pool_wait_timeout_s
    assert (held.status, held.body["value"]) == (200, None)


async def test_blpop_returns_what_was_pushed_also_to_a_caller_already_waiting(
        plain: ServerProcess, settings: Settings) -> None:
    key = f"claims-{uuid.uuid4().hex}"
    redis = aredis.Redis(host=settings.redis.host, port=settings.redis.port)
    client = async_client(4)
    try:
        await redis.rpush(key, "first", "second")
        answer = await fetch(client, f"{plain.url}/redis/blpop/{key}?s=1")
        assert (answer.status, answer.body) == (200, {"key": key, "value": "first"})
        waiting = asyncio.ensure_future(fetch(client, f"{plain.url}/redis/blpop/{key}?s=3"))
        answer = await fetch(client, f"{plain.url}/redis/blpop/{key}?s=1")   # takes "second"
        assert answer.body["value"] == "second"
        await asyncio.sleep(0.3)
        assert not waiting.done()
        began = time.perf_counter()
        await redis.rpush(key, "third")
        woken = await waiting
        assert (woken.status, woken.body["value"]) == (200, "third")
        assert time.perf_counter() - began < 1.0    # woken by the push, not by its 3 s timeout
        assert await redis.llen(key) == 0
    finally:
        client.close()
        await redis.delete(key)
        await redis.aclose()


@pytest.mark.parametrize("given", ["", "has space", "x" * 129, "semi;colon", "ünïcode"])
def test_an_invalid_x_request_id_is_replaced_by_a_new_one(plain: ServerProcess, given: str) -> None:
    status, headers, body = call(plain.url + "/no/such/route",
                                 headers={"X-Request-ID": given.encode().decode("latin-1")})
    assert status == 404
    new = headers["X-Request-ID"]
    assert new != given and len(new) == 32 and int(new, 16) >= 0
    assert body["request_id"] == new


def test_a_valid_x_request_id_of_128_characters_is_kept(plain: ServerProcess) -> None:
    given = "A-z0.9_:" * 16
    _, headers, body = call(plain.url + "/no/such/route", headers={"X-Request-ID": given})
    assert headers["X-Request-ID"] == body["request_id"] == given


async def test_http_requests_in_flight_counts_the_requests_being_handled(plain: ServerProcess) -> None:
    client = async_client(20)
    try:
        idle = value(await asyncio.to_thread(scrape, plain.url), "http_requests_in_flight")
        burst = asyncio.gather(*(fetch(client, plain.url + "/mysql/sleep?s=1.2") for _ in range(10)))
        await asyncio.sleep(0.7)                   # the gauge is sampled every 0.25 s
        during = value(await asyncio.to_thread(scrape, plain.url), "http_requests_in_flight")
        assert [a.status for a in await burst] == [200] * 10
        await asyncio.sleep(0.6)
        after = value(await asyncio.to_thread(scrape, plain.url), "http_requests_in_flight")
    finally:
        client.close()
    assert idle <= 1 and after <= 1, (idle, after)     # (the scrape itself may be in flight)
    assert during >= 10, during


@pytest.fixture
async def through_proxy(settings: Settings, seeded: None, request: pytest.FixtureRequest
                        ) -> AsyncIterator[tuple[Proxy, ServerProcess]]:
    backend: str = request.param
    async with Proxy(target(settings, backend)) as proxy:
        srv = await serve(through(backend, proxy.port))
        try:
            yield proxy, srv
        finally:
            await stop(srv)


@pytest.mark.parametrize(("through_proxy", "path", "error"), [
    ("ignite", "/ignite/cache/claims", "backend protocol error"),
    ("mongo", "/mongo/docs/claims", "backend error"),
], indirect=["through_proxy"])
async def test_a_backend_that_breaks_its_protocol_is_502(through_proxy: tuple[Proxy, ServerProcess],
                                                        path: str, error: str) -> None:
    proxy, srv = through_proxy
    client = async_client(4)
    try:
        assert (await fetch(client, srv.url + path)).status in (200, 404)
        proxy.hold_replies = True
        pending = asyncio.ensure_future(fetch(client, srv.url + path))
        await asyncio.sleep(0.3)
        proxy.inject(b"\xff\xff\xff\xff garbage, not a reply")
        answer = await pending
        proxy.hold_replies = False
    finally:
        client.close()
    assert answer.status == 502, answer.body
    assert (answer.body["error"], answer.body["backend"]) == (error, path.split("/")[1])
    assert answer.took < 2.0, answer.took          # as fast as the bytes arrive, not at a deadline


async def test_an_ignite_server_error_is_502_naming_it(settings: Settings, seeded: None) -> None:
    """The node's own error (here injected: a proxy replaces its replies with error replies) is 502."""
    async with FailingIgniteProxy(settings.ignite.nodes[0], message="class org.apache.ignite.IgniteException") as proxy:
        srv = await serve(through("ignite", proxy.address[1]))
        client = async_client(4)
        try:
            assert (await fetch(client, srv.url + "/ignite/cache/claims-ignite")).status in (200, 404)
            proxy.failing = True
            answer = await fetch(client, srv.url + "/ignite/cache/claims-ignite")
            proxy.failing = False
            back = await fetch(client, srv.url + "/ignite/cache/claims-ignite")
        finally:
            client.close()
            await stop(srv)
    assert answer.status == 502, answer.body
    assert (answer.body["error"], answer.body["backend"]) == ("backend error", "ignite")
    assert "IgniteException" in answer.body["detail"]
    assert proxy.failed >= 1 and back.status in (200, 404)     # one request's error, not the connection's
