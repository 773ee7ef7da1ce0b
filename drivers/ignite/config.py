"""The Ignite client's settings, with their defaults: the one place each is written.

A service reuses this type as its own settings (``app.settings``), so every knob
can also be set from the environment, e.g. ``ASYNCSTACK_IGNITE__RETRY__ATTEMPTS=1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.limits import LimitConfig
from drivers.retry import Backoff, RetryPolicy


@dataclass(frozen=True, slots=True)
class IgniteConfig:
    nodes: tuple[tuple[str, int], ...] = (("127.0.0.1", 10800),)
    username: str | None = None
    password: str | None = None
    connect_timeout_s: float = 2.0          # TCP connect + TLS + handshake, per node
    request_timeout_s: float = 10.0         # a request's reply deadline (unless the call gives its own)
    heartbeat_interval_s: float | None = None   # None: a third of the node's idle timeout; 0: off
    partition_aware: bool = True            # single-key requests to the key's primary node
    # Reads that failed on a lost connection, sent again on another node; never writes or transactions.
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(3, Backoff(0.02, 0.5)))
    reconnect: Backoff = field(default_factory=lambda: Backoff(0.05, 2.0))   # a lost node, retried forever
    max_frame: int = 256 << 20              # bytes: a longer frame from the node is a protocol error
    compact_footer: bool = True             # complex objects written without field ids in the footer
    protocol_version: tuple[int, int, int] = (1, 7, 0)   # the newest to offer; older ones the node proposes
    # SQL and scan queries at once (key-value operations are not limited: they are short and
    # multiplexed), learnt from latency and the event loop's lag; a query that cannot start
    # within query_wait_timeout_s (and its budget) is turned away.
    limit: LimitConfig = field(default_factory=LimitConfig)
    query_wait_timeout_s: float = 0.2

    @property
    def address(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.nodes)
