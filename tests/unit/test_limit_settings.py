"""The adaptive limit's settings (docs/overload.md, "Settings") on a virtual clock, each checked by the exact
step it makes once the slow start has ended (the first congested window ends it): a window that held
calls back and saw no congestion adds ``increase`` or the limit's square root, whichever is more; a
congested one multiplies the limit by ``backoff``; the event loop running later than ``lag_target_s``
is congestion.

``LimitConfig`` is the ``limit`` section of MySQL, MongoDB and Ignite alike (``<backend>.limit.*``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import pytest

from drivers import limits
from drivers.limits import LimitConfig, Limiter
from tests.support.fakes import ClockLoop
from tests.unit.test_limits import take

WINDOW_S = 0.05


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClockLoop]:
    loop = ClockLoop()
    # Work that "blocks the loop" here moves the virtual clock: it is the loop's own work, on the
    # CPU all along, as the loop's lag sampler counts it (drivers.limits.LoopLag).
    monkeypatch.setattr(limits, "_cpu_time", loop.time)
    yield loop
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.settle()
    loop.close()


def window(loop: ClockLoop, limiter: Limiter, blocked_s: float = 0.0) -> float:
    """One window of 10 ms calls with more callers than slots (the loop blocked ``blocked_s`` at its start);
    every call with a slot then ends, the others give up.  The limit's change at the window's end."""
    tasks = [take(loop, limiter) for _ in range(int(limiter.limit) + 3)]
    if blocked_s:
        loop.call_soon(lambda: setattr(loop, "now", loop.now + blocked_s))
    loop.advance(WINDOW_S - 0.01)
    began = limiter.limit
    loop.advance(0.02)                               # the calls end just past the window
    ended: set[asyncio.Task[float]] = set()
    while done := [t for t in tasks if t.done() and not t.cancelled() and t not in ended]:
        for task in done:                            # (a release hands the slot to a waiter: it ends next)
            loop.run(lambda t=task: limiter.release(t.result()))
            ended.add(task)
        loop.settle()
    for task in tasks:
        task.cancel()
    loop.settle()
    return limiter.limit - began


def limiter_of(loop: ClockLoop, **settings: float) -> Limiter:
    config = LimitConfig(initial=16, min=1, max=512, window_s=WINDOW_S, **settings)   # type: ignore[arg-type]
    limiter = loop.run(lambda: Limiter("test", config, wait_unbudgeted_s=60.0))
    window(loop, limiter)                            # the first window only starts the watch
    window(loop, limiter, blocked_s=0.06)            # congested (over every lag target here): the slow start ends
    return limiter


@pytest.mark.parametrize("increase", [1.0, 5.0])
def test_a_window_that_held_calls_back_without_congestion_adds_increase_or_the_limits_square_root(
        loop: ClockLoop, increase: float) -> None:
    limiter = limiter_of(loop, increase=increase)    # the limit is about 14 here: its square root about 3.8
    for _ in range(3):
        before = limiter.limit
        assert window(loop, limiter) == pytest.approx(max(increase, math.sqrt(before)))


@pytest.mark.parametrize("backoff", [0.5, 0.8])
def test_a_congested_window_multiplies_the_limit_by_backoff(loop: ClockLoop, backoff: float) -> None:
    limiter = limiter_of(loop, backoff=backoff)
    before = limiter.limit
    window(loop, limiter, blocked_s=0.03)            # the loop 25 ms late: over the 5 ms target
    assert limiter.limit == pytest.approx(before * backoff)


@pytest.mark.parametrize(("lag_target_s", "congested"), [(0.005, True), (0.02, True), (0.04, False)])
def test_the_loop_later_than_lag_target_s_is_congestion(loop: ClockLoop, lag_target_s: float,
                                                        congested: bool) -> None:
    limiter = limiter_of(loop, lag_target_s=lag_target_s, backoff=0.5, increase=2.0)
    before = limiter.limit
    window(loop, limiter, blocked_s=0.03)            # 25 ms late
    assert limiter.limit == pytest.approx(before * 0.5 if congested else before + max(2.0, math.sqrt(before)))
