"""Async tests end at their timeout on uvloop too.

Rules of this file:
- Each coroutine test runs under ``asyncio.timeout`` of its own timeout (pytest-timeout's
  ``timeout`` marker, else the ``timeout`` ini value) less ``MARGIN_S``; at that deadline it is
  cancelled and fails, saying so, and the suite goes on.  A timeout of 0 means none, as for
  pytest-timeout.
- Sync tests are left to pytest-timeout, which stops them.

Why: pytest-timeout's default method raises from a SIGALRM handler.  Under uvloop that handler
runs inside the loop's own signal callback, which logs what it raises and goes on, so an async
test that waits forever was never stopped: the whole run stalled there
(``tests/test_timeouts.py`` shows both).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

MARGIN_S = 1.0


def timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and (marker.args or "timeout" in marker.kwargs):
        value = marker.args[0] if marker.args else marker.kwargs["timeout"]
    else:
        value = item.config.getini("timeout")
    return float(value or 0)


def bounded(test: Callable[..., Coroutine[Any, Any, Any]], seconds: float) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> Any:
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await test(*args, **kwargs)
        except TimeoutError:
            if deadline.expired():
                pytest.fail(f"the test did not end within {seconds:g} s and was cancelled", pytrace=False)
            raise
    return run


def bound_async_tests(items: list[pytest.Item]) -> None:
    for item in items:
        test = getattr(item, "obj", None)
        seconds = timeout_of(item)
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(test) and seconds > 0:
            item.obj = bounded(test, max(seconds - MARGIN_S, MARGIN_S))
