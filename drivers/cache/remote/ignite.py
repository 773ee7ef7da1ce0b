"""The remote tier on one Ignite cache: the project's thin client (``drivers.ignite``).

Rules of this file:
- Keys are ``str`` (Java String, so they hash and route like any String key); values are
  ``bytes``, which the codec writes as Java ``byte[]`` (type code 12) and reads back as
  ``bytes``.  The cache is made by ``get_or_create_cache(name)`` in ``start()``: the
  node's defaults (partitioned, atomic, no backups, ``eager_ttl`` on).
- A TTL travels with the write: the request carries an expiry policy (create and update
  = ``ttl_ms``, access unchanged) from ``Cache.with_expire_policy``.  One such handle
  per distinct TTL, kept in a small dict (at most ``EXPIRY_HANDLES``, the oldest dropped
  first).  Reads go through the plain handle, so reading never extends an entry's life.
- Expiry, as measured on the stack's Ignite 2.17 nodes (tests/cache/test_ignite_tier.py):
  both lazy and eager.  A read never returns an expired entry (the node checks the
  expiry time on access; with ``eager_ttl`` off that is the only removal).  With
  ``eager_ttl`` on, each node's TTL cleanup worker also removes expired entries without
  any read: it wakes every 500 ms and takes up to 1000 entries of a cache per pass, so a
  300 ms entry was gone 0.2-0.6 s after it expired (5000 of them within 0.6 s), and
  memory is freed for keys nobody reads again.  A scan query does not check: it may
  still list an entry that expired less than that ago.
- Errors: the client's tree (``drivers.ignite.errors``) hangs under ``drivers.errors`` with
  backend "ignite" (its query limiter's ``BackendBusy`` too), so nothing is converted here.
  The client retries reads only; a write, and so a lease, is sent once.
- Batches (``get_all``, ``put_all``, ``remove_keys``) are split by primary node and sent
  in parallel by the client; ``set_many`` sends one ``put_all`` per distinct TTL, at once.
- ``delete_prefix`` costs a scan of the whole cache: Ignite cannot match keys on the
  server without Java code deployed there, so every entry (its value included) crosses
  the wire, ``SCAN_PAGE`` at a time through the one node that holds the cursor, and the
  matches are removed ``REMOVE_BATCH`` at a time as the scan goes.  Its time grows with
  the size of the cache, not with the number of matches: meant for rare invalidations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from drivers.errors import InterfaceError
from drivers.ignite import Cache, Client

DEFAULT_CACHE = "asyncstack-cache"
EXPIRY_HANDLES = 64     # distinct TTLs whose expiry-policy handle is kept
SCAN_PAGE = 1000        # entries per page of delete_prefix's scan
REMOVE_BATCH = 1000     # keys per remove_keys of delete_prefix


class IgniteTier:
    """A ``RemoteTier`` on one Ignite cache (the client's lifecycle is owned when ``own`` is True)."""

    name = "ignite"

    def __init__(self, client: Client, cache_name: str = DEFAULT_CACHE, *, own: bool = False) -> None:
        self.client = client
        self.address = client.address
        self.cache_name = cache_name
        self.cache: Cache = client.cache(cache_name)   # a handle (no I/O); the cache is made by start()
        self._own = own
        self._expiring: dict[int, Cache] = {}

    def __repr__(self) -> str:
        return f"<IgniteTier {self.cache_name!r} on {self.address}>"

    async def start(self) -> None:
        if self._own:
            await self.client.start()
        self.cache = await self.client.get_or_create_cache(self.cache_name)
        self._expiring.clear()

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()

    def expiring(self, ttl_ms: int) -> Cache:
        """The cache as seen by writes that give their entries ``ttl_ms`` to live (created or updated)."""
        handle = self._expiring.get(ttl_ms)
        if handle is None:
            if ttl_ms <= 0:
                raise InterfaceError(f"ignite: a TTL is a number of milliseconds > 0, not {ttl_ms!r}",
                                     backend="ignite")
            if len(self._expiring) >= EXPIRY_HANDLES:
                del self._expiring[next(iter(self._expiring))]
            handle = self._expiring[ttl_ms] = self.cache.with_expire_policy(create=ttl_ms, update=ttl_ms)
        return handle

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self.cache.get(key)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        found = await self.cache.get_all(keys)
        return [found.get(key) for key in keys]

    async def set_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        latest = {key: (value, ttl_ms) for key, value, ttl_ms in items}   # a key given twice: the last wins
        by_ttl: dict[int, dict[str, bytes]] = {}
        for key, (value, ttl_ms) in latest.items():
            by_ttl.setdefault(ttl_ms, {})[key] = value
        writes = [self.expiring(ttl_ms).put_all(group) for ttl_ms, group in by_ttl.items()]
        if len(writes) == 1:
            await writes[0]
        elif writes:
            await asyncio.gather(*writes)

    async def delete_many(self, keys: Sequence[str]) -> None:
        if keys:
            await self.cache.remove_keys(keys)

    async def delete_prefix(self, prefix: str) -> int:
        """Scan the whole cache and remove the keys that start with ``prefix``; how many matched.

        The count includes matches that expired or were removed by someone else while the
        scan ran (``remove_keys`` does not say which keys existed).
        """
        removed = 0
        batch: list[str] = []
        async with self.cache.scan(page_size=SCAN_PAGE) as cursor:
            async for key, _ in cursor:
                if isinstance(key, str) and key.startswith(prefix):
                    batch.append(key)
                    if len(batch) >= REMOVE_BATCH:
                        await self.cache.remove_keys(batch)
                        removed += len(batch)
                        batch = []
        if batch:
            await self.cache.remove_keys(batch)
            removed += len(batch)
        return removed

    async def acquire(self, key: str, token: bytes, ttl_ms: int) -> bool:
        return await self.expiring(ttl_ms).put_if_absent(key, token)

    async def release(self, key: str, token: bytes) -> None:
        await self.cache.remove_if_equals(key, token)
