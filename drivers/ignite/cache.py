"""Key-value operations on one cache.  A ``Cache`` is a cheap handle: making one does no I/O.

Every operation builds its request through the client's ``Session`` (which binds
it to the task's transaction, routes it to the key's primary node and retries
reads) and calls nothing else.  Null keys and values are refused here, before
anything is sent: the node would answer "Argument cannot be null".
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from drivers.ignite.codec import BinaryTypeRegistry, write_value
from drivers.ignite.codec.hashing import string_hash
from drivers.ignite.connection import Connection
from drivers.ignite.cursors import ScanCursor
from drivers.ignite.errors import LocalProtocolError
from drivers.ignite.protocol.cache_config import CacheConfig, decode_cache_config
from drivers.ignite.protocol.constants import OpCode
from drivers.ignite.protocol.messages import decode_bool, decode_get_all, decode_long, decode_value
from drivers.ignite.protocol.wire import I32, pack
from drivers.ignite.session import Session, Target

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


def _null(what: str, op: str) -> LocalProtocolError:
    hint = " (remove_key deletes an entry)" if what == "value" else ""
    return LocalProtocolError(f"ignite: {op}: a cache {what} cannot be None; Ignite stores no nulls{hint}")


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


class Cache:
    """A named cache.  Keys and values follow the codec's Python <-> Java mapping."""

    __slots__ = ("_plain", "_session", "_target", "cache_id", "name")

    def __init__(self, session: Session, name: str, expiry: tuple[int, int, int] | None = None) -> None:
        self._session = session
        self.name = name
        self.cache_id = string_hash(name)
        self._target = Target(self.cache_id, expiry)
        self._plain = self._target if expiry is None else Target(self.cache_id)  # ops that take no expiry

    def __repr__(self) -> str:
        return f"<Cache {self.name!r}>"

    async def _call(self, op: int, decode: Decoder) -> Any:
        """A request with no key (clear, remove_all)."""
        session = self._session
        return await session.send(session.request(op, self._target), decode)

    async def _keyed(self, op: int, decode: Decoder, key: Any, *values: Any, read: bool = False,
                     tail: bytes = b"") -> Any:
        """A single-key request, sent to the key's primary node when the partition map is known."""
        if key is None:
            raise _null("key", _OP_NAMES[op])
        session = self._session
        req = session.request(op, self._target)
        buf = req.buf
        key_at = len(buf)
        registry = session.registry
        write_value(buf, key, registry)
        for value in values:
            if value is None:
                raise _null("value", _OP_NAMES[op])
            write_value(buf, value, registry)
        if tail:
            buf += tail
        if session.router.partition_aware:
            session.route(req, self._target, key, key_at)
        return await session.send(req, decode, retry=read)

    async def _call_keys(self, op: int, decode: Decoder, keys: Sequence[Any], *, read: bool = False,
                         conn: Connection | None = None) -> Any:
        session = self._session
        req = session.request(op, self._target)
        if conn is not None and req.conn is None:
            req.conn = conn  # the keys' primary node (never inside a transaction: by_node says so)
        buf = req.buf
        buf += pack(I32, len(keys))
        registry = session.registry
        for key in keys:
            if key is None:
                raise _null("key", _OP_NAMES[op])
            write_value(buf, key, registry)
        return await session.send(req, decode, retry=read)

    async def _batch(self, op: int, decode: Decoder, keys: Sequence[Any], read: bool) -> list[Any]:
        """A multi-key request split by primary node and sent in parallel; one result per part."""
        groups = self._session.by_node(self._target, keys)
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
        session = self._session
        req = session.request(OpCode.CACHE_GET_SIZE, self._plain)
        req.buf += tail
        return int(await session.send(req, _long, retry=True))

    def scan(self, page_size: int = 1024, partitions: int = -1, local: bool = False) -> ScanCursor:
        """An async iterator of (key, value) over the cache, fetched ``page_size`` at a time."""
        return ScanCursor(self._session, self.cache_id, page_size=page_size, partition=partitions, local=local)

    # -- writing -----------------------------------------------------------------------------

    async def put(self, key: Any, value: Any) -> None:
        await self._keyed(OpCode.CACHE_PUT, _none, key, value)

    async def put_all(self, pairs: dict[Any, Any] | Iterable[tuple[Any, Any]]) -> None:
        """Store many entries: one request per primary node, sent in parallel."""
        items = list(pairs.items() if isinstance(pairs, dict) else pairs)
        groups = self._session.by_node(self._target, [k for k, _ in items])
        if groups is None:
            await self._put_all(items, None)  # in this task: a transaction is used only by its own task
            return
        await asyncio.gather(*(self._put_all([items[i] for i in idxs], conn) for conn, idxs in groups.items()))

    async def _put_all(self, items: list[tuple[Any, Any]], conn: Connection | None) -> None:
        session = self._session
        req = session.request(OpCode.CACHE_PUT_ALL, self._target)
        if conn is not None and req.conn is None:
            req.conn = conn
        buf = req.buf
        buf += pack(I32, len(items))
        registry = session.registry
        for key, value in items:
            if key is None or value is None:
                raise _null("key" if key is None else "value", "cache_put_all")
            write_value(buf, key, registry)
            write_value(buf, value, registry)
        await session.send(req, _none)

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
        return Cache(self._session, self.name, (_ttl_ms(create), _ttl_ms(update), _ttl_ms(access)))

    async def settings(self) -> CacheConfig:
        """The cache's configuration as the node reports it."""
        session = self._session
        req = session.request(OpCode.CACHE_GET_CONFIGURATION)  # on the task's transaction's connection, if any,
        req.buf += self._plain.prefix                            # but not part of it
        version = session.router.version

        def decode(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> CacheConfig:
            return decode_cache_config(frame, offset, version, registry)

        result: CacheConfig = await session.send(req, decode)
        return result

    async def destroy(self) -> None:
        """Destroy the cache and its data on the cluster."""
        session = self._session
        req = session.request(OpCode.CACHE_DESTROY)
        req.buf += pack(I32, self.cache_id)
        await session.send(req, _none)
        session.router.forget(self.cache_id)


_OP_NAMES = {int(op): op.name.lower() for op in OpCode}
