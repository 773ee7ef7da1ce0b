"""drivers.mongo.lockfix: PyMongo's condition wait, cancelled twice on Python 3.11, against ours.

The scenario is the one that hung the MongoDB cancellation test: a checkout waits on the pool's
condition; another task holds the lock when the waiter is cancelled, so the waiter's re-acquire
has to wait; a second cancellation arrives in the same loop iteration as the holder lets go.
PyMongo's own lock and condition classes are used, without a server: the defect is in the wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pymongo.lock import _async_create_condition, _async_create_lock

import drivers.mongo.client  # noqa: F401  (installs the fix, as any use of the driver does)
from drivers.mongo import lockfix

Wait = Callable[[Any, float | None], Awaitable[bool]]


async def _cancelled_twice(wait: Wait) -> tuple[BaseException | None, bool]:
    """How the waiter ended, and whether the lock is still held once every task has ended."""
    lock = _async_create_lock()
    condition = _async_create_condition(lock)

    async def waiter() -> None:
        async with condition:
            await wait(condition, 5.0)

    task = asyncio.ensure_future(waiter())
    await asyncio.sleep(0.01)
    await lock.acquire()
    task.cancel()
    await asyncio.sleep(0.01)          # the waiter now waits to take the lock back
    task.cancel()
    lock.release()
    try:
        await task
        ended: BaseException | None = None
    except BaseException as exc:       # what it ended with is the result
        ended = exc
    await asyncio.sleep(0.05)          # anything still running in the background has ended by now
    return ended, lock.locked()


@pytest.mark.skipif(not lockfix.needed(), reason="asyncio.wait_for awaits in the caller's task from Python 3.12")
async def test_pymongos_wait_keeps_the_lock_when_cancelled_twice() -> None:
    ended, held = await _cancelled_twice(lockfix.ORIGINAL)
    assert isinstance(ended, RuntimeError) and held


async def test_the_fixed_wait_gives_the_lock_back_however_often_it_is_cancelled() -> None:
    ended, held = await _cancelled_twice(lockfix.cond_wait)
    assert isinstance(ended, asyncio.CancelledError) and not held


async def test_the_fixed_wait_is_true_when_notified_and_false_at_its_timeout() -> None:
    condition = _async_create_condition(_async_create_lock())

    async def notify_soon() -> None:
        await asyncio.sleep(0.01)
        async with condition:
            condition.notify()

    notifier = asyncio.ensure_future(notify_soon())
    async with condition:
        assert await lockfix.cond_wait(condition, 5.0) is True
        assert await lockfix.cond_wait(condition, 0.01) is False
        assert condition.locked()       # held again after either outcome, as PyMongo expects
    await notifier


@pytest.mark.skipif(not lockfix.needed(), reason="nothing is replaced from Python 3.12")
def test_the_pool_and_the_topology_wait_with_the_fix() -> None:
    for module in lockfix.PATCHED_MODULES:
        assert module._async_cond_wait is lockfix.cond_wait, module.__name__  # type: ignore[attr-defined]
