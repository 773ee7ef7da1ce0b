"""Retry in one place: backoff, which failures are tried again, and the reconnect loop.

Rules of this file:
- ``Backoff`` is exponential with full jitter: attempt n (from 0) waits
  ``uniform(0, min(cap_s, base_s * 2**n))``.  Every driver uses it, for retries
  and for reconnects alike.
- ``RetryPolicy`` is data (how many attempts, which backoff); ``Retrier`` applies
  it, deciding by exception type: only the types it was built with are tried
  again.  Drivers call it only for operations that are safe to repeat (reads,
  idempotent writes); anything else fails on the first error.
- The fast path pays nothing: the caller makes the first attempt itself and
  hands the failure to ``Retrier.again``, which makes the others.
- Inside a budget (``drivers.budget``) no retry starts unless its wait ends
  before the budget does: the last failure is raised instead.
- ``reconnect`` opens a connection again and again, with backoff, until it
  succeeds or its owner says stop; failures of the listed types are reported
  and swallowed, anything else (a bug, a cancellation) goes through.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from drivers import budget

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap_s, base_s * 2**n))."""

    base_s: float = 0.05
    cap_s: float = 2.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.cap_s, self.base_s * (2 ** min(attempt, 30))))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often an operation that failed in a retryable way is tried: ``attempts`` counts the first try."""

    attempts: int = 3
    backoff: Backoff = field(default_factory=lambda: Backoff(0.02, 0.5))

    def delays(self) -> Iterator[float]:
        """The waits before each retry (``attempts - 1`` of them)."""
        for attempt in range(max(0, self.attempts - 1)):
            yield self.backoff.delay(attempt)


NO_RETRY = RetryPolicy(attempts=1)


class Retrier:
    """Applies a ``RetryPolicy`` to failures of the types in ``retry_on``; counts the retries it made.

    Usage, with the first attempt on the caller's fast path::

        try:
            return await send(payload)
        except retrier.retry_on as exc:
            return await retrier.again(exc, send, payload)

    ``give_up()`` is asked before each retry (a closed client stops retrying).
    """

    __slots__ = ("give_up", "policy", "retries", "retry_on")

    def __init__(self, policy: RetryPolicy, retry_on: tuple[type[BaseException], ...],
                 give_up: Callable[[], bool] | None = None) -> None:
        self.policy = policy
        self.retry_on = retry_on
        self.give_up = give_up
        self.retries = 0

    async def again(self, first: BaseException, op: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Try ``op(*args)`` again under the policy after ``first`` failed; the last failure if all do."""
        if not isinstance(first, self.retry_on):
            raise first
        last = first
        for delay in self.policy.delays():
            if self.give_up is not None and self.give_up():
                break
            left = budget.remaining()
            if left is not None and left <= delay:
                break
            await asyncio.sleep(delay)
            self.retries += 1
            try:
                return await op(*args)
            except self.retry_on as exc:
                last = exc
        raise last


async def reconnect(open_: Callable[[], Awaitable[T]], backoff: Backoff, *,
                    retry_on: tuple[type[BaseException], ...], stop: Callable[[], bool],
                    on_failure: Callable[[int, BaseException], None] | None = None) -> T | None:
    """``await open_()`` until it succeeds (its result) or ``stop()`` says so (None).

    Waits ``backoff.delay(n)`` before attempt n.  A failure of a type in ``retry_on``
    goes to ``on_failure(attempt, exc)`` and the loop goes on; others propagate.
    """
    attempt = 0
    while not stop():
        await asyncio.sleep(backoff.delay(attempt))
        attempt += 1
        if stop():
            return None
        try:
            return await open_()
        except retry_on as exc:
            if on_failure is not None:
                on_failure(attempt, exc)
    return None
