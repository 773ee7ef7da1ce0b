"""The MongoDB client's settings, with their defaults: the one place each is written."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.limits import LimitConfig


@dataclass(frozen=True, slots=True)
class MongoConfig:
    host: str = "127.0.0.1"
    port: int = 27017
    database: str = "app"
    pool_max: int = 50
    # Inside a request's budget, a call that cannot start (no slot of the limit) waits this long,
    # then is turned away (503); work without a budget waits up to socket_timeout_s.
    pool_wait_timeout_s: float = 0.2
    server_selection_timeout_s: float = 2.0
    connect_timeout_s: float = 2.0
    # A call's whole deadline (PyMongo's client-side operation timeout): server selection, pool
    # wait, the retry of a read, every round trip — all inside it, and inside the budget if less.
    socket_timeout_s: float = 10.0
    # Calls at once, learnt from latency and the event loop's lag (never above pool_max).
    limit: LimitConfig = field(default_factory=LimitConfig)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"
