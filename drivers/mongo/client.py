"""MongoDB through PyMongo's native ``AsyncMongoClient`` (no thread pool, unlike Motor).

``client.collection(name)`` is the boundary: its methods convert PyMongo's errors
into the driver error tree and report each call ("find_one", "insert_one", ...)
to the observer.  ``client.db`` is PyMongo's own database object for anything
else; what it raises is PyMongo's, unconverted.

Every call runs under PyMongo's client-side operation timeout (``pymongo.timeout``):
``socket_timeout_s``, or what is left of the budget (``drivers.budget``) if that is
less, so server selection, the pool wait and PyMongo's own retry of a read are all
inside one deadline.  PyMongo can overrun it (seen on uvloop: the server selection
of a read retried after a reset connection waited 2 s under a 1.5 s timeout), so
the call is also stopped ``_GRACE_S`` after it; the error then says what PyMongo's
monitor last saw of the server (unreachable: 503; no answer: 504).

On Python 3.11, PyMongo's wait for a pooled connection can keep the pool's lock for
good when its caller is cancelled twice; ``drivers.mongo.lockfix`` replaces that wait
(installed when this module is imported).

PyMongo still uses a thread underneath in one place: the TLS handshake.  Pool
occupancy is counted from PyMongo's connection-pool events (called on the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pymongo
from bson.errors import InvalidDocument
from pymongo import AsyncMongoClient, monitoring
from pymongo import errors as merr
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from drivers import budget
from drivers.base import Calls, ClientStats, LifecycleMixin, client_stats, converted
from drivers.errors import BackendError, BackendTimeout, BackendUnavailable, DriverError, InterfaceError
from drivers.limits import Limiter
from drivers.mongo import lockfix
from drivers.mongo.config import MongoConfig

lockfix.install()

Document = dict[str, Any]


def _convert(exc: BaseException) -> DriverError | None:
    if isinstance(exc, InvalidDocument | OverflowError):  # BSON cannot encode it: nothing was sent
        return InterfaceError(f"mongo: cannot store this document: {exc}", backend="mongo")
    if isinstance(exc, merr.ServerSelectionTimeoutError):
        text = str(exc)
        if "timed out" in text.split("Topology Description", maxsplit=1)[0].lower():
            # A server that accepts connections and never answers: too slow, not unreachable.
            return BackendTimeout(f"mongo: the server did not answer in time ({_first(text)})", backend="mongo")
        return BackendUnavailable(f"mongo: no server reachable ({_first(text)})", backend="mongo")
    if isinstance(exc, merr.NetworkTimeout | merr.ExecutionTimeout | merr.WTimeoutError | TimeoutError) or (
            isinstance(exc, merr.PyMongoError) and exc.timeout):
        return BackendTimeout(f"mongo: deadline passed ({_first(str(exc))})", backend="mongo")
    if isinstance(exc, merr.ConnectionFailure | OSError):
        return BackendUnavailable(f"mongo: {exc}", backend="mongo")
    if isinstance(exc, merr.PyMongoError):
        return BackendError(f"mongo: {exc}", backend="mongo")
    return None


def _first(text: str) -> str:
    return text.split(", Timeout:", maxsplit=1)[0].split("Topology Description", maxsplit=1)[0].strip().rstrip(",")


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


_GRACE_S = 0.05   # how long PyMongo may overrun its own deadline before the call is stopped


class Collection:
    """One collection through the client's boundary: errors converted, calls observed and limited, one deadline."""

    __slots__ = ("_calls", "_client", "_limiter", "_timeout_s", "raw")

    def __init__(self, raw: AsyncCollection[Document], client: MongoClient) -> None:
        self.raw = raw        # PyMongo's own collection, for anything not wrapped here (unconverted errors)
        self._client = client
        self._calls = client.calls
        self._limiter = client.limiter
        self._timeout_s = client.config.socket_timeout_s

    @asynccontextmanager
    async def _call(self, op: str) -> AsyncIterator[None]:
        """The boundary of one call: observed, errors converted, a slot of the limiter, one deadline."""
        with self._calls.call(op), converted(_convert):
            began = await self._limiter.acquire()
            try:
                limit = budget.limit(self._timeout_s, "mongo")   # the budget may have run out while it waited
                async with asyncio.timeout(limit + _GRACE_S):
                    with pymongo.timeout(limit):
                        yield
            except TimeoutError as exc:
                if isinstance(exc, DriverError):
                    raise
                raise self._client.stalled(limit) from None
            finally:
                self._limiter.release(began)
        wait = self._limiter.turn()   # the answer is in: the caller's work on it waits if this iteration ran long
        if wait is not None:
            await wait

    def __repr__(self) -> str:
        return f"<Collection {self.raw.full_name}>"

    @property
    def client(self) -> MongoClient:
        return self._client

    async def find_one(self, filter: Mapping[str, Any], projection: Mapping[str, Any] | None = None,
                       ) -> Document | None:
        async with self._call("find_one"):
            return await self.raw.find_one(filter, projection)

    async def find(self, filter: Mapping[str, Any], projection: Mapping[str, Any] | None = None, *,
                   limit: int = 0) -> list[Document]:
        """Every matching document (at most ``limit``; 0: no limit), read to the end."""
        async with self._call("find"):
            return [doc async for doc in self.raw.find(filter, projection, limit=limit)]

    async def insert_one(self, doc: Document) -> Any:
        """Store ``doc``; its ``_id``."""
        async with self._call("insert_one"):
            return (await self.raw.insert_one(doc)).inserted_id

    async def insert_many(self, docs: Sequence[Document], *, ordered: bool = True) -> list[Any]:
        async with self._call("insert_many"):
            return list((await self.raw.insert_many(docs, ordered=ordered)).inserted_ids)

    async def delete_many(self, filter: Mapping[str, Any]) -> int:
        """Delete every matching document; how many there were."""
        async with self._call("delete_many"):
            return int((await self.raw.delete_many(filter)).deleted_count)


