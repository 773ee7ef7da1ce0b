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
from typing import TYPE_CHECKING, Any, Self

from drivers.ignite.codec import BinaryTypeRegistry
from drivers.ignite.connection import Connection, State, new_request
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

if TYPE_CHECKING:
    from drivers.ignite.client import Client


class _Cursor:
    """Paging and closing shared by both cursor kinds."""

    _page_op: int

    def __init__(self, client: Client) -> None:
        self._client = client
        self._conn: Connection | None = None
        self._cursor_id: int | None = None
        self._rows: list[Any] = []
        self._index = 0
        self._has_more = True
        self._started = False
        self._closed = False

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
                    await self._first()
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
        buf = new_request(self._page_op)
        encode_long(buf, self._cursor_id)
        rows, self._has_more = await self._client._roundtrip(buf, self._decode_page, conn=self._conn)
        self._rows, self._index = rows, 0

    async def aclose(self) -> None:
        """Close the cursor on the node if it is still open there.  Idempotent."""
        self._closed = True
        self._rows, self._index = [], 0
        cursor_id, self._cursor_id = self._cursor_id, None
        conn = self._conn
        if cursor_id is None or conn is None or conn.state is not State.READY:
            return
        buf = new_request(OpCode.RESOURCE_CLOSE)
        encode_resource_close(buf, cursor_id)
        try:
            await conn.request(buf)
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
        buf = new_request(OpCode.RESOURCE_CLOSE)
        encode_resource_close(buf, cursor_id)
        try:
            _, fut = conn.send(buf)
        except (IgniteError, RuntimeError):
            return
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())


class SqlFieldsCursor(_Cursor):
    """Rows of a SQL fields query.  With ``include_field_names`` the first item is the column names."""

    _page_op = OpCode.QUERY_SQL_FIELDS_CURSOR_GET_PAGE

    def __init__(self, client: Client, cache_id: int, query: str, args: Sequence[Any],
                 options: dict[str, Any]) -> None:
        super().__init__(client)
        self._cache_id = cache_id
        self._query = query
        self._args = args
        # Names are always fetched (a few bytes once); they are yielded first only when asked.
        self._include_names = bool(options.pop("include_field_names", False))
        self._options = {**options, "include_field_names": True}
        self.field_names: tuple[str, ...] | None = None
        self.field_count = 0

    async def _first(self) -> None:
        client = self._client
        conn = await client._request_connection()
        self._conn = conn
        buf = new_request(OpCode.QUERY_SQL_FIELDS)
        encode_sql_fields(buf, client.registry, self._cache_id, self._query, self._args,
                          features=conn.features, tx_id=client._tx_id(), **self._options)
        result = await client._roundtrip(buf, lambda f, o, r: decode_sql_fields(f, o, r, True), conn=conn)
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

    def __init__(self, client: Client, cache_id: int, *, page_size: int, partition: int, local: bool) -> None:
        super().__init__(client)
        self._cache_id = cache_id
        self._page_size = page_size
        self._partition = partition
        self._local = local

    async def _first(self) -> None:
        client = self._client
        conn = await client._request_connection()
        self._conn = conn
        buf = new_request(OpCode.QUERY_SCAN)
        encode_scan(buf, client.registry, self._cache_id, page_size=self._page_size,
                    partition=self._partition, local=self._local, tx_id=client._tx_id())
        result = await client._roundtrip(buf, decode_scan, conn=conn)
        self._cursor_id = result.cursor_id
        self._has_more = result.has_more
        self._rows, self._index = list(result.rows), 0

    def _decode_page(self, frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> tuple[list[Any], bool]:
        page = decode_scan_page(frame, offset, registry)
        return page.rows, page.has_more
