"""Every address, pool size and timeout of the service, in one model.

The backends' sections are the drivers' own config types (``MySQLConfig``,
``RedisConfig``, ``MongoConfig``, ``IgniteConfig``): each setting and its default
is written once, in the driver, and reaches the client whole.  The only
defaults written here are the service's own and the local stack's addresses.

Values come from, in order of precedence: keyword arguments, environment
variables prefixed ``ASYNCSTACK_`` (nested with ``__``, e.g.
``ASYNCSTACK_MYSQL__PORT=3306`` or ``ASYNCSTACK_REDIS__RETRY__ATTEMPTS=1``), the
file named by ``ASYNCSTACK_ENV_FILE`` (dotenv format, optional), then the
defaults — which point at the local stack that ``python -m stack up`` starts.
Every duration ends in ``_s`` and is in seconds.  Use IP literals for hosts: a
host name makes the event loop resolve it on a thread.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Literal

import pydantic.dataclasses
from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

import drivers.cache.config
import drivers.ignite.config
import drivers.mongo.config
import drivers.mysql.config
import drivers.redis.config

# The local stack's addresses: the one place they are written down.  MySQL,
# Redis and MongoDB use non-default ports so they never meet a developer's own.
STACK_HOST = "127.0.0.1"
MYSQL_PORT = 13306
REDIS_PORT = 16379
MONGO_PORT = 27117
IGNITE_CLIENT_PORT = 10800          # node i listens on IGNITE_CLIENT_PORT + i (the stack's other ports: stack/)
REDIS_SHARD_PORTS = (16380, 16381, 16382)   # three standalone Redis nodes: the cache's "redis-shards" backend
REDIS_CLUSTER_PORTS = tuple(range(17000, 17006))  # a Redis Cluster: 3 primaries + 3 replicas (bus: port + 10000)

# The drivers' config types are plain dataclasses; pydantic's wrapper of each lets the
# settings read nested fields from the environment (a JSON list for Ignite's nodes, too).
# After validation each section is turned back into the driver's own type (``_plain``).
if TYPE_CHECKING:
    from drivers.cache.config import CacheConfig
    from drivers.ignite.config import IgniteConfig
    from drivers.mongo.config import MongoConfig
    from drivers.mysql.config import MySQLConfig
    from drivers.redis.config import RedisClusterConfig, RedisConfig
else:
    MySQLConfig = pydantic.dataclasses.dataclass(drivers.mysql.config.MySQLConfig, frozen=True)
    RedisConfig = pydantic.dataclasses.dataclass(drivers.redis.config.RedisConfig, frozen=True)
    RedisClusterConfig = pydantic.dataclasses.dataclass(drivers.redis.config.RedisClusterConfig, frozen=True)
    MongoConfig = pydantic.dataclasses.dataclass(drivers.mongo.config.MongoConfig, frozen=True)
    IgniteConfig = pydantic.dataclasses.dataclass(drivers.ignite.config.IgniteConfig, frozen=True)
    CacheConfig = pydantic.dataclasses.dataclass(drivers.cache.config.CacheConfig, frozen=True)


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8888
    workers: int = 1                    # 0: one per CPU
    readiness_timeout_s: float = 1.0
    # Each request's budget: every backend call made for it gets at most what is left of it. A client
    # may ask for less with the header X-Request-Timeout (seconds), never for more.
    request_timeout_s: float = 5.0
    # A connection whose last request went through a backend limit that has no room is not read
    # (its next request waits in the kernel) for up to this long; 0 reads every connection at once.
    read_pause_max_s: float = 1.0
    # The HTTP/1.1 server: "fast" (app.http.fast_server: llhttp parsing on an asyncio.Protocol, the
    # same Tornado handlers) or "tornado" (Tornado's own HTTPServer).
    transport: Literal["fast", "tornado"] = "fast"
    idle_timeout_s: float = 75.0        # a kept-alive connection with no request for this long is closed
    header_timeout_s: float = 10.0      # a request's line and headers must arrive within this (fast transport)
    shutdown_grace_s: float = 0.0       # /readyz says 503 this long before the listener stops
    shutdown_timeout_s: float = 10.0    # in-flight requests get this long to finish
    max_json_bytes: int = 64 * 1024     # larger JSON bodies are refused with 400
    # The addresses (IP literals) of the proxies or balancers whose X-Forwarded-For / X-Real-Ip /
    # X-Scheme / X-Forwarded-Proto are believed; from any other peer they are ignored. Default: none.
    trusted_proxies: tuple[str, ...] = ()
    max_sleep_s: float = 5.0            # upper bound of ?s= on the deliberately slow endpoints
    max_range: int = 20_000_000         # upper bound of ?n= on the Ignite range query
    access_log: bool = True             # one JSON line per request on stdout
    loop_lag_interval_s: float = 0.25   # how often the event-loop lag and pool gauges are sampled
    status_interval_s: float = 1.0      # how often each worker publishes its figures to GET /status; 0: off
    metrics_dir: str | None = None      # Prometheus multiprocess directory (workers > 1); default: a temp dir
    # The garbage collector runs its young-generation pass after this many more container objects
    # were made than freed (Python's own default: 700).  Under load, with hundreds of requests in
    # flight, a pass at 700 walks every in-flight request's objects, some 40 times a second, a pause
    # of 0.5-1.6 ms each time (docs/performance.md#garbage-collection).
    gc_threshold: int = 10_000


class WsSettings(BaseModel):
    """The ``/ws`` push endpoint and ``POST /publish/{channel}``."""

    max_message_bytes: int = 64 * 1024  # a larger client frame closes the connection with 1009
    ping_interval_s: float = 20.0       # server pings; 0 turns them off
    ping_timeout_s: float = 20.0        # no pong within this closes the connection
    compression: bool = False           # permessage-deflate: about 10x the memory per connection, off by default
    max_buffer_bytes: int = 1 << 20     # outgoing bytes waiting per connection before it counts as slow (1013)
    max_channels: int = 64              # channels per connection
    history_size: int = 1000            # messages kept per channel for resume
    history_ttl_s: float = 300.0        # ... and for at most this long
    key_prefix: str = "ws:"             # Redis stream keys and pub/sub channels are <prefix><channel>
    publish_token: str | None = None    # bearer token for POST /publish; unset: HTTP publishing is off
    channel_secret: str | None = None   # HMAC secret of private:* channel tokens; unset: private channels off
    close_timeout_s: float = 2.0        # at shutdown, how long closing handshakes (1001) may take


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ASYNCSTACK_", env_nested_delimiter="__", extra="ignore",
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    mysql: MySQLConfig = Field(default_factory=lambda: MySQLConfig(host=STACK_HOST, port=MYSQL_PORT))
    redis: RedisConfig = Field(default_factory=lambda: RedisConfig(host=STACK_HOST, port=REDIS_PORT))
    mongo: MongoConfig = Field(default_factory=lambda: MongoConfig(host=STACK_HOST, port=MONGO_PORT))
    ignite: IgniteConfig = Field(default_factory=lambda: IgniteConfig(nodes=((STACK_HOST, IGNITE_CLIENT_PORT),)))
    ws: WsSettings = Field(default_factory=WsSettings)
    # The Redis Cluster the cache uses with cache.backend=redis-cluster (the stack's, by default).
    redis_cluster: RedisClusterConfig = Field(default_factory=lambda: RedisClusterConfig(
        nodes=tuple((STACK_HOST, port) for port in REDIS_CLUSTER_PORTS[:3])))
    # The two-tier cache of GET /items/{id} (docs/cache.md); backend redis-shards uses the stack's shards.
    cache: CacheConfig = Field(default_factory=lambda: CacheConfig(
        shards=tuple(f"{STACK_HOST}:{port}" for port in REDIS_SHARD_PORTS)))

    @model_validator(mode="before")
    @classmethod
    def _onto_defaults(cls, data: Any) -> Any:
        """Settings given for part of a section (``ASYNCSTACK_REDIS__RETRY__ATTEMPTS=1``) change only that part.

        Without this, a section given partly would be built from its type's defaults
        and lose the service's own (the local stack's ports) and the nested ones.
        """
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, field in cls.model_fields.items():
            given = merged.get(name)
            if dataclasses.is_dataclass(given) and not isinstance(given, type):
                merged[name] = given = dataclasses.asdict(given)  # a driver's own config, given whole
            if isinstance(given, dict) and field.default_factory is not None:
                default: Any = field.default_factory()  # type: ignore[call-arg]
                base = default.model_dump() if isinstance(default, BaseModel) else dataclasses.asdict(default)
                merged[name] = _deep_merge(base, given)
        return merged


    @model_validator(mode="after")
    def _plain(self) -> Settings:
        """Each backend section as an instance of the driver's own type (equal to one built by hand)."""
        for name, plain in _PLAIN.items():
            value = getattr(self, name)
            if type(value) is not plain:
                object.__setattr__(self, name, plain(**{f.name: getattr(value, f.name)
                                                        for f in dataclasses.fields(plain)}))
        return self


_PLAIN: dict[str, type[Any]] = {
    "mysql": drivers.mysql.config.MySQLConfig, "redis": drivers.redis.config.RedisConfig,
    "mongo": drivers.mongo.config.MongoConfig, "ignite": drivers.ignite.config.IgniteConfig,
    "cache": drivers.cache.config.CacheConfig, "redis_cluster": drivers.redis.config.RedisClusterConfig,
}


def _deep_merge(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in given.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, with the optional dotenv file ``$ASYNCSTACK_ENV_FILE``."""
    env_file = os.environ.get("ASYNCSTACK_ENV_FILE")
    if env_file:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    return Settings(**overrides)
