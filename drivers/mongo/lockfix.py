"""A fix for PyMongo's condition wait on Python 3.11: a task cancelled twice in it leaves the lock held.

Rules of this file:
- ``install()`` is idempotent and changes nothing on Python 3.12 and later, where
  ``asyncio.wait_for`` awaits in the caller's task (it is built on ``asyncio.timeout``).
- It replaces one PyMongo function, ``_async_cond_wait``, in the modules that imported it (the
  connection pool and the topology); ``tests/unit/test_mongo_lockfix.py`` checks that they still
  import it under that name and that the defect and the fix are what this header says.

The defect.  PyMongo waits for a free connection (and for server selection) with
``asyncio.wait_for(condition.wait(), timeout)``.  On Python 3.11 ``wait_for`` runs
``condition.wait()`` in a task of its own.  Cancelled, it cancels that task and waits for it;
``condition.wait()`` then takes the lock back before it ends.  A second cancellation that arrives
while ``wait_for`` waits for it leaves ``wait_for`` at once: the caller's ``async with condition``
releases a lock it does not hold (``RuntimeError: Lock is not acquired``, or it frees another
task's hold), and the inner task takes the lock a moment later and ends holding it, for good.
Every later checkout then waits on that lock forever.  A request cancelled by its client while
its budget's timeout fires is cancelled twice.

The fix waits in the caller's task under ``asyncio.timeout``: ``condition.wait()`` takes the lock
back before any cancellation leaves it, however many arrive.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pymongo.asynchronous.pool
import pymongo.asynchronous.topology
import pymongo.lock

PATCHED_MODULES = (pymongo.asynchronous.pool, pymongo.asynchronous.topology)
ORIGINAL = pymongo.lock._async_cond_wait      # PyMongo's own, kept for the test that shows the defect


async def cond_wait(condition: Any, timeout: float | None) -> bool:
    """PyMongo's ``_async_cond_wait``: True when notified, False when ``timeout`` passed first."""
    try:
        async with asyncio.timeout(timeout):
            return bool(await condition.wait())
    except TimeoutError:
        return False


def needed() -> bool:
    return sys.version_info < (3, 12)


def install() -> None:
    if not needed():
        return
    for module in (pymongo.lock, *PATCHED_MODULES):
        if getattr(module, "_async_cond_wait", None) is not None:
            module._async_cond_wait = cond_wait  # type: ignore[attr-defined]
