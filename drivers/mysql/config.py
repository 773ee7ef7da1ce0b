"""The MySQL client's settings, with their defaults: the one place each is written."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.limits import LimitConfig


@dataclass(frozen=True, slots=True)
class MySQLConfig:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "app"
    password: str = "app"
    database: str = "app"
    pool_min: int = 1                  # connections opened at start
    # Each connection is a thread on the server (MariaDB's max_connections is 151 by default): keep
    # pool_max x processes x hosts under it.  A query holds its connection for its whole length.
    pool_max: int = 20
    # Inside a request's budget, a query that cannot start (no slot of the limit, no connection)
    # waits this long, then is turned away (503); work without a budget waits up to query_timeout_s.
    pool_wait_timeout_s: float = 0.2
    pool_recycle_s: float = 3600.0     # an idle connection older than this is replaced when taken
    connect_timeout_s: float = 2.0
    query_timeout_s: float = 10.0      # the default deadline of a query, pool wait included
    # Queries at once, learnt from latency and the event loop's lag (never above pool_max).
    limit: LimitConfig = field(default_factory=LimitConfig)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
