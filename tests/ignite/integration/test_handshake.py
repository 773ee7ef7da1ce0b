"""Protocol versions: every version from 1.0.0 to 1.7.0 against the real node, and the fallback."""

from __future__ import annotations

import asyncio
import struct
import uuid

import pytest

from app.settings import Settings
from drivers.ignite import Client
from drivers.ignite.errors import CacheDoesNotExist, HandshakeError, LocalProtocolError

VERSIONS = [(1, minor, 0) for minor in range(8)]


@pytest.mark.parametrize("version", VERSIONS, ids=[".".join(map(str, v)) for v in VERSIONS])
async def test_each_protocol_version_works_against_the_node(settings: Settings, version: tuple[int, int, int]) -> None:
    # Before 1.4 replies carry a status instead of flags; before 1.7 there is no feature mask.
    async with Client(settings.ignite.nodes, protocol_version=version) as client:
        assert client.protocol_version == version
        cache = await client.get_or_create_cache("versions")
        await cache.put("k", [1, "x", {"m": 2}])
        assert await cache.get("k") == [1, "x", {"m": 2}]
        assert [row async for row in client.sql("SELECT 40 + 2")] == [[42]]
        with pytest.raises(CacheDoesNotExist):
            await client.cache("no_such_cache_anywhere").get(1)
        await client.ping()


async def test_a_version_the_client_does_not_speak_is_refused_locally() -> None:
    with pytest.raises(LocalProtocolError, match=r"2\.0\.0"):
        async with Client([("127.0.0.1", 1)], protocol_version=(2, 0, 0)):
            pass


class _OldNode:
    """A peer that plays a node speaking at most 1.4.0 — no real 2.x node refuses 1.7.0."""

    def __init__(self, refuse_all: bool = False) -> None:
        self.offered: list[tuple[int, int, int]] = []
        self.refuse_all = refuse_all

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        (length,) = struct.unpack("<i", await reader.readexactly(4))
        body = await reader.readexactly(length)
        _, major, minor, patch = struct.unpack_from("<bhhh", body)
        self.offered.append((major, minor, patch))
        if (major, minor, patch) == (1, 4, 0) and not self.refuse_all:
            reply = b"\x01" + b"\x0a" + uuid.uuid4().bytes  # accepted, typed node id
        else:
            message = b"unsupported version"
            reply = struct.pack("<bhhh", 0, 1, 4, 0) + struct.pack("<bi", 9, len(message)) + message
            reply += struct.pack("<i", 1)
        writer.write(struct.pack("<i", len(reply)) + reply)
        await writer.drain()
        await reader.read()  # until the client closes
        writer.close()


async def test_client_falls_back_to_the_version_the_node_proposes() -> None:
    node = _OldNode()
    server = await asyncio.start_server(node.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, Client([("127.0.0.1", port)], connect_timeout_s=3) as client:
        assert client.protocol_version_text == "1.4.0"
    assert node.offered == [(1, 7, 0), (1, 4, 0)]


async def test_a_refused_handshake_says_what_the_node_said() -> None:
    node = _OldNode(refuse_all=True)
    server = await asyncio.start_server(node.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(HandshakeError, match="unsupported version"):
            async with Client([("127.0.0.1", port)], connect_timeout_s=3):
                pass
