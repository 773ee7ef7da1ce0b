"""Turns: work through a backend limit lets the rest of the event loop run once an iteration has run long.

    wait = turns().enter(slice_s=0.001)   # None while this loop iteration is short, else a place in line
    if wait is not None:
        await wait

Rules of this file:
- An event loop runs, in each iteration, every callback that was ready when the
  iteration began, and only then polls its sockets again.  When 30 slow queries
  answer at once, the 30 handlers that resume make one long iteration, and a cheap
  request read in the next poll waits behind all of them: its latency is the
  length of the iteration, not its own cost.
- ``enter()`` is called by calls through a backend limit (``drivers.limits``),
  before the call starts and after its answer is in, and by an HTTP server before it
  parses the next request of a connection whose last request went through a limit.
  It returns None (go on, no suspension) while less than ``slice_s`` has passed
  since this iteration's work began and nobody is in line; otherwise a future, the
  caller's place in a FIFO line, that the caller awaits. It is a plain function: a
  turn taken at once costs no coroutine, and a caller that waited resumes straight
  from the future.
- Each iteration releases a number of callers from the line (at least one: the
  line always moves), learnt from how long the released callers' own work takes:
  one more after a release whose work stayed within ``slice_s`` while callers still
  wait, and after one over 1.5 times it, as many fewer as it overran (x ``slice_s``
  / its length); from one again once the line has emptied, since the next burst may
  be other work.  So every iteration does about a slice of this work and then polls:
  a request that needs no limited backend is read and answered within about
  ``slice_s`` plus what the poll itself brings.
- Only the released callers' work is measured, not the whole iteration: what the
  poll brings (requests read, answers parsed up to their turn) is work the line
  cannot shorten, and counting it made the line move one caller per iteration
  whenever it exceeded the slice, which starved the line under load.
- "This iteration's work began" is marked by a callback scheduled with
  ``call_soon`` after the callers it woke, so it runs once they have run and
  before what the next poll brings; the release's start by one scheduled just
  before them.  Both are scheduled only while turns are being taken, so an idle
  loop sleeps.
- One ``Turns`` per event loop (``turns()``); cancellation while in line leaves the
  line; a caller woken and cancelled before it ran simply loses its turn.
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from collections.abc import Callable


class Turns:
    __slots__ = ("__weakref__", "_clock", "_granted", "_line", "_loop", "_mark", "_release_began", "_released", "_room",
                 "_ticking", "waits")

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Callable[[], float] = time.perf_counter) -> None:
        self._loop = loop
        self._clock = clock       # fine-grained: the loop's own clock may move once per iteration (uvloop)
        self._line: collections.deque[asyncio.Future[None]] = collections.deque()
        self._mark = 0.0          # when the current iteration's work began (by the clock)
        self._ticking = False     # a _tick is scheduled
        self._granted = 0         # turns taken since the mark (released, or at once)
        self._released = 0        # callers the last tick released from the line
        self._release_began = 0.0  # when the first of them began to run (by the clock)
        self._room = 1.0          # turns released per iteration: grows while iterations stay within the slice
        self.waits = 0            # callers that waited in line

    def busy(self) -> bool:
        """Whether callers wait in line (the loop has more of this work than fits in its iterations)."""
        return bool(self._line)

    def enter(self, slice_s: float) -> asyncio.Future[None] | None:
        """None when this caller may go on at once (inside the slice); else its place in line.

        The place is a future that is done when the line reaches the caller; a task awaiting it and
        cancelled cancels it, which leaves the line.  No coroutine in between: most turns are
        taken at once, and a waiting caller resumes straight from the future.
        """
        now = self._clock()
        if not self._ticking:
            self._ticking = True
            self._mark, self._granted = now, 0
            self._loop.call_soon(self._tick, slice_s)
        if not self._line and now - self._mark < slice_s:
            self._granted += 1
            return None
        self.waits += 1
        fut = self._loop.create_future()
        self._line.append(fut)
        return fut

    def _tick(self, slice_s: float) -> None:
        """A new iteration: measure the last release, and release as much of the line as fits in a slice."""
        now = self._clock()
        line = self._line
        if self._released:
            took = now - self._release_began        # the work of the callers released last time, alone
            if took > 1.5 * slice_s:
                self._room = max(1.0, self._room * slice_s / took)
            elif took <= slice_s and line:
                self._room += 1.0
        self._mark, self._granted, self._released = now, 0, 0
        if line:
            # Runs just before the callers woken below, and this tick's successor just after them.
            self._loop.call_soon(self._begin_release)
        room = int(self._room)
        while line and room > 0:
            fut = line.popleft()
            if not fut.done():
                fut.set_result(None)
                self._released += 1
                room -= 1
        self._granted = self._released
        # Scheduled after the wake-ups, so the next tick runs once the woken callers have run:
        # it measures their work, and marks the start of what the next poll brings.
        if self._granted or line:
            self._loop.call_soon(self._tick, slice_s)
        else:
            self._ticking = False
            self._room = 1.0      # what was learnt was for that work; the next burst may be another

    def _begin_release(self) -> None:
        self._release_began = self._clock()


_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Turns] = weakref.WeakKeyDictionary()


def turns() -> Turns:
    """The running loop's ``Turns`` (one shared by every limiter on it)."""
    loop = asyncio.get_running_loop()
    found = _turns.get(loop)
    if found is None:
        found = _turns[loop] = Turns(loop)
    return found
