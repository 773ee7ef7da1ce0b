"""The MySQL client's settings, with their defaults: the one place each is written."""

from __future__ import annotations

from dataclasses import dataclass


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
    pool_wait_timeout_s: float = 0.2   # a caller finding every connection busy waits this long, then 503
    pool_recycle_s: float = 3600.0     # an idle connection older than this is replaced when taken
    connect_timeout_s: float = 2.0
    query_timeout_s: float = 10.0      # the default deadline of a query, pool wait included

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
