"""Servers with /ws and POST /publish turned on, and a small client built on the websockets library."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import ServerProcess, start_server
from tests.service.http import call

PUBLISH_TOKEN = "test-publish-token"
CHANNEL_SECRET = "test-channel-secret"
WS_ENV = {"ASYNCSTACK_WS__PUBLISH_TOKEN": PUBLISH_TOKEN, "ASYNCSTACK_WS__CHANNEL_SECRET": CHANNEL_SECRET,
          "ASYNCSTACK_SERVER__ACCESS_LOG": "false"}


def channel_name(prefix: str = "t") -> str:
    """A channel no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def ws_url(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


def publish(server: ServerProcess, channel: str, data: Any, token: str = PUBLISH_TOKEN) -> tuple[int, Any]:
    status, _, body = call(f"{server.url}/publish/{channel}", "POST", raw=json.dumps(data).encode(),
                           headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    return status, body


async def publish_async(server: ServerProcess, channel: str, data: Any) -> str:
    status, body = await asyncio.to_thread(publish, server, channel, data)
    assert status == 200, body
    return str(body["id"])


class Client:
    """One WebSocket connection speaking the /ws protocol."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.served_by = conn.response.headers.get("X-Served-By") if conn.response else None

    @classmethod
    async def open(cls, server: ServerProcess, **kwargs: Any) -> Client:
        return cls(await connect(ws_url(server), **kwargs))

    async def send(self, message: Any) -> None:
        await self.conn.send(message if isinstance(message, str | bytes) else json.dumps(message))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return dict(json.loads(await self.conn.recv()))

    async def subscribe(self, channel: str, **fields: Any) -> dict[str, Any]:
        await self.send({"op": "subscribe", "channel": channel, **fields})
        reply = await self.recv()
        assert reply["type"] == "subscribed", reply
        return reply

    async def messages(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            msg = await self.recv(timeout)
            assert msg["type"] == "message", msg
            out.append(msg)
        return out

    async def nothing_more(self, wait: float = 0.3) -> None:
        """Nothing else arrives within ``wait`` seconds."""
        try:
            async with asyncio.timeout(wait):
                extra = await self.conn.recv()
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {extra!r}")

    async def close(self) -> None:
        await self.conn.close()


@pytest.fixture(scope="module")
def push_server(stack: None) -> Iterator[ServerProcess]:
    srv = start_server(env=WS_ENV)
    yield srv
    srv.stop()
