"""Adaptive concurrency limits: how many calls to one backend may run at once, learnt from latency.

    limiter = Limiter("mysql", LimitConfig(), wait_s=0.2)
    began = await limiter.acquire()          # a slot, or BackendBusy (nothing was sent)
    try:
        ...the call...
    finally:
        limiter.release(began)

Rules of this file:
- Each backend client has one ``Limiter``.  A call takes a slot before anything is
  sent and gives it back when its answer (or error) is in; ``in_flight`` never
  exceeds ``limit``.
- The limit moves by AIMD, once per ``window_s`` at most: down by ``backoff``
  (multiplicative) when the window saw congestion, up by ``increase`` or the
  limit's square root, whichever is more (additive; the square root as in Netflix's
  gradient limit, so a large limit does not take seconds to move), when the limit
  was what held calls back and nothing was congested.  Until the
  first congested window it starts slowly, as TCP does: it doubles instead of adding
  (the first congestion multiplies it by ``backoff`` like any other), so a service
  that starts under load reaches its working limit within a few windows instead of
  seconds of ``increase`` steps (from 32 to 200 in 2 slots a window took 4 s).
  Congestion is either of:
  the event loop answering late because of its own work (``LoopLag``: a timer
  every 5 ms fires later than ``lag_target_s``, counted in the share its thread
  was on the CPU: the process's CPU is saturated, and every route, cheap ones
  too, waits behind the work; lateness from the machine not running the process
  is not congestion a limit can ease), or the backend's own latency rising (the
  window's mean call time above ``latency_tolerance`` times its long-run mean,
  plus ``latency_slack_s``: a backend slowing down, whatever mix of fast and
  slow calls it normally serves).
- A call that finds no free slot waits in a FIFO queue.  Inside a budget
  (``drivers.budget``: a request's) it waits at most ``wait_s`` (the driver's pool
  or query wait setting) and never past the budget; a caller that cannot get a
  slot in time is turned away with ``BackendBusy`` (a 503 with ``Retry-After`` in
  the service), at once when the queue ahead of it cannot clear in time.  Work
  without a budget (a script, a batch) waits up to ``wait_unbudgeted_s`` (the
  call's own timeout): it would rather be slow than refused.
- A freed slot goes to the longest-waiting caller; callers that gave up (their
  budget ended, they were cancelled) are skipped, and a slot handed to a caller
  that was cancelled at the same moment is passed on.
- Work that has not started yet may wait for room instead of queueing: ``park``
  waits (FIFO, bounded) until a call could start without waiting for a slot
  (``park_soon``: the same with a callback, no task).
  The service parks an HTTP connection this way before reading its next
  request, so excess requests wait in the kernel's socket buffer rather than in
  this process.  A freed slot with nobody queued wakes one parked caller; parked
  callers count as demand held back (the limit may grow).
- ``watch_calls()`` records, for the current task, which limiters its calls go
  through (the service uses it to know what a connection's next request is
  likely to need).
- Calls take turns with the rest of the event loop (``drivers.turns``): before
  a call starts and once its answer is in, a call finding that this loop
  iteration has run ``turn_slice_s`` already waits for a later one, so a burst of
  answers never holds back a request that needs no limited backend.
- Disabled (``enabled=False``), ``acquire`` only counts, nobody is parked and no
  turns are taken.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers import budget
from drivers.errors import BackendBusy
from drivers.turns import turns


@dataclass(frozen=True, slots=True)
class LimitConfig:
    enabled: bool = True
    initial: int = 32            # calls at once before anything is learnt
    min: int = 4                 # never fewer
    max: int = 512               # never more
    window_s: float = 0.05       # how often the limit may move
    backoff: float = 0.9         # the factor a congested window multiplies the limit by
    increase: float = 2.0        # slots added (at least; or the limit's square root) after a window that
                                 # held calls back and saw no congestion
    lag_target_s: float = 0.005  # the event loop answering later than this is congestion
    latency_tolerance: float = 2.0   # the window's mean call time above this x the long-run mean ...
    latency_slack_s: float = 0.005  # ... plus this, is congestion
    turn_slice_s: float = 0.001  # calls take turns (drivers.turns) once a loop iteration ran this long; 0: never

    def capped(self, most: int) -> LimitConfig:
        """This config with every bound at most ``most`` (a pool's size: no point in more calls than connections)."""
        return dataclasses.replace(self, initial=min(self.initial, most), min=min(self.min, most),
                                   max=min(self.max, most))


_cpu_time = time.thread_time   # the CPU time of the thread running the loop (tests on a virtual clock set theirs)


class LoopLag:
    """How late the event loop runs a timer because of its own work: sampled every ``every_s``
    while someone watches; one per loop.

    A timer runs late either because the loop's own callbacks ran long (this process's work: what
    a limit can lessen) or because the loop was not running at all (the machine gave the CPU to
    another process, or its hypervisor took it: nothing this process admits changes that).  The
    two are told apart by the CPU time the loop's thread used in the interval: a sample is the
    lateness times the share of the interval the thread spent on the CPU.  A loop busy all along
    counts in full; one late after sitting idle while descheduled counts for next to nothing.
    """

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s = every_s
        self._samples: collections.deque[tuple[float, float]] = collections.deque(maxlen=512)  # (when, lag)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._set_at = 0.0           # when the pending timer was set (the loop's clock; due every_s later) ...
        self._cpu_at = 0.0           # ... and the thread's CPU time then
        self._watchers = 0

    def watch(self) -> None:
        self._watchers += 1
        if self._handle is None:
            self._loop = asyncio.get_running_loop()
            self._set(self._loop.time())

    def _set(self, now: float) -> None:
        assert self._loop is not None
        self._set_at, self._cpu_at = now, _cpu_time()
        self._handle = self._loop.call_at(now + self.every_s, self._tick)

    def unwatch(self) -> None:
        self._watchers = max(0, self._watchers - 1)
        if self._watchers == 0 and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        late = now - self._set_at - self.every_s
        if late > 0:
            elapsed = now - self._set_at
            late *= min(1.0, (_cpu_time() - self._cpu_at) / elapsed) if elapsed > 0 else 1.0
        self._samples.append((now, late))
        self._set(now)

    def worst_since(self, seconds: float) -> float:
        """The worst lag sampled in the last ``seconds``."""
        if self._loop is None:
            return 0.0
        since = self._loop.time() - seconds
        return max((lag for when, lag in reversed(self._samples) if when >= since), default=0.0)


_lags: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLag] = weakref.WeakKeyDictionary()


