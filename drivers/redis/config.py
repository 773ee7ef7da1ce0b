"""The Redis client's settings, with their defaults: the one place each is written.

A service reuses these types as its own settings (``app.settings``), so every
knob here can also be set from the environment, e.g. ``ASYNCSTACK_REDIS__RETRY__ATTEMPTS=1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.retry import Backoff, RetryPolicy


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    """The pub/sub connection (``drivers.redis.pubsub``)."""

    health_interval_s: float = 5.0     # a PING this often finds a connection that died without a FIN
    health_timeout_s: float = 3.0      # no PONG within this closes it (and it is reconnected)
    reconnect: Backoff = field(default_factory=lambda: Backoff(0.05, 2.0))


@dataclass(frozen=True, slots=True)
class RedisConfig:
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    connect_timeout_s: float = 2.0
    socket_timeout_s: float = 5.0      # a command's reply deadline, pipelined or pooled
    pool_max: int = 64                 # connections for blocking commands (BLPOP ...)
    pool_wait_timeout_s: float = 0.2   # how long a blocking command waits for a free one (then 503)
    # Idempotent commands (GET, SET, MSET, PING) after a lost connection; never INCR or BLPOP.
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(3, Backoff(0.05, 0.5)))
    subscription: SubscriptionConfig = field(default_factory=SubscriptionConfig)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RedisClusterConfig:
    """The Redis Cluster client (``drivers.redis.cluster``): where to start, and how it follows the cluster."""

    # Any nodes of the cluster: the first that answers tells the client the rest.
    nodes: tuple[tuple[str, int], ...] = (("127.0.0.1", 7000),)
    username: str | None = None
    password: str | None = None
    connect_timeout_s: float = 2.0
    socket_timeout_s: float = 5.0      # a command's reply deadline (each node's pipelined connection)
    # Idempotent commands after a lost connection (or CLUSTERDOWN); never SET NX or INCR.
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(4, Backoff(0.1, 1.0)))
    refresh_interval_s: float = 30.0   # the slot table is read again this often (0: only on MOVED / a lost node)
    # After a primary's connection is lost: the table is read again with these waits until the
    # cluster has promoted a replica (or the node answers again).
    refresh_backoff: Backoff = field(default_factory=lambda: Backoff(0.1, 1.0))
    max_redirects: int = 5             # MOVED/ASK/TRYAGAIN followed per command before BackendError
    read_from_replicas: bool = False   # GET/MGET on replicas (READONLY connections), primaries when none
