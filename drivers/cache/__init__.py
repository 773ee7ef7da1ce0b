"""A two-tier cache for asyncio: an in-process LRU in front of a shared remote tier.

    cache.py         Cache: get_or_load, get/set/delete, batches, @cached, invalidation  (API)
    invalidation.py  InvalidationBus: other processes' writes drop local copies (Redis pub/sub)
    breaker.py       Breaker: stop calling a remote tier that is down; probe until it is back
    remote/          the remote tiers behind one interface (base.RemoteTier):          (routing)
                     redis (standalone), shards (several, placed by hashing),
                     cluster (Redis Cluster), ignite
    placement.py     weighted rendezvous hashing of keys onto nodes (sans-I/O)
    bloom.py         Bloom filters of known keys: in-process, or a Redis bitmap
    local.py         LocalTier: the in-process LRU bounded by entries and bytes
    codec.py         the stored envelope: value (orjson / msgpack), freshness, HMAC      (codec)
    keys.py          key checks and the remote key layout
    config.py        CacheConfig: every setting and its default

Usage (docs/cache.md)::

    cache = Cache(RedisTier(redis), CacheConfig(), bus=InvalidationBus(redis, subscriber))
    await cache.start()
    item = await cache.get_or_load(f"item:{id}", lambda: load_item(id), ttl=60)
"""

from drivers.cache.breaker import Breaker, BreakerState
from drivers.cache.cache import Cache, CacheStats
from drivers.cache.codec import Codec
from drivers.cache.config import BreakerConfig, CacheConfig
from drivers.cache.invalidation import InvalidationBus
from drivers.cache.local import LocalTier
from drivers.cache.remote.base import RemoteTier
from drivers.cache.remote.redis import RedisTier

__all__ = ["Breaker", "BreakerConfig", "BreakerState", "Cache", "CacheConfig", "CacheStats", "Codec",
           "InvalidationBus", "LocalTier", "RedisTier", "RemoteTier"]
