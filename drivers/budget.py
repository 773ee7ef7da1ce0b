"""The budget of the work in progress: a deadline that every backend call made for it inherits.

    with budget.within(5.0):                 # a request's budget, set once where it starts
        await cache.get(key)                 # each call: the smaller of its own timeout and what is left
        await redis.get(key)

Rules of this file:
- The deadline lives in a ContextVar: the calls made inside ``within`` see it,
  and so do the tasks they spawn (a task copies the context it was made in).
  A budget inside a budget can only shorten it.
- A driver asks ``limit(own_timeout_s)`` before a call: its own timeout, or what
  is left of the budget if that is less.  With nothing left it raises
  ``BudgetExhausted`` (a ``BackendTimeout``) before anything is sent.
- Outside any budget nothing changes: ``limit(t) == t``, at the cost of one
  ContextVar lookup.
- Time is ``time.monotonic()``; deadlines are absolute monotonic seconds.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

from drivers.errors import BackendTimeout

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("budget_deadline", default=None)
_monotonic = time.monotonic


class BudgetExhausted(BackendTimeout):
    """The work's budget ran out before (or while) a backend call could be made."""


def deadline() -> float | None:
    """The current deadline (monotonic seconds), or None outside any budget."""
    return _deadline.get()


def remaining() -> float | None:
    """Seconds left of the current budget (may be negative), or None outside any budget."""
    end = _deadline.get()
    return None if end is None else end - _monotonic()


def limit(own_timeout_s: float, backend: str = "unknown") -> float:
    """The timeout a call may use: ``own_timeout_s``, or what is left of the budget if that is less.

    ``BudgetExhausted`` (naming ``backend``) when nothing is left.
    """
    end = _deadline.get()
    if end is None:
        return own_timeout_s
    left = end - _monotonic()
    if left <= 0:
        raise BudgetExhausted(f"{backend}: the request's time budget ran out before this call", backend=backend)
    return left if left < own_timeout_s else own_timeout_s


@contextmanager
def within(seconds: float) -> Iterator[float]:
    """Run the block with a budget of ``seconds`` (or less, inside a shorter one); yields the deadline."""
    end = _monotonic() + seconds
    outer = _deadline.get()
    if outer is not None and outer < end:
        end = outer
    token = _deadline.set(end)
    try:
        yield end
    finally:
        _deadline.reset(token)


def start(seconds: float) -> contextvars.Token[float | None]:
    """Set a budget for the rest of the current task (a request handler's); ``stop(token)`` ends it."""
    end = _monotonic() + seconds
    outer = _deadline.get()
    return _deadline.set(end if outer is None or end < outer else outer)


def stop(token: contextvars.Token[float | None]) -> None:
    """End a budget set by ``start`` (a no-op outside the context that set it, which ends with its task)."""
    try:
        _deadline.reset(token)
    except (ValueError, RuntimeError):
        pass