class MongoClient(LifecycleMixin):
    """One AsyncMongoClient for the process; ``collection(name)`` in the application database."""

    name = "mongo"

    def __init__(self, config: MongoConfig | None = None) -> None:
        c = self.config = config or MongoConfig()
        self.address = c.address
        self.calls = Calls("mongo")
        self.limiter = Limiter("mongo", c.limit.capped(c.pool_max), wait_s=c.pool_wait_timeout_s,
                               wait_unbudgeted_s=c.socket_timeout_s)
        self._pool = _PoolCounter()
        self._client: AsyncMongoClient[Document] = AsyncMongoClient(
            c.host, c.port, directConnection=True, maxPoolSize=c.pool_max,
            serverSelectionTimeoutMS=int(c.server_selection_timeout_s * 1000),
            connectTimeoutMS=int(c.connect_timeout_s * 1000),
            socketTimeoutMS=int(c.socket_timeout_s * 1000), connect=False,
            event_listeners=[self._pool],
        )
        self.db: AsyncDatabase[Document] = self._client[c.database]
        self._collections: dict[str, Collection] = {}
        self._started = False

    def __repr__(self) -> str:
        return f"<MongoClient {self.address} {'started' if self._started else 'not started'}>"

    def collection(self, name: str) -> Collection:
        """The named collection of the application database (made once, without I/O)."""
        found = self._collections.get(name)
        if found is None:
            found = self._collections[name] = Collection(self.db[name], self)
        return found

    def stalled(self, limit_s: float) -> DriverError:
        """The error for a call PyMongo did not end by its deadline: what its monitor last saw of the server."""
        for server in self._client.topology_description.server_descriptions().values():
            seen = _convert(server.error) if server.error is not None else None
            if isinstance(seen, BackendUnavailable):
                return BackendUnavailable(f"mongo: no server reachable within {limit_s:.3g} s ({seen.message})",
                                          backend="mongo")
        return BackendTimeout(f"mongo: no answer within {limit_s:.3g} s", backend="mongo", waited_s=limit_s)

    async def start(self) -> None:
        await self.ping()
        self._started = True

    async def aclose(self) -> None:
        self._started = False
        await self._client.close()

    async def _ping(self) -> None:
        with converted(_convert), pymongo.timeout(budget.limit(self.config.socket_timeout_s, "mongo")):
            await self._client.admin.command("ping")

    async def server_info(self) -> Document:
        """The server's ``buildInfo`` (version, and which server speaks the protocol)."""
        with self.calls.call("server_info"), converted(_convert), \
                pymongo.timeout(budget.limit(self.config.socket_timeout_s, "mongo")):
            info: Document = await self._client.admin.command("buildInfo")
            return info

    def stats(self) -> ClientStats:
        pool = self._pool
        return client_stats(self.calls, address=self.address, connected=pool.open > 0,
                            pool=(pool.in_use, max(0, pool.open - pool.in_use), self.config.pool_max),
                            detail={"started": self._started, "limit": self.limiter.stats()})
