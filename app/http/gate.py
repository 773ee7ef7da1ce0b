"""A connection's read gate: its next request is read only when the backends it will likely need have room.

    gate = ReadGate(max_pause_s=1.0)
    ...a request is served; as it finishes, its handler calls gate.remember(limiters its calls went through)
    await gate.wait()            # before reading the next request from the connection
    gate.when_open(callback)     # ... or, without a task: False, then callback(seconds paused) later
    wait = gate.turn()           # its bytes are in: None to parse them now, else a future to parse them after

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
- Once read, the next request of such a connection is started in a turn (``turn()``,
  ``drivers.turns``) when the loop's iterations run long: the fast transport keeps its
  bytes, unparsed, until the line reaches it, so the work of reading, parsing and starting
  it is inside the slice each iteration gives that work, not in the poll that read it
  (where nothing bounds it, and a cheap request read in the same poll waits behind it).
  The first remembered limiter's line is the one taken; a connection whose last request
  went through no limiter is parsed at once.
- Transport-agnostic: any server that can hold off reading a connection calls ``wait``
  between requests (the stock Tornado transport does it in ``app.http.tornado_server``),
  or ``when_open``, which takes no task (a task per paused request cost the saturated
  route about a tenth of its CPU; ``app.http.connection`` uses it).  One wait at a time.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence

from drivers.limits import Limiter, Parked


def _now() -> float:
    return asyncio.get_running_loop().time()


class ReadGate:
    """One per connection: what its last request went through, and the wait before reading the next."""

    __slots__ = ("_at", "_began", "_context", "_limiters", "_on_open", "_parked", "max_pause_s")

    def __init__(self, max_pause_s: float) -> None:
        self.max_pause_s = max_pause_s
        self._limiters: tuple[Limiter, ...] = ()
        self._on_open: Callable[[float], object] | None = None   # when_open's callback, while it waits
        self._context: contextvars.Context | None = None
        self._parked: Parked | None = None
        self._at = 0                # the limiter waited for
        self._began = 0.0

    def remember(self, limiters: Sequence[Limiter]) -> None:
        """The limiters the request just served went through (``drivers.limits.watch_calls``)."""
        self._limiters = tuple(limiters)

    def turn(self) -> asyncio.Future[None] | None:
        """A place in the turns line (``drivers.turns``) for reading the next request, or None to read it now.

        Taken from the first remembered limiter: None when it takes no turns, or the loop's
        iteration is still short and nobody waits.
        """
        return self._limiters[0].turn() if self._limiters else None

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
                began = _now()
            left = began + self.max_pause_s - _now()
            if left <= 0 or not await limiter.park(left):
                break
        return _now() - began if began else 0.0

    def when_open(self, callback: Callable[[float], object], context: contextvars.Context | None = None) -> bool:
        """``wait`` without a task: True when open now; else ``callback(seconds paused)`` runs later, in ``context``."""
        if self.is_open():
            return True
        self._on_open, self._context = callback, context
        self._at, self._began = 0, _now()
        self._go_on()
        return False

    def cancel(self) -> None:
        """Stop waiting (the connection closed): the callback will not run."""
        self._on_open = None
        parked, self._parked = self._parked, None
        if parked is not None:
            parked.cancel()

    def _go_on(self) -> None:
        limiters = self._limiters
        while self._at < len(limiters):
            limiter = limiters[self._at]
            left = self._began + self.max_pause_s - _now()
            if left <= 0:
                break
            self._parked = limiter.park_soon(self._parked_done, left, self._context)
            if self._parked is not None:
                return
            self._at += 1
        callback, self._on_open = self._on_open, None
        if callback is not None:
            callback(_now() - self._began)

    def _parked_done(self, room: bool) -> None:
        self._parked = None
        if self._on_open is None:
            return
        self._at = self._at + 1 if room else len(self._limiters)   # no room in time: read anyway
        self._go_on()
