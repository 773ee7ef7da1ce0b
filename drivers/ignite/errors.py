"""Errors raised by the Ignite thin client.

    DriverError                                  (drivers.errors)
    └── IgniteError
        ├── IgniteConnectionError                (BackendUnavailable) socket refused, reset, closed
        │   └── HandshakeError                   the node refused the handshake
        │       └── AuthenticationError          bad credentials (server code 2000)
        ├── IgniteTimeout                        (BackendTimeout, TimeoutError) connect/handshake/request deadline
        ├── RemoteProtocolError                  (ProtocolError) the node sent garbage, a truncated or
        │                                        oversized frame: the connection is dropped
        ├── IgniteInterfaceError                 (InterfaceError, ValueError) a misuse; nothing is sent
        │   ├── LocalProtocolError               a value or argument that cannot be encoded
        │   └── TransactionError                 a transaction used where it cannot be
        │       ├── TransactionNested            a task already in a transaction started another
        │       ├── TransactionNotOwned          a task other than the one that started it used it
        │       └── TransactionClosed            used after commit or rollback
        └── ServerError                          (BackendError) the node answered with a non-zero status
            ├── CacheDoesNotExist     1000
            ├── CacheExists           1001
            ├── TooManyCursors        1010
            ├── ResourceDoesNotExist  1011
            ├── SecurityViolation     1012
            ├── TxLimitExceeded       1020
            ├── TxNotFound            1021
            └── TransactionConflict   1     an optimistic transaction's commit met a conflicting write

This module imports only the standard library and ``drivers.errors``; the
sans-I/O protocol and codec packages raise from it.
"""

from __future__ import annotations

from drivers.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    DriverError,
    InterfaceError,
    ProtocolError,
)


class IgniteError(DriverError):
    """Root of every error raised by the Ignite client."""

    backend = "ignite"


class IgniteConnectionError(IgniteError, BackendUnavailable):
    """The node could not be reached, or the connection to it was lost."""


class HandshakeError(IgniteConnectionError):
    """The node refused the handshake (version, or credentials)."""

    def __init__(self, message: str, *, server_version: tuple[int, int, int] | None = None,
                 code: int | None = None) -> None:
        super().__init__(message)
        self.server_version = server_version
        self.code = code


class AuthenticationError(HandshakeError):
    """The node rejected the username or password (server code 2000)."""


class IgniteTimeout(IgniteError, BackendTimeout):
    """A connect, handshake or request deadline passed."""


class RemoteProtocolError(IgniteError, ProtocolError):
    """The peer sent bytes that do not parse: garbage, truncated or oversized frames."""


class IgniteInterfaceError(IgniteError, InterfaceError):
    """The client was asked for something it cannot do (a local mistake; nothing is sent)."""


class LocalProtocolError(IgniteInterfaceError):
    """The caller asked for something that cannot be encoded."""


class TransactionError(IgniteInterfaceError):
    """A transaction was used where it cannot be."""


class TransactionNested(TransactionError):
    """The task is already in a transaction: Ignite transactions do not nest."""


class TransactionNotOwned(TransactionError):
    """A task other than the one that started the transaction tried to use it."""


class TransactionClosed(TransactionError):
    """The transaction was already committed or rolled back."""


class ServerError(IgniteError, BackendError):
    """The node answered a request with a non-zero status code."""

    status: int = 1

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return f"{self.args[0]} (status {self.status})"


class CacheDoesNotExist(ServerError):
    status = 1000


class CacheExists(ServerError):
    status = 1001


class TooManyCursors(ServerError):
    status = 1010


class ResourceDoesNotExist(ServerError):
    status = 1011


class SecurityViolation(ServerError):
    status = 1012


class TxLimitExceeded(ServerError):
    status = 1020


class TxNotFound(ServerError):
    status = 1021


class TransactionConflict(ServerError):
    """The node refused to commit an optimistic transaction: another write conflicted (retry it).

    Ignite answers with the generic status 1 and a "read/write conflict" message.
    """


_BY_STATUS: dict[int, type[ServerError]] = {
    cls.status: cls
    for cls in (CacheDoesNotExist, CacheExists, TooManyCursors, ResourceDoesNotExist,
                SecurityViolation, TxLimitExceeded, TxNotFound)
}


def server_error(status: int, message: str) -> ServerError:
    """The ``ServerError`` subclass for a status code, carrying the server's message."""
    return _BY_STATUS.get(status, ServerError)(message, status)
