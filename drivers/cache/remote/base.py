"""What a remote tier is: the small interface every shared store behind the cache implements.

Rules of this file:
- A remote tier stores opaque bytes (the cache's envelopes, ``drivers.cache.codec``)
  under ``str`` keys the cache has already checked (``drivers.cache.keys``): a tier
  never serializes values nor validates keys.
- Every failure is a ``DriverError`` of the tree (``drivers.errors``):
  ``BackendUnavailable`` / ``BackendTimeout`` when the store is down or slow (the
  cache's circuit breaker counts those), ``BackendError`` when it refused a command.
  Nothing else escapes a tier, and a tier never retries: the backend client under it
  already retries what is safe to retry.
- Batches keep their order: ``get_many(keys)[i]`` is the value of ``keys[i]``.  A
  tier that spreads keys over several nodes groups them by node, sends each group
  pipelined, and awaits the groups concurrently.
- Leases: ``acquire`` is ``SET key token NX PX ttl_ms`` (or the store's
  equivalent): True for the one caller that set it.  ``release`` deletes the key
  only if it still holds ``token`` (a lease that expired and was taken by another
  process is not released by the old holder).
- Lifecycle: ``start()`` checks the store answers, ``aclose()`` is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class RemoteTier(Protocol):
    """A shared store of byte values with per-key TTLs (Redis, Redis Cluster, sharded Redis, Ignite)."""

    name: str       # "redis", "redis-cluster", "redis-shards", "ignite": the metrics label and error backend
    address: str    # where it is, for messages ("127.0.0.1:16379", "3 nodes", ...)

    async def start(self) -> None:
        """Connect and check the store answers; a DriverError when it does not."""

    async def aclose(self) -> None:
        """Close every connection (idempotent)."""

    async def get(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys``, in their order (None where absent)."""

    async def set_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        """Store each ``(key, value, ttl_ms)``; ``ttl_ms`` > 0."""

    async def delete_many(self, keys: Sequence[str]) -> None:
        """Remove ``keys`` (absent ones are fine)."""

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key that starts with ``prefix`` (on every node); how many were removed."""

    async def acquire(self, key: str, token: bytes, ttl_ms: int) -> bool:
        """Set ``key`` to ``token`` for ``ttl_ms`` if it does not exist; True when this call set it."""

    async def release(self, key: str, token: bytes) -> None:
        """Delete ``key`` if its value is still ``token``."""
