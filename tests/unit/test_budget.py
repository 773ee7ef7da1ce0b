"""The work's time budget (drivers.budget): nested budgets only shorten, limits, exhaustion, inheritance."""

from __future__ import annotations

import asyncio
import time

import pytest

from drivers import budget
from drivers.budget import BudgetExhausted
from drivers.errors import BackendTimeout


def test_outside_a_budget_a_call_keeps_its_own_timeout() -> None:
    assert budget.deadline() is None and budget.remaining() is None
    assert budget.limit(7.5, "mysql") == 7.5


def test_inside_a_budget_a_call_gets_what_is_left_if_that_is_less() -> None:
    with budget.within(0.5):
        left = budget.limit(10.0, "mysql")
        assert 0.4 < left <= 0.5
        assert budget.limit(0.1, "mysql") == 0.1      # its own timeout when that is shorter


def test_a_nested_budget_can_only_shorten_the_outer_one() -> None:
    with budget.within(0.3) as outer:
        with budget.within(5.0) as inner:
            assert inner == outer
        with budget.within(0.1) as shorter:
            assert shorter < outer
        assert budget.deadline() == outer
    assert budget.deadline() is None


def test_a_spent_budget_refuses_the_call_naming_the_backend() -> None:
    with budget.within(0.01):
        time.sleep(0.02)
        with pytest.raises(BudgetExhausted, match="redis: the request's time budget ran out") as caught:
            budget.limit(5.0, "redis")
    assert isinstance(caught.value, BackendTimeout) and caught.value.backend == "redis"


async def test_tasks_started_inside_inherit_the_budget_and_others_do_not() -> None:
    seen: list[float | None] = []

    async def record() -> None:
        seen.append(budget.deadline())

    with budget.within(1.0) as end:
        inside = asyncio.create_task(record())
    outside = asyncio.create_task(record())
    await asyncio.gather(inside, outside)
    assert seen == [end, None]


def test_start_and_stop_set_and_end_a_budget_for_the_rest_of_a_task() -> None:
    token = budget.start(2.0)
    assert budget.remaining() is not None
    budget.stop(token)
    assert budget.deadline() is None
    budget.stop(token)     # ending it twice (or from elsewhere) is harmless
