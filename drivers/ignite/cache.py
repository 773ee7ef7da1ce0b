"""Key-value operations on one cache.  A ``Cache`` is a cheap handle: making one does no I/O."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from drivers.ignite.codec import BinaryTypeRegistry, write_value
from drivers.ignite.codec.hashing import string_hash
from drivers.ignite.connection import Connection, new_request
from drivers.ignite.cursors import ScanCursor
from drivers.ignite.errors import LocalProtocolError
from drivers.ignite.protocol.cache_config import CacheConfig, decode_cache_config
from drivers.ignite.protocol.constants import OpCode
from drivers.ignite.protocol.messages import (
    cache_header,
    decode_bool,
    decode_get_all,
    decode_long,
    decode_value,
)
from drivers.ignite.protocol.wire import I32, pack
from drivers.ignite.txcontext import active_tx

if TYPE_CHECKING:
    from drivers.ignite.client import Client

Decoder = Callable[[memoryview, int, BinaryTypeRegistry], Any]

# TTL sentinels of the protocol, in milliseconds.
ETERNAL = -1
UNCHANGED = -2


def _none(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> None:
    return None


def _bool(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> bool:
    return decode_bool(frame, offset)


def _long(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> int:
    return decode_long(frame, offset)


def _ttl_ms(value: int | float | datetime.timedelta | None) -> int:
    """A TTL for the wire: None = unchanged, timedelta, or milliseconds (-1 eternal)."""
    if value is None:
        return UNCHANGED
    if isinstance(value, datetime.timedelta):
        return max(0, int(value.total_seconds() * 1000))
    if isinstance(value, bool) or not isinstance(value, int | float) or (value < 0 and value not in (-1, -2)):
        raise LocalProtocolError(f"an expiry TTL is a timedelta or milliseconds >= 0 (or -1, -2), not {value!r}")
    return int(value)


class PeekMode:
    """Peek modes for ``get_size``: Java's ``CachePeekMode`` ordinals, as the node reads them."""

    ALL = 0
    NEAR = 1
    PRIMARY = 2
    BACKUP = 3
    ONHEAP = 4
    OFFHEAP = 5


_PEEK_MODES = frozenset(range(6))


def _peek_modes(peek_modes: int | Iterable[int] | None) -> list[int]:
    modes = [] if peek_modes is None else [peek_modes] if isinstance(peek_modes, int) else list(peek_modes)
    for mode in modes:
        if mode not in _PEEK_MODES:
            raise LocalProtocolError(f"unknown peek mode {mode!r}; use PeekMode.ALL, NEAR, PRIMARY, "
                                     "BACKUP, ONHEAP or OFFHEAP")
    return modes


def _peek_mode_bytes(peek_modes: int | Iterable[int] | None) -> bytes:
    """``int32 count | byte mode x count``, as ops 1020 and 1021 carry them."""
    modes = _peek_modes(peek_modes)
    return pack(I32, len(modes)) + bytes(modes)
_HEADERS = {int(op): bytes(new_request(op)) for op in OpCode}


