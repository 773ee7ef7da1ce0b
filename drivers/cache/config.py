"""The cache's settings, with their defaults: the one place each is written.

A service reuses this type as its own settings section (``app.settings``), so every
knob can be set from the environment, e.g. ``ASYNCSTACK_CACHE__TTL_S=30``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """The circuit breaker in front of the remote tier (``drivers.cache.breaker``)."""

    failures: int = 5                  # consecutive failures (unavailable or timed out) that open it
    open_s: float = 1.0                # how long it stays open before one call may probe the tier again
    max_open_s: float = 5.0            # each failed probe doubles the open time, up to this


@dataclass(frozen=True, slots=True)
class CacheConfig:
    # The remote tier: the standalone Redis ("redis"), Redis Cluster, standalone Redis nodes placed
    # by rendezvous hashing ("redis-shards", the nodes in ``shards``), an Ignite cache, or none ("local").
    backend: Literal["redis", "redis-cluster", "redis-shards", "ignite", "local"] = "redis"
    shards: tuple[str, ...] = ()       # "host:port" or "host:port@weight", for backend redis-shards
    ignite_cache: str = "asyncstack-cache"   # the Ignite cache, for backend ignite
    namespace: str = "cache"           # remote keys are <namespace>:v:<key>, leases <namespace>:l:<key>
    ttl_s: float = 300.0               # a value's time to live when the call gives none
    jitter: float = 0.1                # each TTL is drawn from ttl * [1 - jitter, 1 + jitter] (avalanche)
    negative_ttl_s: float = 30.0       # how long "not found" (a loader's None) is remembered (penetration)
    stale_s: float = 60.0              # how long past its TTL a value is kept to serve while reloading or
                                       # while the remote tier is down (remote: its PX grows by this)
    local_max_entries: int = 10_000    # the in-process tier's bounds: entries ...
    local_max_bytes: int = 64 << 20    # ... and encoded bytes (what the values weigh on the wire)
    local_ttl_s: float = 60.0          # an entry stays fresh in the local tier at most this long
    lease_s: float = 5.0               # a loader's lease across processes (SET NX PX); outlives a slow loader
    lease_wait_s: float = 1.0          # a process without the lease and no stale value waits this long for it
    early_refresh: bool = True         # probabilistic early refresh (XFetch) of values read near their expiry
    early_refresh_beta: float = 1.0    # XFetch's beta: > 1 refreshes earlier, < 1 later
    codec: Literal["json", "msgpack"] = "json"   # orjson or msgpack; never pickle
    hmac_key: str | None = None        # when set, every stored value carries an HMAC-SHA256 tag and values
                                       # without a valid one are refused (a shared secret of all processes)
    max_key_bytes: int = 512           # a longer key (in UTF-8) is refused before any I/O
    max_value_bytes: int = 1 << 20     # an encoded value over this is refused before any I/O
    invalidation_channel: str = "cache:invalidate"   # the Redis pub/sub channel of invalidations
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
