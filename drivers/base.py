"""The lifecycle every managed client shares, and the one place errors are converted.

A managed client is built without I/O, then::

    await client.start()        # connect / fill the pool; raises a DriverError
    await client.ping()         # one real round trip; returns seconds taken
    client.stats()              # plain data for metrics and /readyz
    await client.aclose()       # idempotent; safe after a failed start

``async with client:`` does start and aclose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from drivers.errors import DriverError


@runtime_checkable
class ManagedClient(Protocol):
    """What the service needs of every backend client."""

    name: str

    async def start(self) -> None: ...

    async def ping(self) -> float: ...

    def stats(self) -> dict[str, Any]: ...

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
