"""MongoDB through PyMongo's native ``AsyncMongoClient`` (no thread pool, unlike Motor).

PyMongo still uses a thread underneath in one place: the TLS handshake.  Pool
occupancy is counted from PyMongo's connection-pool events (called on the loop).
"""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo import errors as merr
from pymongo.asynchronous.database import AsyncDatabase

from drivers.base import LifecycleMixin, converted
from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError


def _convert(exc: BaseException) -> DriverError | None:
    if isinstance(exc, merr.ServerSelectionTimeoutError):
        return BackendUnavailable(f"mongo: no server reachable ({exc})", backend="mongo")
    if isinstance(exc, merr.NetworkTimeout | merr.ExecutionTimeout | merr.WTimeoutError | TimeoutError):
        return BackendTimeout(f"mongo: deadline passed ({exc})", backend="mongo")
    if isinstance(exc, merr.ConnectionFailure | OSError):
        return BackendUnavailable(f"mongo: {exc}", backend="mongo")
    if isinstance(exc, merr.PyMongoError):
        return BackendError(f"mongo: {exc}", backend="mongo")
    return None


class _PoolCounter(monitoring.ConnectionPoolListener):
    """Connections open and checked out, from PyMongo's pool events."""

    def __init__(self) -> None:
        self.open = 0
        self.in_use = 0

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        self.open += 1

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        self.open = max(0, self.open - 1)

    def connection_checked_out(self, event: monitoring.ConnectionCheckedOutEvent) -> None:
        self.in_use += 1

    def connection_checked_in(self, event: monitoring.ConnectionCheckedInEvent) -> None:
        self.in_use = max(0, self.in_use - 1)

    def pool_cleared(self, event: monitoring.PoolClearedEvent) -> None:
        pass

    def pool_created(self, event: monitoring.PoolCreatedEvent) -> None:
        pass

    def pool_ready(self, event: monitoring.PoolReadyEvent) -> None:
        pass

    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None:
        pass

    def connection_ready(self, event: monitoring.ConnectionReadyEvent) -> None:
        pass

    def connection_check_out_started(self, event: monitoring.ConnectionCheckOutStartedEvent) -> None:
        pass

    def connection_check_out_failed(self, event: monitoring.ConnectionCheckOutFailedEvent) -> None:
        pass


class MongoClient(LifecycleMixin):
    """One AsyncMongoClient for the process; ``.db`` is the application database."""

    name = "mongo"

    def __init__(self, *, host: str, port: int, database: str, pool_max: int = 50,
                 server_selection_timeout_s: float = 2.0, connect_timeout_s: float = 2.0,
                 socket_timeout_s: float = 10.0) -> None:
        self.address = f"{host}:{port}"
        self.pool_max = pool_max
        self._pool = _PoolCounter()
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            host, port, directConnection=True, maxPoolSize=pool_max,
            serverSelectionTimeoutMS=int(server_selection_timeout_s * 1000),
            connectTimeoutMS=int(connect_timeout_s * 1000),
            socketTimeoutMS=int(socket_timeout_s * 1000), connect=False,
            event_listeners=[self._pool],
        )
        self.db: AsyncDatabase[dict[str, Any]] = self._client[database]
        self._started = False

    async def start(self) -> None:
        await self.ping()
        self._started = True

    async def aclose(self) -> None:
        self._started = False
        await self._client.close()

    async def _ping(self) -> None:
        with converted(_convert):
            await self._client.admin.command("ping")

    def convert_errors(self) -> Any:
        """A context manager that turns PyMongo errors into DriverErrors."""
        return converted(_convert)

    def stats(self) -> dict[str, Any]:
        pool = self._pool
        return {"address": self.address, "started": self._started, "in_use": pool.in_use,
                "idle": max(0, pool.open - pool.in_use), "max": self.pool_max}
