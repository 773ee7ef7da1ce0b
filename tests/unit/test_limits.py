"""The adaptive concurrency limit (drivers.limits), on a virtual clock: slots, the queue, shedding, AIMD."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from drivers import budget
from drivers.errors import BackendBusy
from drivers.limits import LimitConfig, Limiter
from tests.support.fakes import ClockLoop

FIXED = LimitConfig(initial=2, min=1, max=2)     # a limit that cannot move: the queue's rules alone


@pytest.fixture
def loop() -> Iterator[ClockLoop]:
    loop = ClockLoop()
    yield loop
    loop.close()


def take(loop: ClockLoop, limiter: Limiter) -> asyncio.Task[float]:
    task = loop.run(lambda: asyncio.ensure_future(limiter.acquire()))
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    loop.settle()
    return task


def test_no_more_calls_than_the_limit_and_freed_slots_go_in_arrival_order(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_unbudgeted_s=10.0))
    first, second, third, fourth = (take(loop, limiter) for _ in range(4))
    assert first.done() and second.done() and not third.done() and not fourth.done()
    assert (limiter.in_flight, limiter.queued) == (2, 2)
    loop.run(lambda: limiter.release(first.result()))
    loop.settle()
    assert third.done() and not fourth.done() and limiter.in_flight == 2


def test_inside_a_budget_a_call_waits_at_most_wait_s_then_is_turned_away(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_s=0.2, wait_unbudgeted_s=10.0))
    take(loop, limiter), take(loop, limiter)

    async def with_budget() -> float:
        with budget.within(5.0):
            return await limiter.acquire()

    waiting = loop.run(lambda: asyncio.ensure_future(with_budget()))
    loop.advance(0.19)
    assert not waiting.done()
    loop.advance(0.02)
    error = waiting.exception()
    assert isinstance(error, BackendBusy) and error.backend == "test" and error.retry_after_s >= 1
    assert (limiter.shed, limiter.in_flight, limiter.queued) == (1, 2, 0)


def test_a_short_budget_bounds_the_wait_below_wait_s(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_s=5.0))
    take(loop, limiter), take(loop, limiter)

    async def with_budget() -> float:
        with budget.within(0.05):
            return await limiter.acquire()

    waiting = loop.run(lambda: asyncio.ensure_future(with_budget()))
    loop.advance(0.06)
    assert isinstance(waiting.exception(), BackendBusy)


def test_work_without_a_budget_waits_longer(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_s=0.2, wait_unbudgeted_s=3.0))
    first = take(loop, limiter)
    take(loop, limiter)
    waiting = take(loop, limiter)
    loop.advance(2.0)
    assert not waiting.done()
    loop.run(lambda: limiter.release(first.result()))
    loop.settle()
    assert waiting.done() and waiting.exception() is None


def test_a_queue_that_cannot_clear_in_time_turns_a_caller_away_at_once(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_s=0.2, wait_unbudgeted_s=0.2))
    limiter.latency_s = 0.5                     # calls have been taking half a second
    take(loop, limiter), take(loop, limiter)
    take(loop, limiter)                          # one waiting: 1/2 x 0.5 s > 0.2 s for the next
    began = loop.time()
    late = take(loop, limiter)
    assert isinstance(late.exception(), BackendBusy) and loop.time() == began


def test_a_cancelled_waiter_passes_on_a_slot_handed_to_it(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_unbudgeted_s=10.0))
    first = take(loop, limiter)
    take(loop, limiter)
    doomed, next_in_line = take(loop, limiter), take(loop, limiter)
    loop.run(lambda: (limiter.release(first.result()), doomed.cancel()))   # handed over, then cancelled
    loop.settle()
    assert doomed.cancelled() and next_in_line.done() and limiter.in_flight == 2


def test_the_limit_grows_while_it_holds_calls_back_and_the_loop_keeps_up(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", LimitConfig(initial=4, min=1, max=64), wait_unbudgeted_s=60.0))
    for _ in range(50):                          # 0.5 s of 10 ms calls, always more callers than slots
        tasks = [take(loop, limiter) for _ in range(int(limiter.limit) + 4)]
        loop.advance(0.01)
        for task in tasks:
            if task.done():
                loop.run(lambda t=task: limiter.release(t.result()))
        loop.settle()
        for task in tasks:
            if not task.done():
                task.cancel()
        loop.settle()
    assert limiter.limit > 30


def test_the_limit_backs_off_when_the_event_loop_runs_late(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", LimitConfig(initial=32, min=4, max=64), wait_unbudgeted_s=60.0))
    for _ in range(20):
        tasks = [take(loop, limiter) for _ in range(40)]          # more callers than slots: the lag is watched
        loop.call_soon(lambda: setattr(loop, "now", loop.now + 0.02))   # 20 ms of work that blocks the loop
        loop.advance(0.06)
        for task in tasks:
            if task.done() and not task.cancelled():
                loop.run(lambda t=task: limiter.release(t.result()))
            else:
                task.cancel()
        loop.settle()
    assert limiter.limit < 16


def test_the_limit_backs_off_when_the_backend_slows_down(loop: ClockLoop) -> None:
    config = LimitConfig(initial=32, min=4, max=64, latency_tolerance=2.0, latency_slack_s=0.005)
    limiter = loop.run(lambda: Limiter("test", config, wait_unbudgeted_s=60.0))
    for latency in [0.01] * 100 + [0.1] * 20:    # calls took 10 ms, then 100 ms
        began = loop.run(limiter.acquire)
        loop.advance(latency)
        loop.run(lambda b=began: limiter.release(b))
    assert limiter.limit < 16


def test_a_disabled_limit_only_counts(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", LimitConfig(enabled=False, initial=1, min=1, max=1)))
    tasks = [take(loop, limiter) for _ in range(10)]
    assert all(t.done() for t in tasks) and limiter.in_flight == 10
