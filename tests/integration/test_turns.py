"""Calls through a backend limit take turns with the rest of the loop (drivers.turns), on real servers.

50 concurrent MySQL queries, each followed by 1 ms of the caller's own work on
the answer: the answers arrive while that work runs, so without turns the next iteration would run
every waiting caller's work back to back.  With the default settings, each iteration runs about a
slice (1 ms) of it and then polls: a few callers per iteration, never all of them, so the 50
callers' work is spread over about as many iterations (46-50 here), against 7-8 without turns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.settings import Settings
from drivers.ignite import Client as IgniteClient
from drivers.limits import Limiter
from drivers.mongo import MongoClient
from drivers.mysql import MySQLClient, MySQLConfig
from tests.support.iterations import Iterations

CALLERS = 50
WORK_S = 0.001


async def _per_iteration(call: Callable[[], Awaitable[object]]) -> tuple[int, int]:
    """The most callers whose work on their answer ran in one loop iteration, and over how many
    iterations the callers' work was spread."""
    iterations = Iterations(asyncio.get_running_loop())
    ran: dict[int, int] = {}

    async def caller() -> None:
        await call()
        ran[iterations.count] = ran.get(iterations.count, 0) + 1
        end = time.perf_counter() + WORK_S
        while time.perf_counter() < end:
            pass

    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    iterations.running = False
    return max(ran.values()), len(ran)


def _without_turns(config: Any) -> Any:
    return dataclasses.replace(config, limit=dataclasses.replace(config.limit, turn_slice_s=0))


async def _mysql(config: MySQLConfig) -> tuple[int, int, int]:
    async with MySQLClient(config) as mysql:
        await asyncio.gather(*(mysql.fetchone("SELECT 1") for _ in range(20)))   # the pool's connections open
        most, spread = await _per_iteration(lambda: mysql.fetchone("SELECT SLEEP(0.01)"))
        return most, spread, mysql.limiter.turn_waits


async def test_mysql_answers_are_worked_on_a_slice_at_a_time(settings: Settings) -> None:
    """Default settings: the callers' work is spread over at least half as many iterations as there
    are callers, a few at most in one (1 in most runs; up to 6 seen: the line releases more per
    iteration after cheap releases, the turns taken before the calls, and a count may straddle two
    iterations).  With ``turn_slice_s=0`` the answers that arrive together are all worked on in one
    iteration: 10-13 callers in the largest, the 50 over 7-8 iterations (here, on a machine running
    at a third of its speed; fewer, larger ones on a faster one)."""
    most, spread, waits = await _mysql(settings.mysql)
    assert spread >= CALLERS // 2 and most <= 8 and waits > 0, (most, spread, waits)
    most, spread, waits = await _mysql(_without_turns(settings.mysql))
    assert spread <= CALLERS // 3 and most >= 6 and waits == 0, (most, spread, waits)


async def test_mongo_and_ignite_calls_take_a_turn_before_and_after(settings: Settings,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """MongoDB's answers do not arrive together here (PyMongo reads a reply in several steps), so
    this checks the rule itself: each call through the limit takes a turn before it starts and
    one when its answer is in (``Limiter.turn``, whose effect the MySQL test and
    ``tests/unit/test_turns.py`` show)."""
    turns: list[str] = []
    original = Limiter.turn

    def counted(self: Limiter) -> asyncio.Future[None] | None:
        turns.append(self.backend)
        return original(self)

    monkeypatch.setattr(Limiter, "turn", counted)
    client = MongoClient(settings.mongo)
    await client.start()
    try:
        items = client.collection("turns_test")
        await items.find_one({"_id": 0})
        await items.find_one({"_id": 0})
    finally:
        await client.aclose()
    assert turns.count("mongo") == 4
    async with IgniteClient(config=settings.ignite) as ignite, ignite.sql("SELECT 1") as rows:
        assert [row async for row in rows] == [[1]]
    assert turns.count("ignite") == 2
