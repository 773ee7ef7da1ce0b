"""The connect ladder: one deadline around opening the socket and setting the connection up, errors typed.

Rules of this file:
- ``connect`` opens a TCP (or TLS) connection for a protocol object the pump
  made, runs its ``setup`` (handshake, AUTH, SELECT ...) under the same
  deadline, and returns the protocol ready for use.
- Whatever goes wrong, the half-open connection is aborted, and the caller gets
  a ``DriverError`` of the driver's own kinds: the deadline passed ->
  ``errors.timeout``; refused, reset, unreachable, TLS failure -> ``errors.unavailable``.
  DriverErrors raised by ``setup`` go through as they are; anything else
  (a bug, a cancellation) too.
- TCP_NODELAY is on for every connection: requests are small and written in
  batches already (``batching``), so Nagle's algorithm would only add latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol, TypeVar

from drivers.errors import DriverError


class ErrorKinds(NamedTuple):
    """How a driver spells its connection failures: each builds the error from a message."""

    unavailable: Callable[[str], DriverError]
    timeout: Callable[[str], DriverError]


class Abortable(Protocol):
    def abort(self) -> None: ...


P = TypeVar("P", bound=Abortable)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on the transport's socket (if it has one)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def connect(protocol: P, host: str, port: int, *, timeout_s: float, errors: ErrorKinds, where: str,
                  ssl: Any = None, setup: Callable[[P], Awaitable[Any]] | None = None,
                  what: str = "connection") -> P:
    """Connect ``protocol`` to ``host:port`` and run ``setup(protocol)``, all within ``timeout_s``."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            await loop.create_connection(lambda: protocol, host, port, ssl=ssl)  # type: ignore[arg-type,return-value,type-var]
            if setup is not None:
                await setup(protocol)
    except BaseException as exc:
        protocol.abort()
        if isinstance(exc, DriverError):
            raise
        if isinstance(exc, TimeoutError):
            raise errors.timeout(f"{where}: no {what} within {timeout_s:g} s") from None
        if isinstance(exc, OSError):
            reason = exc.strerror or str(exc) or type(exc).__name__
            if ssl is not None and not isinstance(exc, ConnectionRefusedError):
                reason += " during the TLS handshake (does this port serve TLS?)"
            raise errors.unavailable(f"{where}: {reason}") from exc
        raise
    return protocol
