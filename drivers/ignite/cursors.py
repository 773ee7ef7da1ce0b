"""Cursors over SQL and scan queries: async iterators that fetch further pages lazily.

A cursor is pinned to the connection that opened it (the node keeps its
state).  It is closed on the node when it is exhausted, when ``aclose`` runs
(``async with`` does it, so does breaking out of ``async with``), and, as a
last resort, when the cursor object is garbage collected before either — so a
loop that breaks early never leaks server cursors towards the node's limit of
128 per connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from drivers.ignite.codec import BinaryTypeRegistry
from drivers.ignite.connection import Connection
from drivers.ignite.errors import IgniteError, ResourceDoesNotExist
from drivers.ignite.protocol.constants import OpCode
from drivers.ignite.protocol.messages import (
    decode_scan,
    decode_scan_page,
    decode_sql_fields,
    decode_sql_fields_page,
    encode_long,
    encode_resource_close,
    encode_scan,
    encode_sql_fields,
)
from drivers.ignite.session import Session
from drivers.kit import State


def _nothing(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> None:
    return None


def _sql_first_page(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> Any:
    return decode_sql_fields(frame, offset, registry, True)


class _Cursor:
    """Paging and closing shared by both cursor kinds."""

    _page_op: int

    def __init__(self, session: Session) -> None:
        self._session = session
        self._conn: Connection | None = None
        self._cursor_id: int | None = None
        self._rows: list[Any] = []
        self._index = 0
        self._has_more = True
        self._started = False
        self._closed = False

    @property
    def node(self) -> str | None:
        """The address ("host:port") of the node that holds this cursor (``None`` before the first page)."""
        return f"{self._conn.host}:{self._conn.port}" if self._conn is not None else None

    async def _first(self) -> None:
        raise NotImplementedError

    def _decode_page(self, frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> tuple[list[Any], bool]:
        raise NotImplementedError

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._index < len(self._rows):
                row = self._rows[self._index]
                self._index += 1
                return row
            if self._closed:
                raise StopAsyncIteration
            try:
                if not self._started:
                    self._started = True
                    limiter = self._session.queries
                    began = await limiter.acquire()
                    try:
                        await self._first()
                    finally:
                        limiter.release(began)
                    wait = limiter.turn()
                    if wait is not None:
                        await wait
                elif self._has_more:
                    await self._next_page()
                else:
                    self._closed = True
                    raise StopAsyncIteration
            except IgniteError:
                await self.aclose()
                raise
            if not self._has_more:
                self._cursor_id = None  # the node closes an exhausted cursor by itself

    async def _next_page(self) -> None:
        assert self._conn is not None and self._cursor_id is not None
        session = self._session
        req = session.request(self._page_op, pin=self._conn)
        encode_long(req.buf, self._cursor_id)
        rows, self._has_more = await session.send(req, self._decode_page)
        self._rows, self._index = rows, 0

    async def aclose(self) -> None:
        """Close the cursor on the node if it is still open there.  Idempotent."""
        self._closed = True
        self._rows, self._index = [], 0
        cursor_id, self._cursor_id = self._cursor_id, None
        conn = self._conn
        if cursor_id is None or conn is None or conn.state is not State.READY:
            return
        session = self._session
        req = session.request(OpCode.RESOURCE_CLOSE, pin=conn)
        encode_resource_close(req.buf, cursor_id)
        try:
            await session.send(req, _nothing)
        except ResourceDoesNotExist:
            pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Last resort for a loop that broke out without aclose: close without waiting.
        cursor_id, conn = self._cursor_id, self._conn
        if cursor_id is None or conn is None or conn.state is not State.READY:
            return
        req = self._session.request(OpCode.RESOURCE_CLOSE, pin=conn)
        encode_resource_close(req.buf, cursor_id)
        try:
            fut = self._session.submit(req)
        except (IgniteError, RuntimeError):
            return
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())


class SqlFieldsCursor(_Cursor):
    """Rows of a SQL fields query.  With ``include_field_names`` the first item is the column names."""

    _page_op = OpCode.QUERY_SQL_FIELDS_CURSOR_GET_PAGE

    def __init__(self, session: Session, cache_id: int, query: str, args: Sequence[Any],
                 options: dict[str, Any]) -> None:
        super().__init__(session)
        self._cache_id = cache_id
        self._query = query
        self._args = args
        # Names are always fetched (a few bytes once); they are yielded first only when asked.
        self._include_names = bool(options.pop("include_field_names", False))
        self._options = {**options, "include_field_names": True}
        self.field_names: tuple[str, ...] | None = None
        self.field_count = 0

    async def _first(self) -> None:
        session = self._session
        req = session.request(OpCode.QUERY_SQL_FIELDS)
        conn = self._conn = await session.pin(req)  # the node keeps the cursor: its pages come from there
        encode_sql_fields(req.buf, session.registry, self._cache_id, self._query, self._args,
                          features=conn.features, tx_id=req.tx_id, **self._options)
        result = await session.send(req, _sql_first_page)
        self._cursor_id = result.cursor_id
        self.field_count = result.field_count
        self.field_names = result.field_names
        self._has_more = result.has_more
        rows = list(result.rows)
        if self._include_names and self.field_names is not None:
            rows.insert(0, list(self.field_names))
        self._rows, self._index = rows, 0

    def _decode_page(self, frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> tuple[list[Any], bool]:
        page = decode_sql_fields_page(frame, offset, registry, self.field_count)
        return page.rows, page.has_more


class ScanCursor(_Cursor):
    """(key, value) pairs of a cache, a page at a time."""

    _page_op = OpCode.QUERY_SCAN_CURSOR_GET_PAGE

    def __init__(self, session: Session, cache_id: int, *, page_size: int, partition: int, local: bool) -> None:
        super().__init__(session)
        self._cache_id = cache_id
        self._page_size = page_size
        self._partition = partition
        self._local = local

    async def _first(self) -> None:
        session = self._session
        req = session.request(OpCode.QUERY_SCAN)
        self._conn = await session.pin(req)
        encode_scan(req.buf, session.registry, self._cache_id, page_size=self._page_size,
                    partition=self._partition, local=self._local, tx_id=req.tx_id)
        result = await session.send(req, decode_scan)
        self._cursor_id = result.cursor_id
        self._has_more = result.has_more
        self._rows, self._index = list(result.rows), 0

    def _decode_page(self, frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> tuple[list[Any], bool]:
        page = decode_scan_page(frame, offset, registry)
        return page.rows, page.has_more
