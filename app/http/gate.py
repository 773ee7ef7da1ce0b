"""A connection's read gate: its next request is read only when the backends it will likely need have room.

    gate = ReadGate(max_pause_s=1.0)
    ...a request is served; its handler calls gate.remember(limiters its calls went through)...
    await gate.wait()            # before reading the next request from the connection

Rules of this file:
- HTTP/1.1 serves one request at a time per connection, and a client that just used a
  route tends to use it again (a browser tab polling it, a load generator's connection).
  So the limiters a connection's last request went through (``drivers.limits``) predict
  what its next one needs.  When one of them has no room, the connection is not read:
  its next request waits in the kernel's socket buffer, costing this process nothing,
  instead of being read, parsed and queued (or turned away with a 503 that a closed-loop
  client sends again at once).  Connections whose last request needed no saturated
  backend are read as usual: cheap routes stay fast.
- A pause never lasts longer than ``max_pause_s``; then the request is read anyway and
  meets the limiter's own queue and fail-fast rules.  A request that turns out to need
  nothing saturated simply waited; the time it waited is not taken from its budget (the
  budget starts when the request is read).
- Transport-agnostic: any server that can hold off reading a connection calls ``wait``
  between requests (the stock Tornado transport does it in ``app.http.tornado_server``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from drivers.limits import Limiter


class ReadGate:
    """One per connection: what its last request went through, and the wait before reading the next."""

    __slots__ = ("_limiters", "max_pause_s")

    def __init__(self, max_pause_s: float) -> None:
        self.max_pause_s = max_pause_s
        self._limiters: tuple[Limiter, ...] = ()

    def remember(self, limiters: Sequence[Limiter]) -> None:
        """The limiters the request just served went through (``drivers.limits.watch_calls``)."""
        self._limiters = tuple(limiters)

    def is_open(self) -> bool:
        return all(limiter.has_room() for limiter in self._limiters)

    async def wait(self) -> float:
        """Wait until each remembered limiter has room, at most ``max_pause_s`` in all; seconds paused.

        ``Limiter.park`` returns at once for a limiter with room, so an open gate costs no clock read.
        """
        began = 0.0
        for limiter in self._limiters:
            if limiter.has_room():
                continue
            if not began:
                began = time.monotonic()
            left = began + self.max_pause_s - time.monotonic()
            if left <= 0 or not await limiter.park(left):
                break
        return time.monotonic() - began if began else 0.0
