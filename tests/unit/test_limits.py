"""The adaptive concurrency limit (drivers.limits), on a virtual clock: slots, the queue, shedding, AIMD."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

import pytest

from drivers import budget, limits
from drivers.errors import BackendBusy
from drivers.limits import LimitConfig, Limiter, watch_calls
from tests.support.fakes import ClockLoop

FIXED = LimitConfig(initial=2, min=1, max=2)     # a limit that cannot move: the queue's rules alone


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClockLoop]:
    loop = ClockLoop()
    # Work that "blocks the loop" here moves the virtual clock: it is the loop's own work, on the
    # CPU all along, as the loop's lag sampler counts it (drivers.limits.LoopLag).
    monkeypatch.setattr(limits, "_cpu_time", loop.time)
    yield loop
    for task in asyncio.all_tasks(loop):         # callers still waiting when the test ends
        task.cancel()
    loop.settle()
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
    for _ in range(100):                         # 1 s of 10 ms calls, always more callers than slots
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


def test_until_the_first_congestion_the_limit_doubles_then_it_grows_additively(loop: ClockLoop) -> None:
    config = LimitConfig(initial=4, min=1, max=512, window_s=0.05, increase=2.0, turn_slice_s=0)
    limiter = loop.run(lambda: Limiter("test", config, wait_unbudgeted_s=60.0))
    seen = []

    def window(blocked_s: float = 0.0) -> None:   # one window of calls, more callers than slots
        tasks = [take(loop, limiter) for _ in range(int(limiter.limit) + 4)]
        if blocked_s:
            loop.call_soon(lambda: setattr(loop, "now", loop.now + blocked_s))   # work that blocks the loop
        loop.advance(0.05)
        for task in tasks:
            if task.done():
                loop.run(lambda t=task: limiter.release(t.result()))
            else:
                task.cancel()
        loop.settle()
        seen.append(limiter.limit)

    for _ in range(4):
        window()
    assert seen[-1] >= 32                          # 4 -> 32 or more in four windows (additively: 12)
    window(blocked_s=0.02)                          # congestion: the slow start ends
    assert seen[-1] < seen[-2]
    for _ in range(3):
        window()
        assert seen[-1] - seen[-2] == pytest.approx(max(config.increase, math.sqrt(seen[-2])))   # additive now


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


def test_the_loop_late_from_its_own_work_is_lag_and_late_from_not_running_is_not() -> None:
    """On a real loop and the real CPU clock: 50 ms of work in a callback makes the loop late by
    about that much; 50 ms in which the loop's thread is not on the CPU (``time.sleep`` stands in
    for the machine running something else) makes it late by as much on the wall clock, and is not
    counted: admitting fewer calls would not shorten it."""
    async def main() -> tuple[float, float]:
        lag = limits.LoopLag(every_s=0.005)
        lag.watch()
        try:
            await asyncio.sleep(0.02)
            asyncio.get_running_loop().call_soon(time.sleep, 0.05)   # 50 ms not on the CPU
            await asyncio.sleep(0.02)
            not_running = lag.worst_since(1.0)
            spin_until = time.perf_counter() + 0.05
            while time.perf_counter() < spin_until:   # on the CPU: the loop's own work
                pass
            await asyncio.sleep(0.02)
            return not_running, lag.worst_since(1.0)
        finally:
            lag.unwatch()

    not_running, own_work = asyncio.run(main())
    # Below the default lag target (5 ms) for the sleep; well above it for the work (the bound
    # leaves room for a hypervisor taking part of the CPU during the 50 ms, which lowers the share).
    assert not_running < 0.005, not_running
    assert own_work > 0.02, own_work


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


# -- parking: waiting for room before starting (the service's read pause) ----------------------

def park(loop: ClockLoop, limiter: Limiter, timeout_s: float = 10.0) -> asyncio.Task[bool]:
    task = loop.run(lambda: asyncio.ensure_future(limiter.park(timeout_s)))
    loop.settle()
    return task


def test_parked_callers_wait_for_room_and_each_freed_slot_wakes_one_in_arrival_order(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_unbudgeted_s=10.0))
    assert limiter.has_room()
    first, second = take(loop, limiter), take(loop, limiter)
    assert not limiter.has_room()
    a, b, c = park(loop, limiter), park(loop, limiter), park(loop, limiter)
    assert not any(t.done() for t in (a, b, c)) and limiter.parked == 3
    loop.run(lambda: limiter.release(first.result()))
    loop.settle()
    assert a.result() is True and not b.done() and not c.done()
    take(loop, limiter)                          # the woken caller starts its call: the slot is used
    loop.run(lambda: limiter.release(second.result()))
    loop.settle()
    assert b.result() is True and not c.done() and limiter.parked == 1


def test_a_newcomer_parks_behind_those_already_parked_even_when_a_slot_is_free(loop: ClockLoop) -> None:
    config = LimitConfig(initial=2, min=1, max=3)
    limiter = loop.run(lambda: Limiter("test", config, wait_unbudgeted_s=10.0))
    first, _ = take(loop, limiter), take(loop, limiter)
    earlier = park(loop, limiter)
    limiter.limit = 3.0                          # room for one more call, but someone is parked already
    assert not limiter.has_room()
    newcomer = park(loop, limiter)               # parks behind; the room goes to the one parked first
    assert earlier.result() is True and not newcomer.done() and limiter.parked == 1
    take(loop, limiter)                          # which starts its call
    loop.run(lambda: limiter.release(first.result()))
    loop.settle()
    assert newcomer.result() is True and limiter.parked == 0


def test_a_woken_caller_that_starts_nothing_holds_its_room_only_briefly(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_unbudgeted_s=10.0))
    first, _ = take(loop, limiter), take(loop, limiter)
    gone, next_one = park(loop, limiter), park(loop, limiter)
    loop.run(lambda: limiter.release(first.result()))
    loop.settle()
    assert gone.result() is True and not next_one.done()   # woken; its connection then closes, say
    loop.advance(FIXED.window_s * 0.9)
    assert not next_one.done()
    loop.advance(FIXED.window_s * 0.2)           # the room held for it expires: the next is woken
    assert next_one.result() is True


def test_a_parked_caller_gives_up_after_its_timeout(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_unbudgeted_s=10.0))
    take(loop, limiter), take(loop, limiter)
    parked = park(loop, limiter, timeout_s=0.5)
    loop.advance(0.49)
    assert not parked.done()
    loop.advance(0.02)
    assert parked.result() is False and limiter.parked == 0 and limiter.parks == 1


def test_parked_callers_are_demand_held_back_so_the_limit_grows(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", LimitConfig(initial=4, min=1, max=64), wait_unbudgeted_s=60.0))
    for _ in range(100):                         # 1 s of 10 ms calls; callers beyond the limit park
        calls = [take(loop, limiter) for _ in range(math.ceil(limiter.limit))]
        waiting = [park(loop, limiter, 1.0) for _ in range(4)]
        assert limiter.parked == 4 and limiter.queued == 0
        loop.advance(0.01)
        for call in calls:
            loop.run(lambda t=call: limiter.release(t.result()))
        loop.settle()
        for task in waiting:
            task.cancel()
        loop.settle()
    assert limiter.limit > 30


def test_a_disabled_limit_never_parks_anyone(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", LimitConfig(enabled=False, initial=1, min=1, max=1)))
    take(loop, limiter), take(loop, limiter)
    assert park(loop, limiter).result() is True and limiter.parks == 0


def test_watch_calls_records_each_limiter_a_task_goes_through_once(loop: ClockLoop) -> None:
    mysql, mongo = (loop.run(lambda n=n: Limiter(n, FIXED)) for n in ("mysql", "mongo"))

    async def request() -> list[str]:
        seen = watch_calls()
        for limiter in (mysql, mongo, mysql):
            limiter.release(await limiter.acquire())
        return [limiter.backend for limiter in seen]

    async def elsewhere() -> None:                # another task, not watching: records nothing anywhere
        mongo.release(await mongo.acquire())

    watched = loop.run(lambda: asyncio.ensure_future(request()))
    loop.settle()
    assert watched.result() == ["mysql", "mongo"]
    loop.run(elsewhere)
    assert mysql.in_flight == mongo.in_flight == 0


def test_a_slot_handed_over_as_the_wait_runs_out_is_used_not_leaked(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_s=0.2, wait_unbudgeted_s=0.2))
    first, second = take(loop, limiter), take(loop, limiter)
    waiting = take(loop, limiter)
    # The slot frees in the same turn of the loop as the waiter's timeout fires, just before it.
    loop.call_at(loop.time() + 0.2 - 1e-10, lambda: limiter.release(first.result()))
    loop.advance(0.3)
    assert waiting.exception() is None           # it got the slot freed at the last moment
    loop.run(lambda: limiter.release(waiting.result()))
    loop.run(lambda: limiter.release(second.result()))
    assert limiter.in_flight == 0 and limiter.has_room()


def test_a_wake_that_comes_as_the_park_runs_out_still_counts(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("test", FIXED, wait_unbudgeted_s=10.0))
    first, _ = take(loop, limiter), take(loop, limiter)
    parked = park(loop, limiter, timeout_s=0.5)
    loop.call_at(loop.time() + 0.5 - 1e-10, lambda: limiter.release(first.result()))   # the same turn, just before
    loop.advance(0.6)
    assert parked.result() is True
