"""A client's hot path against a transport that answers at once: ``python bench/fake_backends.py SCENARIO N CALLERS``.

Run by ``bench.instructions`` under callgrind, from the tree being measured
(its ``drivers`` package is imported from the working directory).  The fake
transport parses what the client writes and queues one reply per request for
the next loop iteration, as a fast server would; the connection is put in
place of the one the client would have opened.  That reaches into the
clients' private attributes: this is a measuring harness, not an example.
Trees from before commit 8939905 built their clients differently; both forms
are here so one harness measures both sides.
"""

from __future__ import annotations

import asyncio
import os
import struct
import sys
from typing import Any

sys.path.insert(0, os.getcwd())   # the tree under measurement, not this file's

import uvloop

REDIS_VALUE = b"v" * 32
REDIS_REPLY = b"$32\r\n" + REDIS_VALUE + b"\r\n"
IGNITE_REPLY = bytes([9]) + struct.pack("<i", 32) + b"v" * 32   # a String of 32 characters
IGNITE_REQUEST = struct.Struct("<ihq")                            # length, op code, request id


class Transport:
    """Answers every request written to it in the next loop iteration."""

    def __init__(self, protocol: Any, answer: Any) -> None:
        self.protocol = protocol
        self.answer = answer
        self.loop = asyncio.get_running_loop()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes) -> None:
        self.loop.call_soon(self.protocol.data_received, self.answer(bytes(data)))

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


def redis_replies(data: bytes) -> bytes:
    return REDIS_REPLY * data.count(b"\r\nGET\r\n")


def ignite_replies(data: bytes) -> bytes:
    out, pos = bytearray(), 0
    while pos < len(data):
        length, _, request_id = IGNITE_REQUEST.unpack_from(data, pos)
        body = struct.pack("<qh", request_id, 0) + IGNITE_REPLY
        out += struct.pack("<i", len(body)) + body
        pos += 4 + length
    return bytes(out)


async def redis_get(per_caller: int, callers: int) -> None:
    from drivers.redis import RedisClient
    try:
        from drivers.redis import RedisConfig
        from drivers.redis.pipe import PipeConnection
        client = RedisClient(RedisConfig(host="127.0.0.1", port=1))
        conn = PipeConnection("fake", 5.0)
    except ImportError:   # before 8939905
        from drivers.redis_pipe import PipeConnection  # type: ignore[import-not-found,no-redef]
        client = RedisClient(host="127.0.0.1", port=1)  # type: ignore[call-arg]
        conn = PipeConnection("fake", 5.0)
    conn.connection_made(Transport(conn, redis_replies))
    client.pipe._conn = conn

    async def caller() -> None:
        for _ in range(per_caller):
            await client.get("k")

    await asyncio.gather(*(caller() for _ in range(callers)))


async def ignite_get(per_caller: int, callers: int) -> None:
    from drivers.ignite import Client
    from drivers.ignite.connection import Connection
    client = Client([("127.0.0.1", 1)])
    try:
        from drivers.ignite import IgniteConfig
        from drivers.kit import State
        conn = Connection("127.0.0.1", 1, IgniteConfig())
        conn.connection_made(Transport(conn, ignite_replies))
        conn.life.advance(State.READY)
        client._session.closed = False
    except ImportError:   # before 8939905
        from drivers.ignite.connection import State  # type: ignore[attr-defined,no-redef]
        conn = Connection("127.0.0.1", 1, request_timeout=10.0)  # type: ignore[call-arg,arg-type]
        conn.connection_made(Transport(conn, ignite_replies))
        conn.state = State.READY  # type: ignore[misc]
        client._closed = False  # type: ignore[attr-defined]
    client._router.nodes[0].conn = conn
    cache = client.cache("bench")

    async def caller() -> None:
        for i in range(per_caller):
            await cache.get(i)

    await asyncio.gather(*(caller() for _ in range(callers)))


SCENARIOS = {"redis_get": redis_get, "ignite_get": ignite_get}

if __name__ == "__main__":
    name, per_caller, callers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    uvloop.run(SCENARIOS[name](per_caller, callers))
