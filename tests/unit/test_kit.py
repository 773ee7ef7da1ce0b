"""The parts the pumps are built from (drivers.kit) and the retry module, on their own."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

from drivers.errors import BackendTimeout, BackendUnavailable, DriverError
from drivers.kit import Closer, Outbox, State, fail_all
from drivers.retry import Backoff, Retrier, RetryPolicy, reconnect
from tests.support.fakes import ClockLoop, FakeTransport, Peer


@pytest.fixture
def loop() -> Iterator[ClockLoop]:
    loop = ClockLoop()
    yield loop
    loop.close()


# -- states -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "allowed"), [
    ([State.HANDSHAKING, State.READY], True),
    ([State.READY], True),
    ([State.READY, State.HANDSHAKING], False),      # nothing goes backwards
    ([State.HANDSHAKING, State.HANDSHAKING], False),
])
def test_only_the_transitions_in_the_table_are_allowed(loop: ClockLoop, path: list[State], allowed: bool) -> None:
    life = loop.run(lambda: Closer("test"))
    *ok, last = path
    for state in ok:
        life.advance(state)
    if allowed:
        life.advance(last)
        assert life.state is last
    else:
        with pytest.raises(RuntimeError, match=f"no transition from {ok[-1].value} to {last.value}"):
            life.advance(last)


def test_closed_is_final_and_keeps_its_first_reason(loop: ClockLoop) -> None:
    life = loop.run(lambda: Closer("test"))
    first, second = BackendUnavailable("first"), BackendTimeout("second")
    assert life.close(first) is True
    assert life.close(second) is False
    assert life.reason is first and life.closed
    with pytest.raises(RuntimeError):
        life.advance(State.READY)
    loop.run(life.wait_closed)          # returns at once


def test_fail_all_gives_each_waiter_its_own_exception_and_skips_finished_ones(loop: ClockLoop) -> None:
    futures = loop.run(lambda: [loop.create_future() for _ in range(4)])
    futures[0].set_result("answered")
    failed = fail_all(futures, lambda: BackendUnavailable("gone"))
    assert failed == 3 and futures[0].result() == "answered"
    errors = [f.exception() for f in futures[1:]]
    assert all(isinstance(e, BackendUnavailable) for e in errors) and len({id(e) for e in errors}) == 3


# -- the outbox -------------------------------------------------------------------------------------

def test_writes_of_one_iteration_are_joined_and_nothing_is_written_after_close(loop: ClockLoop) -> None:
    peer = Peer()
    out: Outbox[int] = loop.run(lambda: Outbox(loop))
    out.transport = FakeTransport(loop, asyncio.Protocol(), peer)
    loop.run(lambda: [out.write(b"a"), out.write(bytearray(b"b")), out.write(b"c")])
    loop.settle()
    assert peer.writes == [b"abc"] and out.writes == 1
    loop.run(lambda: (out.write(b"lost"), out.close()))   # closed before the iteration's flush
    loop.settle()
    assert peer.writes == [b"abc"]


def test_a_write_only_outbox_refuses_deadlines(loop: ClockLoop) -> None:
    out: Outbox[int] = loop.run(lambda: Outbox(loop))
    with pytest.raises(TypeError, match="only batches writes"):
        out._expire(1)
    with pytest.raises(TypeError, match="exactly one of done= and alive="):
        Outbox(loop, 1.0, expire=lambda key: None)


def test_answered_requests_are_forgotten_and_the_sweep_stops_when_none_wait(loop: ClockLoop) -> None:
    pending: set[int] = set()
    expired: list[int] = []
    out: Outbox[int] = loop.run(lambda: Outbox(loop, 1.0, alive=pending.__contains__, expire=expired.append))
    for key in range(100):
        pending.add(key)
        assert loop.run(lambda k=key: out.request(b"x", k)) is (key == 0)   # only the first starts the sweep
    pending.clear()                      # all answered
    loop.advance(0.06)
    assert not out.sweeping and not expired


def test_a_peer_that_stops_answering_is_reported_stuck_once_quiet_for_long_enough(loop: ClockLoop) -> None:
    stuck: list[float] = []
    out: Outbox[int] = loop.run(lambda: Outbox(loop, 0.2, done=lambda key: False, expire=lambda key: None,
                                               stuck_after_s=0.4, on_stuck=stuck.append))
    for _ in range(6):                    # for 0.6 s a request every 0.1 s, each answered: alive
        loop.run(lambda: out.request(b"x", 1))
        loop.advance(0.1)
        out.replied()
    assert stuck == []
    loop.run(lambda: out.request(b"x", 2))   # then one that is never answered ...
    loop.advance(0.39)
    assert stuck == []
    loop.advance(0.06)                    # ... reported within one sweep period of 0.4 s
    assert len(stuck) == 1 and 0.4 <= stuck[0] < 0.46


def test_requests_with_their_own_timeouts_are_watched_for_a_stuck_peer_too(loop: ClockLoop) -> None:
    stuck: list[float] = []
    out: Outbox[int] = loop.run(lambda: Outbox(loop, 10.0, done=lambda key: False, expire=lambda key: None,
                                               stuck_after_s=0.5, on_stuck=stuck.append))
    loop.run(lambda: out.request_own(b"x", 1, 0.1))
    loop.advance(0.6)
    assert len(stuck) == 1


def test_an_answered_connection_left_idle_is_never_stuck(loop: ClockLoop) -> None:
    stuck: list[float] = []
    out: Outbox[int] = loop.run(lambda: Outbox(loop, 0.2, done=lambda key: True, expire=lambda key: None,
                                               stuck_after_s=0.3, on_stuck=stuck.append))
    loop.run(lambda: out.request(b"x", 1))
    out.replied()
    loop.advance(2.0)
    assert stuck == [] and not out.sweeping


def test_own_timeouts_fire_in_deadline_order_whatever_the_send_order(loop: ClockLoop) -> None:
    pending = {1, 2, 3}
    expired: list[int] = []
    out: Outbox[int] = loop.run(lambda: Outbox(loop, 10.0, alive=pending.__contains__, expire=expired.append))
    loop.run(lambda: [out.request_own(b"x", 1, 0.3), out.request_own(b"x", 2, 0.1), out.request_own(b"x", 3, 0.2)])
    pending.discard(3)                   # answered in time
    loop.advance(0.15)
    assert expired == [2]
    loop.advance(0.2)
    assert expired == [2, 1]


def test_answered_own_timeout_requests_are_forgotten_as_new_ones_are_sent(loop: ClockLoop) -> None:
    # Requests inside a request budget all carry their own timeout: at thousands a second, keeping
    # the answered ones until their deadline held seconds of replies alive.
    pending: set[int] = set()
    out: Outbox[int] = loop.run(lambda: Outbox(loop, 10.0, alive=pending.__contains__, expire=lambda key: None))
    for key in range(1000):
        pending.add(key)
        loop.run(lambda k=key: out.request_own(b"x", k, 5.0 - k * 1e-4))
        pending.discard(key)             # answered before the next is sent
    assert out.deadlines <= 2
    pending.add(1000)
    loop.run(lambda: out.request_own(b"x", 1000, 5.0))
    assert out.deadlines == 1            # the one still waiting keeps its deadline


# -- retry (real time: the waits are a few milliseconds) ----------------------------------------------

def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    random.seed(7)
    backoff = Backoff(0.05, 1.0)
    for attempt in range(8):
        delays = [backoff.delay(attempt) for _ in range(500)]
        cap = min(1.0, 0.05 * 2 ** attempt)
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.9 and min(delays) < cap * 0.1   # the whole range, not a fixed step


def test_a_policy_of_n_attempts_waits_n_minus_one_times() -> None:
    assert len(list(RetryPolicy(3).delays())) == 2
    assert list(RetryPolicy(1).delays()) == []


async def test_the_retrier_tries_again_only_the_types_it_was_given() -> None:
    retrier = Retrier(RetryPolicy(3, Backoff(0.01, 0.01)), (BackendUnavailable,))
    outcomes: list[object] = [BackendUnavailable("lost"), "ok"]

    async def op() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    assert await retrier.again(BackendUnavailable("first"), op) == "ok"
    assert retrier.retries == 2
    with pytest.raises(BackendTimeout):  # a timeout is not retried: the command may still run
        await retrier.again(BackendTimeout("slow"), op)
    assert retrier.retries == 2


async def test_the_retrier_raises_the_last_failure_and_stops_when_told() -> None:
    calls = 0

    async def always_lost() -> None:
        nonlocal calls
        calls += 1
        raise BackendUnavailable(f"lost {calls}")

    retrier = Retrier(RetryPolicy(3, Backoff(0.01, 0.01)), (BackendUnavailable,))
    with pytest.raises(BackendUnavailable, match="lost 2"):
        await retrier.again(BackendUnavailable("lost 0"), always_lost)
    stopped = Retrier(RetryPolicy(5), (BackendUnavailable,), give_up=lambda: True)
    with pytest.raises(BackendUnavailable, match="first"):
        await stopped.again(BackendUnavailable("first"), always_lost)
    assert calls == 2 and stopped.retries == 0


async def test_reconnect_reports_failures_until_one_attempt_succeeds() -> None:
    failures: list[tuple[int, str]] = []
    attempts = iter([BackendUnavailable("refused"), BackendTimeout("slow"), "connected"])

    async def open_() -> str:
        outcome = next(attempts)
        if isinstance(outcome, DriverError):
            raise outcome
        return outcome

    result = await reconnect(open_, Backoff(0.01, 0.05), retry_on=(DriverError,), stop=lambda: False,
                             on_failure=lambda n, exc: failures.append((n, str(exc))))
    assert result == "connected" and failures == [(1, "refused"), (2, "slow")]


async def test_reconnect_returns_none_when_its_owner_stops_it() -> None:
    async def never() -> str:
        raise BackendUnavailable("refused")

    tries: list[int] = []
    assert await reconnect(never, Backoff(0.01, 0.01), retry_on=(BackendUnavailable,),
                           stop=lambda: len(tries) >= 3, on_failure=lambda n, e: tries.append(n)) is None
    assert tries == [1, 2, 3]