def loop_lag() -> LoopLag:
    """The lag sampler of the running loop (one shared by every limiter on it)."""
    loop = asyncio.get_running_loop()
    lag = _lags.get(loop)
    if lag is None:
        lag = _lags[loop] = LoopLag()
    return lag


_calls_through: contextvars.ContextVar[list[Limiter] | None] = contextvars.ContextVar("limits_calls_through",
                                                                                      default=None)


def watch_calls() -> list[Limiter]:
    """From now on in this task, add each limiter a call goes through to the list returned (each once)."""
    seen: list[Limiter] = []
    _calls_through.set(seen)
    return seen


def _now() -> float:
    return asyncio.get_running_loop().time()


_PARKED, _WOKEN, _DONE = "parked", "woken", "done"


class Parked:
    """A caller waiting for room (``Limiter.park_soon``): parked -> woken (its callback is due) -> done."""

    __slots__ = ("callback", "context", "limiter", "state", "timer")

    def __init__(self, limiter: Limiter, callback: Callable[[bool], object],
                 context: contextvars.Context | None) -> None:
        self.limiter = limiter
        self.callback = callback
        self.context = context
        self.state = _PARKED
        self.timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        """Leave the line; a caller already woken gives the room it was woken for to the next one."""
        state, self.state = self.state, _DONE
        if state is _PARKED:
            if self.timer is not None:
                self.timer.cancel()
            self.limiter._drop_done_parked()
        elif state is _WOKEN:
            self.limiter._unwake()


