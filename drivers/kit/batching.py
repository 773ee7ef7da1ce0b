"""Write batching: everything a pump writes in one loop iteration leaves in one ``transport.write``.

Rules of this file:
- ``write`` only appends; the first write of an iteration schedules ``flush``
  with ``call_soon``, so requests made by many tasks in the same iteration are
  joined into one buffer and one system call.
- ``detach`` (on close) drops what was not sent yet; a flush after it writes nothing.
"""

from __future__ import annotations

import asyncio

Chunk = bytes | bytearray


class WriteBatcher:
    __slots__ = ("_loop", "_out", "_scheduled", "transport", "writes")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._out: list[Chunk] = []
        self._scheduled = False
        self.transport: asyncio.WriteTransport | None = None
        self.writes = 0   # system-level writes made (for tests and stats)

    def write(self, data: Chunk) -> None:
        self._out.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        out, self._out = self._out, []
        transport = self.transport
        if transport is None or not out:
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        self.writes += 1

    def detach(self) -> None:
        """The connection closed: forget the transport and what was waiting for it."""
        self.transport = None
        self._out.clear()
