"""Many WebSocket subscribers in one process, on raw asyncio protocols: the load side of ``bench.ws_broadcast``.

    python -m bench.ws_clients PORT CHANNEL CONNECTIONS OUT_FILE

Opens CONNECTIONS connections to ``ws://127.0.0.1:PORT/ws``, subscribes each to
CHANNEL and prints ``ready N`` once all are subscribed.  Every message's data
carries ``{"t": <publish time>, "phase": ...}``; the client keeps ``receive time - t``
per frame, by phase.
On a line ``report`` on stdin it writes the latencies (ms) to OUT_FILE as JSON
and exits.  A client written on bare protocols costs a few microseconds per
frame, so 10,000 connections fit in one or two processes of a small machine.
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import sys
import time
from pathlib import Path

import orjson
import uvloop

_SUBSCRIBE_MASK = b"\x00\x00\x00\x00"   # a zero mask leaves the payload as it is (fine for a benchmark)


def _client_frame(payload: bytes) -> bytes:
    n = len(payload)
    assert n < 126
    return bytes((0x81, 0x80 | n)) + _SUBSCRIBE_MASK + payload


class Subscriber(asyncio.Protocol):
    def __init__(self, port: int, channel: str, state: State) -> None:
        self.port = port
        self.subscribe = _client_frame(orjson.dumps({"op": "subscribe", "channel": channel}))
        self.state = state
        self.buf = bytearray()
        self.upgraded = False
        self.subscribed = state.loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(  # type: ignore[attr-defined]
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self._fail(f"handshake refused: {bytes(buf[:60])!r}")
                return
            del buf[:end + 4]
            self.upgraded = True
            assert self.transport is not None
            self.transport.write(self.subscribe)
        now = time.time()
        pos, size = 0, len(buf)
        while size - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 4], "big"), 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
            if size - pos < head + n:
                break
            if opcode == 0x1:
                self._message(bytes(buf[pos + head:pos + head + n]), now)
            elif opcode == 0x8:
                self.state.closed += 1
            pos += head + n
        del buf[:pos]

    def _message(self, payload: bytes, now: float) -> None:
        msg = orjson.loads(payload)
        kind = msg.get("type")
        if kind == "message":
            data = msg["data"]
            self.state.latencies.setdefault(data["phase"], []).append((now - data["t"]) * 1000)
            self.state.last_receive = now
        elif kind == "subscribed" and not self.subscribed.done():
            self.subscribed.set_result(None)
        elif kind == "error":
            self._fail(f"error frame: {msg}")

    def _fail(self, why: str) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(RuntimeError(why))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc}")


class State:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.latencies: dict[str, list[float]] = {}
        self.last_receive = 0.0
        self.closed = 0


async def main(port: int, channel: str, connections: int, out_file: str) -> None:
    state = State()
    loop = state.loop
    protocols: list[Subscriber] = []
    for start in range(0, connections, 500):   # in batches: the listen backlog is finite
        batch = []
        for _ in range(min(500, connections - start)):
            proto = Subscriber(port, channel, state)
            batch.append(loop.create_connection(lambda p=proto: p, "127.0.0.1", port))  # type: ignore[misc]
            protocols.append(proto)
        await asyncio.gather(*batch)
        await asyncio.gather(*(p.subscribed for p in protocols[start:]))
    print(f"ready {len(protocols)}", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while (line := await reader.readline()) and line.strip() != b"report":
        pass
    Path(out_file).write_bytes(orjson.dumps({"latencies_ms": state.latencies, "closed": state.closed,  # noqa: ASYNC240
                                             "last_receive": state.last_receive}))
    for proto in protocols:
        if proto.transport is not None:
            proto.transport.abort()


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]))
