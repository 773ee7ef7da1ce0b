"""A circuit breaker in front of the remote tier: stop calling a store that is down, and find out when it is back.

Rules of this file:
- No I/O.  States: CLOSED (calls go through) -> OPEN after ``failures`` consecutive
  failures -> HALF_OPEN once ``open_s`` has passed, where exactly one call (the
  probe) goes through -> CLOSED if it succeeds, OPEN again (for twice as long, up
  to ``max_open_s``) if it fails.
- Only the store being down counts as a failure (``BackendUnavailable``,
  ``BackendTimeout``); an error reply means the store is up, and a success resets
  the count.  The cache reports each remote call's outcome with ``success()`` or
  ``failure()``; ``allow()`` says whether to make the next one.
- A probe that never reports (its caller was cancelled) does not wedge the breaker:
  after another ``open_s`` a new probe is allowed.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from drivers.cache.config import BreakerConfig


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Breaker:
    __slots__ = ("_clock", "_failures", "_open_for", "_retry_at", "config", "opened", "state")

    def __init__(self, config: BreakerConfig | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock
        self.state = BreakerState.CLOSED
        self._failures = 0
        self._open_for = self.config.open_s
        self._retry_at = 0.0
        self.opened = 0          # times it opened, since start

    def __repr__(self) -> str:
        return f"<Breaker {self.state.name.lower()} failures={self._failures}>"

    def allow(self) -> bool:
        """True when the next remote call should be made (in HALF_OPEN: only the probe)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        # OPEN whose time is up, or a HALF_OPEN probe that never reported: this call probes.
        self.state = BreakerState.HALF_OPEN
        self._retry_at = now + self._open_for
        return True

    def success(self) -> None:
        if self.state is not BreakerState.CLOSED:
            self.state = BreakerState.CLOSED
            self._open_for = self.config.open_s
        self._failures = 0

    def failure(self) -> None:
        c = self.config
        if self.state is BreakerState.HALF_OPEN:
            self._open_for = min(self._open_for * 2, c.max_open_s)
            self._open()
            return
        self._failures += 1
        if self.state is BreakerState.CLOSED and self._failures >= c.failures:
            self._open()

    def _open(self) -> None:
        self.state = BreakerState.OPEN
        self.opened += 1
        self._retry_at = self._clock() + self._open_for
        self._failures = 0
