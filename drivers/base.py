"""What every managed client shares: its lifecycle, its call boundary (observed and counted), its stats shape.

A managed client is built without I/O, then::

    await client.start()        # connect / fill the pool; raises a DriverError
    await client.ping()         # one real round trip; returns seconds taken
    client.stats()              # ClientStats: the same keys for every client
    await client.aclose()       # idempotent; safe after a failed start

``async with client:`` does start and aclose.

Every call a client makes to its backend crosses one boundary, ``Calls``: it is
counted (requests, in flight, errors by kind) and, when an observer is attached
(``client.calls.observer = fn``), reported as ``fn(backend, op, seconds, error)``
— the one hook a service connects to its metrics.  With no observer the
boundary does not read the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Protocol, Self, TypedDict, runtime_checkable

from drivers.errors import BackendTimeout, BackendUnavailable, DriverError

Observer = Callable[[str, str, float, DriverError | None], None]
"""``observer(backend, op, seconds, error)``: one finished call; ``error`` is None on success."""


def error_kind(exc: DriverError) -> str:
    """``timeout``, ``unavailable`` or ``error``: the group an error belongs to, for metrics."""
    if isinstance(exc, BackendTimeout):
        return "timeout"
    if isinstance(exc, BackendUnavailable):
        return "unavailable"
    return "error"


class Calls:
    """The boundary every call of one client crosses: counters, and the observer hook.

    ``start()`` before the call, ``end(op, began, error)`` after it (also when it
    failed); anything that is not a ``DriverError`` (a cancellation, a bug) is
    counted as finished, not as an error of the backend.
    """

    __slots__ = ("backend", "errors", "in_flight", "observer", "requests", "timeouts")

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.observer: Observer | None = None
        self.requests = 0
        self.in_flight = 0
        self.errors = 0
        self.timeouts = 0

    def start(self) -> float:
        self.in_flight += 1
        return time.perf_counter() if self.observer is not None else 0.0

    def end(self, op: str, began: float, error: BaseException | None = None) -> None:
        self.in_flight -= 1
        self.requests += 1
        failure = error if isinstance(error, DriverError) else None
        if failure is not None:
            self.errors += 1
            if isinstance(failure, BackendTimeout):
                self.timeouts += 1
        observer = self.observer
        if observer is not None:
            observer(self.backend, op, time.perf_counter() - began, failure)

    @contextmanager
    def call(self, op: str) -> Iterator[None]:
        """``with calls.call("find"):`` — for the slower clients; hot paths inline start/end."""
        began = self.start()
        try:
            yield
        except BaseException as exc:
            self.end(op, began, exc)
            raise
        self.end(op, began)


class ClientStats(TypedDict):
    """The one shape of ``stats()``: zero where a counter does not apply to a client."""

    backend: str
    address: str
    connected: bool          # at least one live connection
    in_flight: int           # calls started and not finished
    requests: int            # calls finished
    errors: int              # calls that ended in a DriverError
    timeouts: int            # ... of which in a BackendTimeout
    late_replies: int        # replies that came after their caller gave up (dropped)
    reconnects: int          # connections opened again after one was lost
    retries: int             # calls sent again under the retry policy
    pool_in_use: int         # pooled connections lent out
    pool_idle: int           # pooled connections waiting to be lent
    pool_max: int            # the pool's limit (0: no pool)
    detail: dict[str, Any]   # what only this client has (per-node state, histograms, ...)


NUMERIC_STATS = ("in_flight", "requests", "errors", "timeouts", "late_replies", "reconnects", "retries",
                 "pool_in_use", "pool_idle", "pool_max")


def client_stats(calls: Calls, *, address: str, connected: bool, late_replies: int = 0, reconnects: int = 0,
                 retries: int = 0, pool: tuple[int, int, int] = (0, 0, 0),
                 detail: dict[str, Any] | None = None) -> ClientStats:
    """A ``ClientStats`` from the boundary's counters and what the client adds; ``pool`` is (in use, idle, max)."""
    return ClientStats(backend=calls.backend, address=address, connected=connected, in_flight=calls.in_flight,
                       requests=calls.requests, errors=calls.errors, timeouts=calls.timeouts,
                       late_replies=late_replies, reconnects=reconnects, retries=retries, pool_in_use=pool[0],
                       pool_idle=pool[1], pool_max=pool[2], detail=detail or {})


@runtime_checkable
class ManagedClient(Protocol):
    """What the service needs of every backend client."""

    name: str
    address: str
    calls: Calls

    async def start(self) -> None: ...

    async def ping(self) -> float: ...

    def stats(self) -> ClientStats: ...

    async def aclose(self) -> None: ...


class LifecycleMixin:
    """``async with`` support and ping timing for a class with start/aclose/_ping."""

    name: str = "backend"

    async def start(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def _ping(self) -> None:
        raise NotImplementedError

    async def ping(self) -> float:
        """One real round trip to the backend; the seconds it took."""
        began = time.perf_counter()
        await self._ping()
        return time.perf_counter() - began

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


Converter = Callable[[BaseException], DriverError | None]


@contextmanager
def converted(convert: Converter) -> Iterator[None]:
    """Re-raise third-party exceptions as the driver's ``DriverError``.

    ``convert`` returns the DriverError to raise, or None to let the exception
    through unchanged (cancellation, programming errors).
    """
    try:
        yield
    except DriverError:
        raise
    except Exception as exc:
        mapped = convert(exc)
        if mapped is None:
            raise
        raise mapped from exc
