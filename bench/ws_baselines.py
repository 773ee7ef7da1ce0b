"""The broadcasts ``bench.ws_broadcast`` compares against, speaking the same subset of the /ws protocol.

    python -m bench.ws_baselines tornado PORT      # Tornado, write_message() per connection
    python -m bench.ws_baselines websockets PORT   # the websockets library, websockets.broadcast()

A client subscribes with ``{"op": "subscribe", ...}`` (answered ``{"type": "subscribed"}``);
any client publishes with ``{"op": "publish", "data": ...}`` and every subscriber gets
``{"type": "message", "channel": ..., "id": ..., "data": ...}``.  No Redis, no history:
only the fan-out inside one process, which is what is measured.
"""

from __future__ import annotations

import resource
import sys
from typing import Any

import orjson
import uvloop

from bench.hello import until_signal


def _message(seq: int, data: Any) -> str:
    return orjson.dumps({"type": "message", "channel": "bench", "id": f"{seq}-0", "data": data}).decode()


async def tornado_server(port: int) -> None:
    import tornado.web
    import tornado.websocket

    subscribers: set[tornado.websocket.WebSocketHandler] = set()
    seq = 0

    class Handler(tornado.websocket.WebSocketHandler):
        def on_message(self, message: str | bytes) -> None:
            nonlocal seq
            msg = orjson.loads(message)
            if msg["op"] == "subscribe":
                subscribers.add(self)
                self.write_message('{"type":"subscribed"}')
            elif msg["op"] == "publish":
                seq += 1
                text = _message(seq, msg["data"])
                for sub in subscribers:
                    sub.write_message(text)

        def on_close(self) -> None:
            subscribers.discard(self)

    tornado.web.Application([(r"/ws", Handler)], websocket_ping_interval=20).listen(port, "127.0.0.1")
    await until_signal()


async def websockets_server(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    subscribers: set[ServerConnection] = set()
    seq = 0

    async def handler(conn: ServerConnection) -> None:
        nonlocal seq
        try:
            async for message in conn:
                msg = orjson.loads(message)
                if msg["op"] == "subscribe":
                    subscribers.add(conn)
                    await conn.send('{"type":"subscribed"}')
                elif msg["op"] == "publish":
                    seq += 1
                    broadcast(subscribers, _message(seq, msg["data"]))
        finally:
            subscribers.discard(conn)

    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None):
        await until_signal()


if __name__ == "__main__":
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    servers = {"tornado": tornado_server, "websockets": websockets_server}
    uvloop.run(servers[sys.argv[1]](int(sys.argv[2])))
