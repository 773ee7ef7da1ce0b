"""A connection's states, the transitions allowed between them, and how it ended.

Rules of this file:
- States: CONNECTING -> [HANDSHAKING ->] READY -> CLOSED.  CLOSED is final and
  reachable from every other state; nothing else goes backwards.  A transition
  not in the table is a bug in the pump and raises ``RuntimeError``.
- ``Closer.close(reason)`` is the one way into CLOSED: the first reason is kept
  (later ones are ignored), and ``wait_closed()`` returns from then on.
- ``fail_all`` fails every future still waiting, each with an exception of its
  own from ``error()``: one instance shared by many waiters would collect all
  their tracebacks.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable, Iterable
from typing import Any

from drivers.errors import DriverError


class State(enum.Enum):
    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    READY = "ready"
    CLOSED = "closed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.CONNECTING: frozenset({State.HANDSHAKING, State.READY, State.CLOSED}),
    State.HANDSHAKING: frozenset({State.READY, State.CLOSED}),
    State.READY: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


class Closer:
    """The state of one connection and, once CLOSED, why."""

    __slots__ = ("_done", "reason", "state", "where")

    def __init__(self, where: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.where = where
        self.state = State.CONNECTING
        self.reason: DriverError | None = None
        self._done = (loop or asyncio.get_running_loop()).create_future()

    def advance(self, to: State) -> None:
        """Move to ``to`` (not CLOSED: use ``close``); a transition outside the table is a bug."""
        if to is State.CLOSED or to not in TRANSITIONS[self.state]:
            raise RuntimeError(f"{self.where}: no transition from {self.state.value} to {to.value}")
        self.state = to

    def close(self, reason: DriverError) -> bool:
        """Move to CLOSED for ``reason``; False when it already was (the first reason stays)."""
        if self.state is State.CLOSED:
            return False
        self.state = State.CLOSED
        if self.reason is None:
            self.reason = reason
        if not self._done.done():
            self._done.set_result(None)
        return True

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    async def wait_closed(self) -> None:
        """Return once CLOSED (cancelling the waiter does not cancel anything else)."""
        await asyncio.shield(self._done)


def fail_all(futures: Iterable[asyncio.Future[Any]], error: Callable[[], BaseException]) -> int:
    """Fail every future not yet done with a fresh ``error()``; how many there were."""
    failed = 0
    for fut in futures:
        if not fut.done():
            fut.set_exception(error())
            failed += 1
    return failed
