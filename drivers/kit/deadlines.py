"""Deadlines of pending requests: a FIFO swept on one period for the common timeout, a heap for own timeouts.

Rules of this file:
- Most requests use the connection's one timeout, so their deadlines arrive in
  send order: a FIFO costs O(1) per request, and one timer (the sweep) runs
  every ``period_s`` = min(50 ms, timeout / 4) while anything is pending.  A
  request therefore fails at most one period after its deadline.
- A request with its own timeout goes to a heap with an exact timer.
- The pump says which keys are still waiting (``alive``) and what to do with
  one whose time is up (``expire``).  Answered requests are forgotten lazily,
  when they reach the head.
- ``on_sweep(now)`` runs on every sweep: the pump's liveness check (is the peer
  answering at all?).  It returns True to keep the sweep running even when no
  deadline is pending.
- ``stop`` cancels both timers and forgets every deadline (the connection closed).
"""

from __future__ import annotations

import asyncio
import collections
import heapq
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")

SWEEP_PERIOD_S = 0.05


class Deadlines(Generic[K]):
    __slots__ = ("_alive", "_expire", "_fifo", "_heap", "_loop", "_on_sweep", "_seq", "_sweeper", "_timer",
                 "_timer_at", "period_s", "stopped", "timeout_s")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float, *, alive: Callable[[K], bool],
                 expire: Callable[[K], None], on_sweep: Callable[[float], bool] | None = None) -> None:
        self._loop = loop
        self.timeout_s = timeout_s
        self.period_s = min(SWEEP_PERIOD_S, timeout_s / 4)
        self._alive = alive
        self._expire = expire
        self._on_sweep = on_sweep
        self._fifo: collections.deque[tuple[float, K]] = collections.deque()
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.stopped = False

    def add(self, key: K) -> bool:
        """``key`` fails ``timeout_s`` from now unless answered (checked every ``period_s``).

        True when this started the sweep (nothing was pending before).
        """
        self._fifo.append((self._loop.time() + self.timeout_s, key))
        if self._sweeper is None and not self.stopped:
            self._sweeper = self._loop.call_later(self.period_s, self._sweep)
            return True
        return False

    def add_own(self, key: K, timeout_s: float) -> None:
        """``key`` fails exactly ``timeout_s`` from now unless answered."""
        when = self._loop.time() + timeout_s
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, key))
        if (self._timer is None or when < self._timer_at) and not self.stopped:
            self._arm(when)

    def watch(self) -> None:
        """Start sweeping now even with nothing pending (so ``on_sweep`` runs)."""
        if self._sweeper is None and not self.stopped:
            self._sweeper = self._loop.call_later(self.period_s, self._sweep)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        heap, alive, expire = self._heap, self._alive, self._expire
        while heap and (heap[0][0] <= now or not alive(heap[0][2])):
            _, _, key = heapq.heappop(heap)
            if alive(key):
                expire(key)
        if heap and not self.stopped:
            self._arm(heap[0][0])

    def _sweep(self) -> None:
        self._sweeper = None
        if self.stopped:
            return
        now = self._loop.time()
        fifo, alive, expire = self._fifo, self._alive, self._expire
        while fifo and (fifo[0][0] <= now or not alive(fifo[0][1])):
            _, key = fifo.popleft()
            if alive(key):
                expire(key)
        keep = self._on_sweep(now) if self._on_sweep is not None else False
        if (fifo or keep) and not self.stopped:
            self._sweeper = self._loop.call_later(self.period_s, self._sweep)

    @property
    def sweeping(self) -> bool:
        return self._sweeper is not None

    def stop(self) -> None:
        self.stopped = True
        for handle in (self._sweeper, self._timer):
            if handle is not None:
                handle.cancel()
        self._sweeper = self._timer = None
        self._fifo.clear()
        self._heap.clear()
