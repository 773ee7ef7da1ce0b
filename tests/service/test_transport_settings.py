"""The service's transport settings, through the service: ``server.transport``, ``server.header_timeout_s``,
``server.idle_timeout_s`` (``ASYNCSTACK_SERVER__TRANSPORT`` and the rest).

The timeouts are shortened here (defaults: 10 s and 75 s) so the test takes about a second;
``tests/http/test_fast_server.py`` checks the same mechanisms on the transport alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess, start_server

pytestmark = pytest.mark.asyncio

TOO_BIG = b"POST /publish/x HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n"


@pytest.fixture(scope="module")
def fast(stack: None) -> Iterator[ServerProcess]:
    srv = start_server(env={"ASYNCSTACK_SERVER__HEADER_TIMEOUT_S": "0.4", "ASYNCSTACK_SERVER__IDLE_TIMEOUT_S": "1.0",
                            "ASYNCSTACK_SERVER__ACCESS_LOG": "false"})
    yield srv
    srv.stop()


async def _status_line(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return line


async def _seconds_until_closed(reader: asyncio.StreamReader, began: float) -> float:
    while await asyncio.wait_for(reader.read(65536), 5):
        pass
    return time.monotonic() - began


async def test_header_timeout_cuts_off_slow_headers(fast: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fast.port)
    began = time.monotonic()
    writer.write(b"GET /now HTTP/1.1\r\n")
    took = await _seconds_until_closed(reader, began)
    assert 0.35 <= took < 0.9, f"closed after {took:.2f} s; server.header_timeout_s is 0.4 (idle 1.0)"


async def test_idle_timeout_closes_a_kept_alive_connection(fast: ServerProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", fast.port)
    writer.write(b"GET /now HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await reader.readline()).startswith(b"HTTP/1.1 200")
    began = time.monotonic()
    took = await _seconds_until_closed(reader, began)
    assert 0.9 <= took < 1.8, f"closed after {took:.2f} s idle; server.idle_timeout_s is 1.0"


async def test_transport_setting_chooses_the_server(fast: ServerProcess) -> None:
    """A body over the transport's limit: 413 from the fast transport (default), 400 from Tornado's."""
    assert (await _status_line(fast.port, TOO_BIG)).startswith(b"HTTP/1.1 413")
    stock = start_server(env={"ASYNCSTACK_SERVER__TRANSPORT": "tornado", "ASYNCSTACK_SERVER__ACCESS_LOG": "false"})
    try:
        assert (await _status_line(stock.port, TOO_BIG)).startswith(b"HTTP/1.1 400")
    finally:
        stock.stop()


async def test_shutdown_closes_idle_connections_at_once_and_busy_ones_after_their_answer(stack: None) -> None:
    srv = start_server(env={"ASYNCSTACK_SERVER__ACCESS_LOG": "false"})      # default settings
    try:
        idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", srv.port)
        idle_writer.write(b"GET /now HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await idle_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        await idle_reader.readuntil(b"}")
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", srv.port)
        busy_writer.write(b"GET /mysql/sleep?s=1.5 HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.3)
        srv.proc.terminate()
        began = time.monotonic()
        assert await _seconds_until_closed(idle_reader, began) < 0.8       # not after the busy one's 1.5 s
        head = (await asyncio.wait_for(busy_reader.readuntil(b"\r\n\r\n"), 5)).decode()
        assert head.startswith("HTTP/1.1 200") and "Connection: close" in head, head
        assert srv.proc.wait(10) == 0
    finally:
        srv.stop()