class Limiter:
    __slots__ = (
        "_calls",
        "_fill_timer",
        "_held_back",
        "_lag",
        "_latency_sum",
        "_long_latency_s",
        "_parked",
        "_slice_s",
        "_slow_start",
        "_waiters",
        "_window_end",
        "_woken",
        "backend",
        "config",
        "in_flight",
        "latency_s",
        "limit",
        "park_timeouts",
        "parks",
        "shed",
        "turn_waits",
        "wait_s",
        "wait_unbudgeted_s",
        "waits",
    )

    def __init__(self, backend: str, config: LimitConfig | None = None, *, wait_s: float = 0.2,
                 wait_unbudgeted_s: float = 10.0) -> None:
        self.backend = backend
        self.wait_s = wait_s                        # longest a call with a budget waits for a slot
        self.wait_unbudgeted_s = wait_unbudgeted_s  # ... and one without
        self.config = c = config or LimitConfig()
        self.limit = float(min(max(c.initial, c.min), c.max))
        self.in_flight = 0
        self.shed = 0                # callers turned away
        self.waits = 0               # callers that had to queue
        self.latency_s = 0.0         # a call's time, exponentially weighted (for the queue's expected wait)
        self.parks = 0               # callers that parked (waited for room before starting)
        self.park_timeouts = 0       # ... and gave up waiting
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._parked: collections.deque[Parked] = collections.deque()
        self._woken: collections.deque[float] = collections.deque()   # when parked callers were woken
        self._fill_timer: asyncio.TimerHandle | None = None
        self._lag: LoopLag | None = None
        self._window_end = 0.0
        self._calls = 0
        self._latency_sum = 0.0
        self._long_latency_s = 0.0   # the long-run mean call time (exponentially weighted, slowly)
        self._held_back = False
        self._slow_start = True      # until the first congested window, the limit doubles
        self._slice_s = c.turn_slice_s if c.enabled else 0.0
        self.turn_waits = 0          # waits for a turn: calls (before, after their answer); requests before parsed

    def __repr__(self) -> str:
        return (f"<Limiter {self.backend} limit={self.limit:.0f} in_flight={self.in_flight} "
                f"queued={self.queued}>")

    @property
    def queued(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    @property
    def parked(self) -> int:
        return sum(1 for p in self._parked if p.state is _PARKED)

    # -- slots ---------------------------------------------------------------------------------

    async def acquire(self) -> float:
        """Take a slot (waiting in line if none is free); the time the call starts (the loop's clock).

        First, when this loop iteration has already run long, wait for a turn (``turn()``).
        """
        seen = _calls_through.get()
        if seen is not None and self not in seen:
            seen.append(self)
        if self._slice_s:
            wait = self.turn()
            if wait is not None:
                await wait
        if self._woken:
            self._woken.popleft()     # a woken caller (or someone else) is taking the room it was woken for
        if self.in_flight < self.limit or not self.config.enabled:
            self.in_flight += 1
            return _now()
        return await self._wait()

    def turn(self) -> asyncio.Future[None] | None:
        """None: go on at once (this loop iteration is still short); else a future to await first,
        the caller's place in line (``drivers.turns``).

        ``acquire`` calls it; a driver calls it again once the answer is in, before the caller's
        work on it goes on::

            wait = limiter.turn()
            if wait is not None:
                await wait

        Without a limit (``enabled=False``) or with ``turn_slice_s=0``, always None.
        """
        if not self._slice_s:
            return None
        wait = turns().enter(self._slice_s)
        if wait is not None:
            self.turn_waits += 1
        return wait

    def has_room(self) -> bool:
        """Whether a call starting now would get a slot without waiting behind anyone."""
        return (not self.config.enabled
                or (self.in_flight + len(self._waiters) + len(self._woken) < self.limit and not self._parked))

    def park_soon(self, callback: Callable[[bool], object], timeout_s: float,
                  context: contextvars.Context | None = None) -> Parked | None:
        """``park`` without a task: None when a call could start now (``callback`` is not called).

        Else ``callback(True)`` runs (``call_soon``, in ``context``) once there is room, or
        ``callback(False)`` after ``timeout_s``; ``Parked.cancel()`` leaves the line (a caller woken
        and cancelled before its callback ran passes its room on).
        """
        if self.has_room():
            return None
        self._watch_lag()
        self._held_back = True
        self.parks += 1
        loop = asyncio.get_running_loop()
        parked = Parked(self, callback, context)
        parked.timer = loop.call_at(loop.time() + timeout_s, self._park_expired, parked, context=context)
        self._parked.append(parked)
        self._fill()
        return parked

    async def park(self, timeout_s: float) -> bool:
        """Wait (in line with other parked callers) until a call could start at once; False after ``timeout_s``."""
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        parked = self.park_soon(lambda ok: None if fut.done() else fut.set_result(ok), timeout_s)
        if parked is None:
            return True
        try:
            return await fut
        finally:
            parked.cancel()      # nothing if its callback ran; else (cancelled) it leaves the line

    def _park_expired(self, parked: Parked) -> None:
        if parked.state is _PARKED:
            parked.state = _DONE
            self.park_timeouts += 1
            self._drop_done_parked()
            parked.callback(False)

    def _wake(self, parked: Parked) -> None:
        if parked.state is _WOKEN:
            parked.state = _DONE
            parked.callback(True)

    def _unwake(self) -> None:
        """A woken caller will start nothing after all: its room goes to the next one."""
        if self._woken:
            self._woken.popleft()
        self._fill()

    def _drop_done_parked(self) -> None:
        parked = self._parked
        while parked and parked[0].state is not _PARKED:
            parked.popleft()

    def _fill(self) -> None:
        """Wake parked callers, in order, while there is room for their calls.

        A woken caller needs a moment to start its call (a connection reads and parses its
        request), so each wake holds its slot in ``_woken`` until a call starts or ``window_s``
        passes; a woken caller that starts nothing (its connection closed, or its request needed
        another backend) thus keeps nobody waiting for long.
        """
        parked, woken = self._parked, self._woken
        if not parked:
            return
        now = _now()
        while woken and woken[0] <= now - self.config.window_s:
            woken.popleft()
        room = math.ceil(self.limit) - self.in_flight - len(self._waiters) - len(woken)
        loop = asyncio.get_running_loop()
        while parked and room > 0:
            entry = parked.popleft()
            if entry.state is _PARKED:
                entry.state = _WOKEN
                if entry.timer is not None:
                    entry.timer.cancel()
                loop.call_soon(self._wake, entry, context=entry.context)
                woken.append(now)
                room -= 1
        if parked and woken and self._fill_timer is None:   # wake more once held slots expire, calls ending or not
            self._fill_timer = asyncio.get_running_loop().call_at(woken[0] + self.config.window_s, self._fill_due)

    def _fill_due(self) -> None:
        self._fill_timer = None
        self._fill()

    def _watch_lag(self) -> None:
        if self._lag is None:
            self._lag = loop_lag()
            self._lag.watch()

    async def _wait(self) -> float:
        self._watch_lag()
        self._held_back = True
        left = budget.remaining()
        wait_s = self.wait_unbudgeted_s if left is None else min(self.wait_s, left)
        ahead = self.queued
        if wait_s <= 0 or ahead / max(self.limit, 1.0) * self.latency_s > wait_s:
            raise self._busy(f"{self.backend}: {ahead} calls wait for one of {self.limit:.0f} slots already; "
                             f"this one could not start within {max(wait_s, 0):.3g} s")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self.waits += 1
        try:
            async with asyncio.timeout(wait_s):
                await fut
        except TimeoutError:
            if fut.done() and not fut.cancelled():   # handed a slot as the wait ran out: it is ours
                return _now()
            raise self._busy(f"{self.backend}: no free slot (limit {self.limit:.0f}) within {wait_s:.3g} s") from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():   # a slot was handed over just before: pass it on
                self.in_flight -= 1
                self._hand_over()
            raise
        return _now()   # the slot was counted when it was handed over

    def _busy(self, message: str) -> BackendBusy:
        self.shed += 1
        retry_after = max(1.0, math.ceil(self.latency_s * (1 + self.queued / max(self.limit, 1.0))))
        return BackendBusy(message, backend=self.backend, retry_after_s=retry_after)

    def release(self, began: float) -> None:
        """Give the slot back; ``began`` is what ``acquire`` returned (the call's latency is learnt from it)."""
        now = _now()
        self.in_flight -= 1
        latency = now - began
        self._calls += 1
        self._latency_sum += latency
        self.latency_s += 0.1 * (latency - self.latency_s)
        self._long_latency_s += (0.01 if self._long_latency_s else 1.0) * (latency - self._long_latency_s)
        if now >= self._window_end:
            self._adapt(now)
        if self._waiters:
            self._hand_over()
        if self._parked and not self._waiters:
            self._fill()

    def _hand_over(self) -> None:
        waiters = self._waiters
        while waiters and self.in_flight < self.limit:
            fut = waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    # -- learning ------------------------------------------------------------------------------

    def _adapt(self, now: float) -> None:
        c = self.config
        if not c.enabled:
            self._window_end = now + c.window_s
            return
        lag = self._lag.worst_since(c.window_s) if self._lag is not None else 0.0
        mean = self._latency_sum / self._calls if self._calls else 0.0
        slow = self._calls > 0 and mean > self._long_latency_s * c.latency_tolerance + c.latency_slack_s
        if lag > c.lag_target_s or slow:
            self.limit = max(float(c.min), self.limit * c.backoff)
            self._slow_start = False
        elif self._held_back:
            self.limit = min(float(c.max), self.limit * 2 if self._slow_start
                             else self.limit + max(c.increase, math.sqrt(self.limit)))
        elif self._lag is not None and not self._waiters and not self._parked:
            self._lag.unwatch()   # nobody is held back: stop sampling the loop
            self._lag = None
        self._held_back = bool(self._waiters) or bool(self._parked)
        self._calls = 0
        self._latency_sum = 0.0
        self._window_end = now + c.window_s

    def stats(self) -> dict[str, Any]:
        return {"limit": round(self.limit), "in_flight": self.in_flight, "queued": self.queued, "shed": self.shed,
                "waited": self.waits, "parked": self.parked, "parks": self.parks,
                "park_timeouts": self.park_timeouts, "turn_waits": self.turn_waits}
