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
    pool_max: int = 20                 # each costs the server a thread
    pool_recycle_s: float = 3600.0     # an idle connection older than this is replaced when taken
    connect_timeout_s: float = 2.0
    query_timeout_s: float = 10.0      # the default deadline of a query, pool wait included

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"