class Cache:
    """A named cache.  Keys and values follow the codec's Python <-> Java mapping."""

    __slots__ = ("_client", "_expiry", "_prefix", "cache_id", "name")

    def __init__(self, client: Client, name: str,
                 expiry: tuple[int, int, int] | None = None) -> None:
        self._client = client
        self.name = name
        self.cache_id = string_hash(name)
        self._expiry = expiry
        prefix = bytearray()
        cache_header(prefix, self.cache_id, 0, expiry, None)
        self._prefix = bytes(prefix)  # the cache-op prefix outside transactions, built once

    def _begin(self, op: int) -> bytearray:
        """A request for ``op`` with this cache's prefix (and the task's transaction, if any)."""
        tx = active_tx(self._client)
        if tx is None:
            buf = bytearray(_HEADERS[op])
            buf += self._prefix
        else:
            buf = new_request(op)
            cache_header(buf, self.cache_id, 0, self._expiry, tx.tx_id)
        return buf

    def __repr__(self) -> str:
        return f"<Cache {self.name!r}>"

    async def _call(self, op: int, decode: Decoder) -> Any:
        """A request with no key (clear, remove_all)."""
        return await self._client._roundtrip(self._begin(op), decode)

    async def _keyed(self, op: int, decode: Decoder, key: Any, *rest: Any, read: bool = False,
                     conn: Connection | None = None, tail: bytes = b"") -> Any:
        """A single-key request, sent to the key's primary node when the partition map is known."""
        client = self._client
        buf = self._begin(op)
        key_at = len(buf)
        registry = client.registry
        write_value(buf, key, registry)
        for value in rest:
            write_value(buf, value, registry)
        buf += tail
        if conn is None and client._router.partition_aware and active_tx(client) is None:
            conn = client._primary(self.cache_id, key, buf, key_at)
        return await client._roundtrip(buf, decode, conn=conn, retry=read)

    async def _call_keys(self, op: int, decode: Decoder, keys: Sequence[Any], *, read: bool = False,
                         conn: Connection | None = None) -> Any:
        buf = self._begin(op)
        buf += pack(I32, len(keys))
        registry = self._client.registry
        for key in keys:
            write_value(buf, key, registry)
        return await self._client._roundtrip(buf, decode, conn=conn, retry=read)

    def _by_node(self, keys: Sequence[Any]) -> dict[Connection | None, list[int]] | None:
        """Key indexes grouped by primary node's connection; None when one request will do."""
        if active_tx(self._client) is not None or len(keys) < 2:
            return None
        router = self._client._router
        pmap = router.map_for(self.cache_id)
        if pmap is None:
            return None
        groups: dict[Connection | None, list[int]] = {}
        key_hash = self._client.key_hash
        for i, key in enumerate(keys):
            h = key_hash(key, pmap.key_fields)
            conn = router.node_conn(pmap.node_for_hash(h)) if h is not None else None
            groups.setdefault(conn, []).append(i)
        return groups if len(groups) > 1 else None

    async def _batch(self, op: int, decode: Decoder, keys: Sequence[Any], read: bool) -> list[Any]:
        """A multi-key request split by primary node and sent in parallel; one result per part."""
        groups = self._by_node(keys)
        if groups is None:
            return [await self._call_keys(op, decode, keys, read=read)]
        return list(await asyncio.gather(*(
            self._call_keys(op, decode, [keys[i] for i in idxs], read=read, conn=conn)
            for conn, idxs in groups.items())))

    # -- reading -----------------------------------------------------------------------------

    async def get(self, key: Any) -> Any:
        """The value under ``key``, or None."""
        return await self._keyed(OpCode.CACHE_GET, decode_value, key, read=True)

    async def get_all(self, keys: Iterable[Any]) -> dict[Any, Any]:
        """The values of the keys that exist, as a dict (one request per primary node, in parallel)."""
        merged: dict[Any, Any] = {}
        for part in await self._batch(OpCode.CACHE_GET_ALL, decode_get_all, list(keys), read=True):
            merged.update(part)
        return merged

    async def contains_key(self, key: Any) -> bool:
        return bool(await self._keyed(OpCode.CACHE_CONTAINS_KEY, _bool, key, read=True))

    async def contains_keys(self, keys: Iterable[Any]) -> bool:
        """True when every key exists."""
        return all(await self._batch(OpCode.CACHE_CONTAINS_KEYS, _bool, list(keys), read=True))

    async def local_peek(self, key: Any) -> Any:
        """The value as the node that receives the request holds it locally (None if it does not).

        The node peeks into all its storages (primary and backup copies); Ignite ignores peek
        modes for this operation, so none are sent.
        """
        return await self._keyed(OpCode.CACHE_LOCAL_PEEK, decode_value, key, read=True)

    async def get_size(self, peek_modes: int | Iterable[int] | None = None) -> int:
        """Number of entries (``PeekMode`` values; default: the node's default, primary entries)."""
        tail = _peek_mode_bytes(peek_modes)
        buf = new_request(OpCode.CACHE_GET_SIZE)
        tx = active_tx(self._client)
        cache_header(buf, self.cache_id, 0, None, tx.tx_id if tx else None)
        buf += tail
        return int(await self._client._roundtrip(buf, _long, retry=True))

    def scan(self, page_size: int = 1024, partitions: int = -1, local: bool = False) -> ScanCursor:
        """An async iterator of (key, value) over the cache, fetched ``page_size`` at a time."""
        return ScanCursor(self._client, self.cache_id, page_size=page_size, partition=partitions, local=local)

    # -- writing -----------------------------------------------------------------------------

    async def put(self, key: Any, value: Any) -> None:
        await self._keyed(OpCode.CACHE_PUT, _none, key, value)

    async def put_all(self, pairs: dict[Any, Any] | Iterable[tuple[Any, Any]]) -> None:
        """Store many entries: one request per primary node, sent in parallel."""
        items = list(pairs.items() if isinstance(pairs, dict) else pairs)
        groups = self._by_node([k for k, _ in items])
        if groups is None and active_tx(self._client) is not None:
            await self._put_all(items, None)  # from this task: a transaction is used only by its own task
            return
        parts = [(None, items)] if groups is None else [
            (conn, [items[i] for i in idxs]) for conn, idxs in groups.items()]
        await asyncio.gather(*(self._put_all(part, conn) for conn, part in parts))

    async def _put_all(self, items: list[tuple[Any, Any]], conn: Connection | None) -> None:
        buf = self._begin(OpCode.CACHE_PUT_ALL)
        buf += pack(I32, len(items))
        registry = self._client.registry
        for key, value in items:
            write_value(buf, key, registry)
            write_value(buf, value, registry)
        await self._client._roundtrip(buf, _none, conn=conn)

    async def get_and_put(self, key: Any, value: Any) -> Any:
        """Put, returning the previous value (or None)."""
        return await self._keyed(OpCode.CACHE_GET_AND_PUT, decode_value, key, value)

    async def get_and_replace(self, key: Any, value: Any) -> Any:
        """Replace an existing value, returning the previous one (None, and no write, if absent)."""
        return await self._keyed(OpCode.CACHE_GET_AND_REPLACE, decode_value, key, value)

    async def get_and_remove(self, key: Any) -> Any:
        return await self._keyed(OpCode.CACHE_GET_AND_REMOVE, decode_value, key)

    async def put_if_absent(self, key: Any, value: Any) -> bool:
        """True when the value was stored (the key did not exist)."""
        return bool(await self._keyed(OpCode.CACHE_PUT_IF_ABSENT, _bool, key, value))

    async def get_and_put_if_absent(self, key: Any, value: Any) -> Any:
        """The existing value, or None after storing ``value``."""
        return await self._keyed(OpCode.CACHE_GET_AND_PUT_IF_ABSENT, decode_value, key, value)

    async def replace(self, key: Any, value: Any) -> bool:
        """True when an existing value was replaced."""
        return bool(await self._keyed(OpCode.CACHE_REPLACE, _bool, key, value))

    async def replace_if_equals(self, key: Any, expected: Any, value: Any) -> bool:
        return bool(await self._keyed(OpCode.CACHE_REPLACE_IF_EQUALS, _bool, key, expected, value))

    async def clear(self) -> None:
        """Remove every entry without notifying listeners or writers."""
        await self._call(OpCode.CACHE_CLEAR, _none)

    async def clear_key(self, key: Any) -> None:
        await self._keyed(OpCode.CACHE_CLEAR_KEY, _none, key)

    async def clear_keys(self, keys: Iterable[Any]) -> None:
        await self._batch(OpCode.CACHE_CLEAR_KEYS, _none, list(keys), read=False)

    async def remove_key(self, key: Any) -> bool:
        """True when the key existed."""
        return bool(await self._keyed(OpCode.CACHE_REMOVE_KEY, _bool, key))

    async def remove_if_equals(self, key: Any, expected: Any) -> bool:
        return bool(await self._keyed(OpCode.CACHE_REMOVE_IF_EQUALS, _bool, key, expected))

    async def remove_keys(self, keys: Iterable[Any]) -> None:
        await self._batch(OpCode.CACHE_REMOVE_KEYS, _none, list(keys), read=False)

    async def remove_all(self) -> None:
        await self._call(OpCode.CACHE_REMOVE_ALL, _none)

    # -- the cache itself --------------------------------------------------------------------

    def with_expire_policy(self, *, create: int | float | datetime.timedelta | None = None,
                           update: int | float | datetime.timedelta | None = None,
                           access: int | float | datetime.timedelta | None = None) -> Cache:
        """A view of this cache whose writes carry TTLs (ms or timedelta; None = unchanged)."""
        return Cache(self._client, self.name, (_ttl_ms(create), _ttl_ms(update), _ttl_ms(access)))

    async def settings(self) -> CacheConfig:
        """The cache's configuration as the node reports it."""
        buf = new_request(OpCode.CACHE_GET_CONFIGURATION)
        cache_header(buf, self.cache_id, 0)
        version = self._client.protocol_version

        def decode(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> CacheConfig:
            return decode_cache_config(frame, offset, version, registry)

        result: CacheConfig = await self._client._roundtrip(buf, decode)
        return result

    async def destroy(self) -> None:
        """Destroy the cache and its data on the cluster."""
        buf = new_request(OpCode.CACHE_DESTROY)
        buf += pack(I32, self.cache_id)
        await self._client._roundtrip(buf, _none)

