"""What leaves a pump: bytes batched per loop iteration, and the deadline of every request sent.

Rules of this file:
- Write batching: ``write`` and ``request`` only append; the first of a loop
  iteration schedules ``flush`` with ``call_soon``, so what many tasks send in
  the same iteration is joined into one buffer and one ``transport.write``.
- Deadlines: most requests use the connection's one timeout, so their deadlines
  arrive in send order: a FIFO costs O(1) per request, and one timer (the
  sweep) runs every ``period_s`` = min(50 ms, timeout / 4) while anything is
  pending.  A request therefore fails at most one period after its deadline.
  A request with its own timeout (``request_own``) goes to a heap with an exact timer;
  answered ones at its head are dropped as the next one is pushed, so the heap holds
  what is still waiting plus a few, not every request of the last timeout.
- The pump says which keys need no deadline any more — ``done(key)`` (a future's
  own ``done``), or ``alive(key)`` for the opposite (a table's ``__contains__``):
  C-level methods, checked once per request — and what to do with one whose
  time is up: ``expire(key)``, or ``expire_own(key, timeout_s)`` for one sent
  with its own timeout.  Answered requests are forgotten lazily, at the head.
- A peer that stopped answering: with ``stuck_after_s``, the pump calls
  ``replied()`` whenever replies arrive; when the oldest request sent since the
  last reply has waited ``stuck_after_s`` without any reply at all, the pump is
  told (``on_stuck(seconds)``) and closes the connection.  Each request's own
  deadline still fails it on time (and it may leave the pump's table then); this
  catches the connection that will never answer again (a blackholed or half-open
  peer), so that it is replaced.  The sweep runs while such a request is out.
  ``stuck_after(timeout_s)`` is the drivers' policy: twice their reply timeout,
  never under ``STUCK_AFTER_MIN_S`` (a peer quiet for less than a second — a JVM
  pause, a busy machine — is slow, not gone: its late replies are dropped, the
  connection kept).
- ``close`` (the connection closed) drops unsent bytes, cancels both timers and
  forgets every deadline; nothing is written or expired after it.
- Sending a request is the hot path of every driver: one method call does the
  batching and the deadline together.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")

SWEEP_PERIOD_S = 0.05
Chunk = bytes | bytearray


STUCK_AFTER_MIN_S = 1.0


def stuck_after(timeout_s: float) -> float:
    """How long a connection may go without any reply while requests wait, before it is replaced."""
    return max(2 * timeout_s, STUCK_AFTER_MIN_S)


class Outbox(Generic[K]):
    __slots__ = (
        "_alive",
        "_awaiting_since",
        "_done",
        "_expire",
        "_expire_own",
        "_fifo",
        "_heap",
        "_loop",
        "_on_stuck",
        "_out",
        "_scheduled",
        "_seq",
        "_stuck_after_s",
        "_sweeper",
        "_timer",
        "_timer_at",
        "closed",
        "period_s",
        "timeout_s",
        "transport",
        "writes",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float = 0.0, *,
                 expire: Callable[[K], None] | None = None, done: Callable[[K], bool] | None = None,
                 alive: Callable[[K], bool] | None = None, expire_own: Callable[[K, float], None] | None = None,
                 stuck_after_s: float | None = None, on_stuck: Callable[[float], None] | None = None) -> None:
        """``Outbox(loop)`` batches writes only; with ``expire`` (and ``done`` or ``alive``) it keeps deadlines."""
        if expire is not None and (done is None) == (alive is None):
            raise TypeError("an Outbox with deadlines needs exactly one of done= and alive=")
        self._loop = loop
        self.timeout_s = timeout_s
        self.period_s = min(SWEEP_PERIOD_S, timeout_s / 4)
        self._done = done
        self._alive = alive
        self._expire: Callable[[K], None] = expire or _no_deadlines
        self._expire_own: Callable[[K, float], None] = expire_own or (lambda key, timeout_s: self._expire(key))
        self._stuck_after_s = stuck_after_s if on_stuck is not None else None
        self._on_stuck = on_stuck
        self._awaiting_since: float | None = None   # when the oldest request sent since the last reply left
        self.transport: asyncio.WriteTransport | None = None
        self.writes = 0   # transport writes made
        self._out: list[Chunk] = []
        self._scheduled = False
        self._fifo: collections.deque[tuple[float, K]] = collections.deque()
        self._heap: list[tuple[float, int, K, float]] = []
        self._seq = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.closed = False

    # -- sending -------------------------------------------------------------------------------

    def write(self, data: Chunk) -> None:
        """Bytes with no reply to wait for (a handshake, a subscription command)."""
        self._out.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def request(self, data: Chunk, key: K) -> bool:
        """A request's bytes; ``key`` fails ``timeout_s`` from now unless answered.

        True when this started the sweep (nothing was pending before).
        """
        self._out.append(data)
        loop = self._loop
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.flush)
        now = loop.time()
        if self._awaiting_since is None:
            self._awaiting_since = now
        self._fifo.append((now + self.timeout_s, key))
        if self._sweeper is None and not self.closed:
            self._start_sweep()
            return True
        return False

    def request_own(self, data: Chunk, key: K, timeout_s: float) -> None:
        """A request's bytes; ``key`` fails exactly ``timeout_s`` from now unless answered."""
        self.write(data)
        now = self._loop.time()
        if self._awaiting_since is None:
            self._awaiting_since = now
        when = now + timeout_s
        self._seq += 1
        heap, waiting = self._heap, self._waiting
        # Forget answered requests at the head now, not when its deadline comes: otherwise the heap
        # keeps every request of the last timeout_s (and each future its reply) alive.
        while heap and not waiting(heap[0][2]):
            heapq.heappop(heap)
        heapq.heappush(heap, (when, self._seq, key, timeout_s))
        if (self._timer is None or when < self._timer_at) and not self.closed:
            self._arm(when)
        if self._sweeper is None and self._stuck_after_s is not None and not self.closed:
            self._start_sweep()   # the liveness check watches own-timeout requests too

    def _start_sweep(self) -> None:
        self._sweeper = self._loop.call_later(self.period_s, self._sweep)

    def replied(self) -> None:
        """Replies arrived: the peer is alive (call it from ``data_received``)."""
        self._awaiting_since = None

    def flush(self) -> None:
        self._scheduled = False
        out, self._out = self._out, []
        transport = self.transport
        if transport is None or not out or self.closed:
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        self.writes += 1

    @property
    def deadlines(self) -> int:
        """Deadlines held (requests waiting, and answered ones not yet forgotten)."""
        return len(self._fifo) + len(self._heap)

    @property
    def sweeping(self) -> bool:
        return self._sweeper is not None

    # -- deadlines -----------------------------------------------------------------------------

    def _waiting(self, key: K) -> bool:
        return not self._done(key) if self._done is not None else self._alive(key)  # type: ignore[misc]

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        """The exact timer: fail the own-timeout requests whose deadline passed."""
        self._timer = None
        now = self._loop.time()
        heap, waiting, expire = self._heap, self._waiting, self._expire_own
        while heap and (heap[0][0] <= now or not waiting(heap[0][2])):
            _, _, key, timeout_s = heapq.heappop(heap)
            if waiting(key):
                expire(key, timeout_s)
        if heap and not self.closed:
            self._arm(heap[0][0])

    def _sweep(self) -> None:
        """The periodic sweep: fail the default-timeout requests whose deadline passed; forget answered ones."""
        self._sweeper = None
        if self.closed:
            return
        now = self._loop.time()
        fifo, expire = self._fifo, self._expire
        # One check per request: two loops, so that each calls its C-level method directly.
        if (done := self._done) is not None:
            while fifo and (fifo[0][0] <= now or done(fifo[0][1])):
                _, key = fifo.popleft()
                if not done(key):
                    expire(key)
        elif (alive := self._alive) is not None:
            while fifo and (fifo[0][0] <= now or not alive(fifo[0][1])):
                _, key = fifo.popleft()
                if alive(key):
                    expire(key)
        keep = False
        if self._stuck_after_s is not None and self._on_stuck is not None and self._awaiting_since is not None:
            keep = True
            if now - self._awaiting_since >= self._stuck_after_s:
                self._on_stuck(now - self._awaiting_since)   # the pump closes the connection: close() follows
                return
        if (fifo or keep) and not self.closed:
            self._sweeper = self._loop.call_later(self.period_s, self._sweep)

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """The connection closed: drop what was not sent, stop both timers, forget every deadline."""
        self.closed = True
        self.transport = None
        self._out.clear()
        for handle in (self._sweeper, self._timer):
            if handle is not None:
                handle.cancel()
        self._sweeper = self._timer = None
        self._fifo.clear()
        self._heap.clear()


def _no_deadlines(key: object) -> None:
    raise TypeError("this Outbox was made without expire=: it only batches writes")
