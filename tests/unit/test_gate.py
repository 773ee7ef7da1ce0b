"""A connection's read gate (app.http.gate) on a virtual clock: the callback form the fast transport uses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from app.http.gate import ReadGate
from drivers.limits import LimitConfig, Limiter
from tests.support.fakes import ClockLoop

FIXED = LimitConfig(initial=1, min=1, max=1, turn_slice_s=0)   # one slot; no turns (they are not this file's)


@pytest.fixture
def loop() -> Iterator[ClockLoop]:
    loop = ClockLoop()
    yield loop
    loop.settle()
    loop.close()


def full(loop: ClockLoop, name: str) -> tuple[Limiter, float]:
    """A limiter whose one slot is taken; and when that call began (to release it)."""
    limiter = loop.run(lambda: Limiter(name, FIXED))
    return limiter, loop.run(limiter.acquire)


def test_an_open_gate_says_so_and_never_calls_back(loop: ClockLoop) -> None:
    limiter = loop.run(lambda: Limiter("mysql", FIXED))
    gate = ReadGate(max_pause_s=1.0)
    gate.remember([limiter])
    called: list[float] = []
    assert loop.run(lambda: gate.when_open(called.append)) is True
    loop.advance(2.0)
    assert called == [] and limiter.parks == 0


def test_the_callback_runs_once_every_remembered_limiter_has_had_room(loop: ClockLoop) -> None:
    (mysql, mysql_began), (mongo, mongo_began) = full(loop, "mysql"), full(loop, "mongo")
    gate = ReadGate(max_pause_s=1.0)
    gate.remember([mysql, mongo])
    called: list[float] = []
    assert loop.run(lambda: gate.when_open(called.append)) is False
    assert mysql.parked == 1 and mongo.parked == 0
    loop.advance(0.1)
    loop.run(lambda: mysql.release(mysql_began))
    loop.settle()
    assert called == [] and mongo.parked == 1         # MySQL had room; now it waits for MongoDB's
    loop.advance(0.2)
    loop.run(lambda: mongo.release(mongo_began))
    loop.settle()
    assert called == [pytest.approx(0.3)]


def test_the_gate_opens_after_max_pause_s_without_room(loop: ClockLoop) -> None:
    (mysql, _), (mongo, _) = full(loop, "mysql"), full(loop, "mongo")
    gate = ReadGate(max_pause_s=1.0)
    gate.remember([mysql, mongo])
    called: list[float] = []
    loop.run(lambda: gate.when_open(called.append))
    loop.advance(0.99)
    assert called == []
    loop.advance(0.02)
    assert called == [pytest.approx(1.0)]             # MongoDB's limit is not waited for: the pause is used up
    assert mysql.park_timeouts == 1 and mongo.parks == 0 and mysql.parked == 0


def test_the_callback_runs_in_the_context_it_was_given(loop: ClockLoop) -> None:
    import contextvars
    where: contextvars.ContextVar[str] = contextvars.ContextVar("where", default="handler")
    mysql, began = full(loop, "mysql")
    gate = ReadGate(max_pause_s=1.0)
    gate.remember([mysql])
    context = contextvars.Context()
    context.run(where.set, "connection")
    seen: list[str] = []
    loop.run(lambda: gate.when_open(lambda _: seen.append(where.get()), context))
    loop.run(lambda: mysql.release(began))
    loop.settle()
    assert seen == ["connection"]


def two_waiting(loop: ClockLoop, limiter: Limiter, max_pause_s: float) -> tuple[ReadGate, list[float], list[float]]:
    """Two connections' gates waiting on ``limiter``, in order: the first gate, and what each was called with."""
    gates = [ReadGate(max_pause_s), ReadGate(max_pause_s)]
    calls: list[list[float]] = [[], []]
    for gate, called in zip(gates, calls, strict=True):
        gate.remember([limiter])
        loop.run(lambda g=gate, c=called: g.when_open(c.append))
    return gates[0], calls[0], calls[1]


def test_a_cancelled_wait_never_calls_back_and_leaves_the_line(loop: ClockLoop) -> None:
    mysql, began = full(loop, "mysql")
    gate, called, others = two_waiting(loop, mysql, max_pause_s=1.0)
    gate.cancel()                                     # its connection closed while it waited
    loop.run(lambda: mysql.release(began))
    loop.settle()
    assert called == [] and others == [pytest.approx(0.0)]   # the room went to the next one in line
    loop.advance(2.0)
    assert called == []


def test_a_wait_cancelled_after_its_wake_passes_the_room_on(loop: ClockLoop) -> None:
    mysql, began = full(loop, "mysql")
    gate, called, others = two_waiting(loop, mysql, max_pause_s=5.0)

    def release_then_close() -> None:
        mysql.release(began)       # wakes the first gate: its callback is due in this loop turn ...
        gate.cancel()              # ... but its connection closes first

    loop.run(release_then_close)
    loop.settle()
    assert called == [] and len(others) == 1          # at once, not after the woken caller's hold expires
    assert not asyncio.all_tasks(loop)
