"""Counting an event loop's iterations, for tests of what runs in which one."""

from __future__ import annotations

import asyncio


class Iterations:
    """A callback that schedules itself once per iteration while ``running``; ``count`` is how many ran."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.count, self.running = loop, 0, True
        loop.call_soon(self._tick)

    def _tick(self) -> None:
        self.count += 1
        if self.running:
            self.loop.call_soon(self._tick)
