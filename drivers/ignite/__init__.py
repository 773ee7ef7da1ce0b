"""A hand-written asyncio thin client for Apache Ignite 2.x (binary client protocol 1.7).

    from drivers.ignite import Client, hints

    async with Client([("127.0.0.1", 10800)]) as client:
        cache = await client.get_or_create_cache("people")
        await cache.put(1, "Ada")
        await cache.put(hints.Int(2), "an int key, not a long one")
"""

from drivers.ignite.cache import Cache, PeekMode
from drivers.ignite.client import Client
from drivers.ignite.codec import BinaryObject, hints
from drivers.ignite.cursors import ScanCursor, SqlFieldsCursor
from drivers.ignite.protocol.cache_config import (
    AtomicityMode,
    CacheConfig,
    CacheMode,
    ExpiryPolicy,
    IndexType,
    QueryEntity,
    QueryField,
    QueryIndex,
    WriteSyncMode,
)
from drivers.ignite.protocol.messages import ClusterState
from drivers.ignite.routing import Backoff, RetryPolicy
from drivers.ignite.tx import Transaction, TransactionConcurrency, TransactionIsolation

__all__ = [
    "AtomicityMode",
    "Backoff",
    "BinaryObject",
    "Cache",
    "CacheConfig",
    "CacheMode",
    "Client",
    "ClusterState",
    "ExpiryPolicy",
    "IndexType",
    "PeekMode",
    "QueryEntity",
    "QueryField",
    "QueryIndex",
    "RetryPolicy",
    "ScanCursor",
    "SqlFieldsCursor",
    "Transaction",
    "TransactionConcurrency",
    "TransactionIsolation",
    "WriteSyncMode",
    "hints",
]
