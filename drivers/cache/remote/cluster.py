"""The remote tier on a Redis Cluster: the project's cluster client (``drivers.redis.cluster``).

Rules of this file:
- Every command goes through the ``RedisClusterClient``'s boundary; it routes each key by
  its slot, follows MOVED/ASK, and retries after a lost connection what is idempotent
  (GET, SET, UNLINK, the release script, SCAN).  SET NX (a lease) is not retried: a second
  try could find the lease it set itself.
- Batches are grouped by node: ``get_many`` is one MGET per slot, ``set_many`` one SET per
  key, ``delete_many`` one UNLINK per slot, all sent at once (the commands for one node
  leave in one write), replies in the caller's order.
- ``delete_prefix`` walks every primary with SCAN and removes what matches with UNLINK.
- Failures are the client's ``DriverError``s, with ``backend`` "redis-cluster".
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.cache.remote.redis import RELEASE, ClientTier
from drivers.redis import RedisClusterClient


class RedisClusterTier(ClientTier[RedisClusterClient]):
    """A ``RemoteTier`` on one ``RedisClusterClient`` (whose lifecycle it owns when ``own`` is True)."""

    name = "redis-cluster"

    async def get(self, key: str) -> bytes | None:
        return await self.client.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self.client.mget(keys)

    async def set_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        if items:
            await self.client.batch([("SET", key, value, "PX", ttl_ms) for key, value, ttl_ms in items],
                                    op="set", idempotent=True)

    async def delete_many(self, keys: Sequence[str]) -> None:
        await self.client.delete(keys)

    async def delete_prefix(self, prefix: str) -> int:
        return await self.client.scan_unlink(prefix)

    async def acquire(self, key: str, token: bytes, ttl_ms: int) -> bool:
        return await self.client.set(key, token, px=ttl_ms, nx=True)

    async def release(self, key: str, token: bytes) -> None:
        await self.client.command("EVAL", RELEASE, 1, key, token, idempotent=True)
