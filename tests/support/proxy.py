"""A TCP proxy in front of the real node, for what no real server does on its own.

It forwards bytes both ways and can hold back the node's replies, inject raw
bytes towards the client, or cut the client's connection.  Everything else
the client sees comes from the real Ignite node.
"""

from __future__ import annotations

import asyncio
import contextlib


class Proxy:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._clients: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for w in self._clients:
            w.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()

    @property
    def hold_replies(self) -> bool:
        """While True, the node's bytes are held back from the client."""
        return not self._flowing.is_set()

    @hold_replies.setter
    def hold_replies(self, hold: bool) -> None:
        if hold:
            self._flowing.clear()
        else:
            self._flowing.set()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._clients.append(writer)
        for coro in (self._pump(reader, up_writer, False), self._pump(up_reader, writer, True)):
            task = asyncio.ensure_future(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
        try:
            while data := await src.read(65536):
                if replies:
                    await self._flowing.wait()
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    def inject(self, data: bytes) -> None:
        """Write raw bytes to every connected client, as if the node sent them."""
        for w in self._clients:
            w.write(data)

    def cut(self) -> None:
        """Drop every client connection at once."""
        for w in self._clients:
            w.transport.abort()
        self._clients.clear()
