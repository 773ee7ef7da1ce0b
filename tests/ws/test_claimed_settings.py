"""Settings of docs/websocket.md and docs/service.md that change what a client or Redis sees, each set away
from its default on one real server: ``ws.key_prefix``, ``ws.history_ttl_s``, ``ws.compression``,
``ws.close_timeout_s``, ``redis.db``, ``server.max_json_bytes``."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
import redis.asyncio as aredis
from websockets.asyncio.client import connect

from app.settings import Settings
from tests.conftest import ServerProcess, start_server
from tests.service.http import call
from tests.ws.conftest import WS_ENV, channel_name, publish_async, ws_url
from tests.ws.test_claimed_ws import silent_peer

PREFIX, TTL_S, DB, MAX_JSON = "claims-ws:", 7, 3, 100
SET = {"ASYNCSTACK_WS__KEY_PREFIX": PREFIX, "ASYNCSTACK_WS__HISTORY_TTL_S": str(TTL_S),
       "ASYNCSTACK_WS__COMPRESSION": "true", "ASYNCSTACK_REDIS__DB": str(DB),
       "ASYNCSTACK_SERVER__MAX_JSON_BYTES": str(MAX_JSON)}


@pytest.fixture(scope="module")
def configured(stack: None) -> Iterator[ServerProcess]:
    srv = start_server(env={**WS_ENV, **SET})
    yield srv
    srv.stop()


async def test_a_channels_history_is_a_stream_under_the_key_prefix_in_the_configured_db_expiring_after_the_ttl(
        configured: ServerProcess, settings: Settings) -> None:
    channel = channel_name("prefixed")
    redis = aredis.Redis(host=settings.redis.host, port=settings.redis.port, db=DB)
    default_db = aredis.Redis(host=settings.redis.host, port=settings.redis.port)
    try:
        await publish_async(configured, channel, {"n": 1})
        key = f"{PREFIX}{channel}"
        assert await redis.type(key) == b"stream"
        assert 0 < await redis.pttl(key) <= TTL_S * 1000
        assert await default_db.exists(key) == 0 and await default_db.exists(f"ws:{channel}") == 0
        await redis.delete(key)
    finally:
        await redis.aclose()
        await default_db.aclose()


def test_redis_db_is_where_the_service_keeps_its_keys(configured: ServerProcess, settings: Settings) -> None:
    key = f"claims-db-{uuid.uuid4().hex}"
    assert call(f"{configured.url}/redis/kv/{key}", "PUT", {"value": "in db 3", "ttl_s": 60})[0] == 200

    async def look() -> tuple[bytes | None, bytes | None]:
        async with aredis.Redis(host=settings.redis.host, port=settings.redis.port, db=DB) as in_db, \
                aredis.Redis(host=settings.redis.host, port=settings.redis.port) as db0:
            return await in_db.get(key), await db0.get(key)

    assert asyncio.run(look()) == (b"in db 3", None)


def test_a_json_body_over_max_json_bytes_is_400(configured: ServerProcess) -> None:
    body = '{"a": "' + "x" * (MAX_JSON - 8) + '"}'
    assert len(body) == MAX_JSON + 1
    status, _, answer = call(configured.url + "/mongo/docs", "POST", raw=body.encode(),
                             headers={"Content-Type": "application/json"})
    assert (status, answer["error"]) == (400, f"the JSON body is {MAX_JSON + 1} bytes; at most {MAX_JSON} are accepted")


async def test_compression_is_negotiated_only_when_turned_on(configured: ServerProcess, stack: None) -> None:
    plain = start_server(env=WS_ENV)
    try:
        for srv, offered in ((configured, True), (plain, False)):
            async with connect(ws_url(srv)) as ws:        # the client offers permessage-deflate
                assert ws.response is not None
                agreed = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
                assert ("permessage-deflate" in agreed) is offered, (srv.url, agreed)
    finally:
        plain.stop()


async def test_shutdown_waits_ws_close_timeout_s_for_closing_handshakes_then_drops_them(stack: None) -> None:
    close_timeout_s = 0.3
    srv = start_server(env={**WS_ENV, "ASYNCSTACK_WS__CLOSE_TIMEOUT_S": str(close_timeout_s)})
    try:
        _, writer = await silent_peer(srv)           # never answers the close frame
        srv.proc.send_signal(signal.SIGTERM)
        began = time.monotonic()
        assert await asyncio.to_thread(srv.proc.wait, 15) == 0
        took = time.monotonic() - began
        writer.close()
    finally:
        srv.stop()
    assert close_timeout_s <= took < close_timeout_s + 1.2, took    # not Tornado's own 5 s, nor the default 2 s
