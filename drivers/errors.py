"""The one error root every driver in this package raises under.

    DriverError
    ├── BackendUnavailable   the backend cannot be reached or the connection was lost
    │   └── BackendBusy      no capacity for this call now (a pool exhausted, a limit reached):
    │                        nothing was sent; ``retry_after_s`` says when to try again
    ├── BackendTimeout       a deadline passed (also a builtin ``TimeoutError``); ``waited_s``
    │                        says how long the call waited, when the driver knows
    ├── BackendError         the backend answered with an error of its own
    ├── ProtocolError        the backend sent bytes that break the protocol (garbage, desync)
    └── InterfaceError       the caller asked for something that cannot be done: a misuse,
                             found before anything is sent (also a builtin ``ValueError``)

Each driver converts third-party exceptions at its boundary, so the service
only ever needs ``except DriverError`` and the groups above.  The first three
say the backend is slow or broken; ``ProtocolError`` says the peer broke the
rules; ``InterfaceError`` says the code calling the driver did (a service
answers it with 500, or 400 when the bad value came from the request).  The
Ignite client's own tree (``drivers.ignite.errors``) hangs under the same groups.
"""

from __future__ import annotations


class DriverError(Exception):
    """Root of every error raised by the drivers.

    ``backend`` names the backend ("mysql", "mongo", "redis", "ignite") so the
    service can say which one failed.
    """

    backend: str = "unknown"

    def __init__(self, message: str, *, backend: str | None = None) -> None:
        super().__init__(message)
        if backend is not None:
            self.backend = backend

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class BackendUnavailable(DriverError):
    """The backend could not be reached, or the connection to it was lost."""


class BackendBusy(BackendUnavailable):
    """No capacity for this call now: a pool had no free connection in time, or a concurrency limit
    was reached and the call could not wait for a slot within its budget.  Nothing was sent.
    """

    def __init__(self, message: str, *, backend: str | None = None, retry_after_s: float = 1.0) -> None:
        super().__init__(message, backend=backend)
        self.retry_after_s = retry_after_s


class BackendTimeout(DriverError, TimeoutError):
    """A connect or request deadline passed (the call's own, or the budget of the work it was for)."""

    waited_s: float | None = None

    def __init__(self, message: str, *, backend: str | None = None, waited_s: float | None = None) -> None:
        super().__init__(message, backend=backend)
        if waited_s is not None:
            self.waited_s = waited_s


class BackendError(DriverError):
    """The backend answered, with an error of its own (bad query, constraint, ...)."""


class ProtocolError(DriverError):
    """The backend sent bytes that do not follow the protocol; the connection was dropped."""


class InterfaceError(DriverError, ValueError):
    """The driver was asked for something it cannot do (a wrong argument, an unusable key, a value it cannot encode).

    Raised before any I/O; retrying the same call fails the same way.
    """
