"""A TCP proxy in front of a real Ignite node that can turn the node's replies into error replies.

    async with FailingIgniteProxy(("127.0.0.1", 10800)) as proxy:   # clients connect to proxy.address
        proxy.failing = True     # every reply from now on: the same request id, the ERROR flag, a status and a message

What no real node does on demand: answer every request with its own error.  The handshake's reply
(the first frame of each connection) always goes through as it is; every later frame of a protocol
>= 1.4 reply (int32 length | int64 request id | int16 flags | ...) is, while ``failing``, replaced by
``length | the same request id | flags ERROR | int32 status | String message``.  Bytes from the
client go to the node unchanged, so the request itself still runs there.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

_LEN = struct.Struct("<i")
_ID = struct.Struct("<q")
_ERROR_FLAG = 1
_STRING = 9


def error_reply(request_id: int, status: int, message: str) -> bytes:
    text = message.encode()
    body = (_ID.pack(request_id) + struct.pack("<hi", _ERROR_FLAG, status) + bytes([_STRING])
            + _LEN.pack(len(text)) + text)
    return _LEN.pack(len(body)) + body


class FailingIgniteProxy:
    def __init__(self, target: tuple[str, int], status: int = 1, message: str = "injected by the test proxy") -> None:
        self.target = target
        self.status = status
        self.message = message
        self.failing = False
        self.failed = 0              # replies replaced
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        return ("127.0.0.1", self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> FailingIgniteProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.append(up_writer)
        for coro in (self._forward(reader, up_writer), self._replies(up_reader, writer)):
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _forward(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()

    async def _replies(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        first = True
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await src.readexactly(4)
                frame = await src.readexactly(_LEN.unpack(head)[0])
                if self.failing and not first:
                    (request_id,) = _ID.unpack_from(frame, 0)
                    dst.write(error_reply(request_id, self.status, self.message))
                    self.failed += 1
                else:
                    dst.write(head + frame)
                first = False
                await dst.drain()
        dst.transport.abort()
