"""Every address, pool size and timeout of the service, in one model.

Values come from, in order of precedence: keyword arguments, environment
variables prefixed ``ASYNCSTACK_`` (nested with ``__``, e.g.
``ASYNCSTACK_MYSQL__PORT=3306``), the file named by ``ASYNCSTACK_ENV_FILE``
(dotenv format, optional), then the defaults below — which point at the local
stack that ``python -m app stack up`` starts.  Use IP literals for hosts: a
host name makes the event loop resolve it on a thread.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The local stack's addresses: the one place they are written down.  MySQL,
# Redis and MongoDB use non-default ports so they never meet a developer's own.
STACK_HOST = "127.0.0.1"
MYSQL_PORT = 13306
REDIS_PORT = 16379
MONGO_PORT = 27117
IGNITE_CLIENT_PORT = 10800          # node i listens on IGNITE_CLIENT_PORT + i
# Ignite's own defaults (47500, 47100) lie inside Linux's ephemeral port range (32768-60999):
# a client socket's source port in TIME-WAIT there makes a node fail to bind at start.  Every
# port of the stack is kept below 32768.
IGNITE_DISCOVERY_PORT = 24500       # node i: IGNITE_DISCOVERY_PORT + i (list: +0..+9)
IGNITE_COMMUNICATION_PORT = 24100   # node i: IGNITE_COMMUNICATION_PORT + i
# The secure node (TLS + authentication, its own one-node cluster): `ignite-secure` in the stack.
IGNITE_SECURE_PORT = 10900
IGNITE_SECURE_DISCOVERY_PORT = 24600  # discovery list 127.0.0.1:24600..24609
IGNITE_SECURE_COMMUNICATION_PORT = 24200


class MySQLSettings(BaseModel):
    host: str = STACK_HOST
    port: int = MYSQL_PORT
    user: str = "app"
    password: str = "app"
    database: str = "app"
    pool_min: int = 1
    pool_max: int = 20
    pool_recycle_s: float = 3600.0
    connect_timeout_s: float = 2.0
    query_timeout_s: float = 10.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class RedisSettings(BaseModel):
    host: str = STACK_HOST
    port: int = REDIS_PORT
    db: int = 0
    password: str | None = None
    pool_max: int = 64
    pool_wait_timeout_s: float = 2.0
    connect_timeout_s: float = 2.0
    socket_timeout_s: float = 5.0
    read_retries: int = 2               # retries for idempotent commands after a lost connection

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class MongoSettings(BaseModel):
    host: str = STACK_HOST
    port: int = MONGO_PORT
    database: str = "app"
    pool_max: int = 50
    server_selection_timeout_s: float = 2.0
    connect_timeout_s: float = 2.0
    socket_timeout_s: float = 10.0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"


class IgniteSettings(BaseModel):
    nodes: list[tuple[str, int]] = Field(default_factory=lambda: [(STACK_HOST, IGNITE_CLIENT_PORT)])
    username: str | None = None
    password: str | None = None
    connect_timeout_s: float = 2.0
    request_timeout_s: float = 10.0

    @property
    def address(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.nodes)


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8888
    workers: int = 1                    # 0: one per CPU
    readiness_timeout_s: float = 1.0
    shutdown_grace_s: float = 0.0       # /readyz says 503 this long before the listener stops
    shutdown_timeout_s: float = 10.0    # in-flight requests get this long to finish
    max_json_bytes: int = 64 * 1024     # larger JSON bodies are refused with 400
    max_sleep_s: float = 5.0            # upper bound of ?s= on the deliberately slow endpoints
    max_range: int = 20_000_000         # upper bound of ?n= on the Ignite range query
    access_log: bool = True             # one JSON line per request on stdout
    loop_lag_interval_s: float = 0.25   # how often the event-loop lag and pool gauges are sampled
    metrics_dir: str | None = None      # Prometheus multiprocess directory (workers > 1); default: a temp dir


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
    mysql: MySQLSettings = Field(default_factory=MySQLSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    mongo: MongoSettings = Field(default_factory=MongoSettings)
    ignite: IgniteSettings = Field(default_factory=IgniteSettings)
    ws: WsSettings = Field(default_factory=WsSettings)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, with the optional dotenv file ``$ASYNCSTACK_ENV_FILE``."""
    env_file = os.environ.get("ASYNCSTACK_ENV_FILE")
    if env_file:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    return Settings(**overrides)
