"""A hand-written asyncio thin client for Apache Ignite 2.x (binary client protocol 1.7).

    from drivers.ignite import Client, hints

    async with Client([("127.0.0.1", 10800)]) as client:
        cache = await client.get_or_create_cache("people")
        await cache.put(1, "Ada")
        await cache.put(hints.Int(2), "an int key, not a long one")

The layers, each importing only those below it (checked by tests/test_layering.py)::

    client.py                          Client: what an application holds
    cache.py cursors.py tx.py cluster.py   the API: build requests, call the session
    session.py                         the request pipeline: transaction, routing, send, retry, types
    routing.py  affinity.py            the nodes' connections and partition maps; key hashes (pure)
    txcontext.py                       the task's transaction (a ContextVar) and who may use it
    connection.py                      one socket to one node: the I/O pump, built from drivers.kit
    protocol/  codec/                  sans-I/O: frames, messages, values
    config.py  errors.py               settings with their defaults; the error tree
"""

from drivers.ignite.affinity import PartitionMap
from drivers.ignite.cache import Cache, PeekMode
from drivers.ignite.client import Client
from drivers.ignite.codec import BinaryObject, hints
from drivers.ignite.config import IgniteConfig
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
from drivers.ignite.tx import Transaction, TransactionConcurrency, TransactionIsolation
from drivers.retry import NO_RETRY, Backoff, RetryPolicy

__all__ = [
    "NO_RETRY",
    "AtomicityMode",
    "Backoff",
    "BinaryObject",
    "Cache",
    "CacheConfig",
    "CacheMode",
    "Client",
    "ClusterState",
    "ExpiryPolicy",
    "IgniteConfig",
    "IndexType",
    "PartitionMap",
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
