"""The remote tier on one standalone Redis: the project's pipelined connection (``drivers.redis``).

Rules of this file:
- Every command goes through the ``RedisClient``'s boundary (counted, observed,
  retried after a lost connection when idempotent: GET, SET, DEL, SCAN).  SET NX
  (a lease) is not retried: a second try could find the lease it set itself.
- A batch is one ``RedisClient.batch``: its commands leave in one write.
- ``delete_prefix`` walks the keyspace with SCAN (never KEYS, which blocks Redis)
  and removes what matches with UNLINK (freed in Redis's background thread).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from drivers.redis import RedisClient

# Deletes the lease only while it still holds this holder's token.
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
SCAN_COUNT = 1000


def glob_escape(prefix: str) -> str:
    """``prefix`` with Redis's glob characters escaped, for ``SCAN ... MATCH <escaped>*``."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)


class Client(Protocol):
    address: str

    async def start(self) -> None: ...

    async def ping(self) -> float: ...

    async def aclose(self) -> None: ...


C = TypeVar("C", bound=Client)


class ClientTier(Generic[C]):
    """What a tier on one client shares: that client, and its lifecycle when the tier owns it (``own``)."""

    def __init__(self, client: C, *, own: bool = False) -> None:
        self.client = client
        self.address = client.address
        self._own = own

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"

    async def start(self) -> None:
        if self._own:
            await self.client.start()
        else:
            await self.client.ping()

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()


class RedisTier(ClientTier[RedisClient]):
    """A ``RemoteTier`` on one ``RedisClient`` (whose lifecycle it owns when ``own`` is True)."""

    name = "redis"

    async def get(self, key: str) -> bytes | None:
        return await self.client.get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = await self.client.command("MGET", *keys, idempotent=True)
        return values

    async def set_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        await self.client.batch([("SET", key, value, "PX", ttl_ms) for key, value, ttl_ms in items],
                                op="set", idempotent=True)

    async def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            await self.client.command("UNLINK", *keys, idempotent=True)

    async def delete_prefix(self, prefix: str) -> int:
        return await scan_unlink(self.client, prefix)

    async def acquire(self, key: str, token: bytes, ttl_ms: int) -> bool:
        return await self.client.command("SET", key, token, "NX", "PX", ttl_ms) is not None

    async def release(self, key: str, token: bytes) -> None:
        await self.client.command("EVAL", RELEASE, 1, key, token, idempotent=True)


async def scan_unlink(client: Any, prefix: str) -> int:
    """SCAN one node for ``prefix*`` and UNLINK what it finds; how many keys were removed.

    ``client`` has ``command(*args, idempotent=...)`` (a ``RedisClient``, or a node of a cluster).
    """
    pattern = glob_escape(prefix) + "*"
    cursor, removed = b"0", 0
    while True:
        cursor, keys = await client.command("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT, idempotent=True)
        if keys:
            removed += int(await client.command("UNLINK", *keys, idempotent=True))
        if cursor in (b"0", 0, "0"):
            return removed
