"""TLS and authentication against the stack's secure node (``ignite-secure``: TLS + ignite/ignite)."""

from __future__ import annotations

import ssl
import time
import uuid

import pytest

from app.settings import Settings
from drivers.ignite import Client
from drivers.ignite.errors import AuthenticationError, IgniteConnectionError, IgniteTimeout
from stack.services import SecureIgniteNode

NODE = SecureIgniteNode.stack()
FAST = 2.0  # seconds: every failure below must be reported well within this


@pytest.fixture(scope="module")
async def secure(settings: Settings) -> SecureIgniteNode:
    """The secure node is up (the session's `stack up` started it), and has served one TLS handshake.

    The node's first TLS handshake after its start runs code the JVM has not compiled yet: over the
    default 2 s connect timeout on a machine running at a third of its speed.  That is the node
    warming up, not what these tests are about, so one connection with a long timeout comes first.
    """
    async with _client(NODE, connect_timeout_s=60.0):
        pass
    return NODE


def _client(node: SecureIgniteNode, **overrides: object) -> Client:
    options: dict[str, object] = dict(username=node.USERNAME, password=node.PASSWORD, ssl=node.ssl_context(),
                                      request_timeout_s=10.0)
    options.update(overrides)
    return Client([(node.host, node.port)], **options)  # type: ignore[arg-type]


async def _sql(client: Client, query: str, *args: object) -> list[list[object]]:
    async with client.sql(query, query_args=list(args)) as rows:
        return [row async for row in rows]


async def test_tls_and_good_credentials_serve_key_value_and_sql(secure: SecureIgniteNode) -> None:
    async with _client(secure) as client:
        cache = await client.create_cache(f"secure_{uuid.uuid4().hex[:10]}")
        try:
            await cache.put(1, "over TLS")
            assert await cache.get(1) == "over TLS"
            table = f"T_{uuid.uuid4().hex[:10].upper()}"
            assert await _sql(client, f"CREATE TABLE {table} (id INT PRIMARY KEY, v VARCHAR)") == [[0]]
            try:
                assert await _sql(client, f"INSERT INTO {table} (id, v) VALUES (?, ?)", 1, "a") == [[1]]
                assert await _sql(client, f"SELECT v FROM {table} WHERE id = ?", 1) == [["a"]]
            finally:
                await _sql(client, f"DROP TABLE {table}")
        finally:
            await cache.destroy()


async def test_a_bad_password_fails_fast_with_authentication_error(secure: SecureIgniteNode) -> None:
    began = time.monotonic()
    with pytest.raises(AuthenticationError, match="authentication failed") as caught:
        async with _client(secure, password="not-the-password"):
            pass
    assert time.monotonic() - began < FAST
    assert f"{secure.host}:{secure.port}" in str(caught.value)
    assert caught.value.code == 2000


async def test_no_credentials_on_an_authenticating_node_fail_with_authentication_error(
        secure: SecureIgniteNode) -> None:
    with pytest.raises(AuthenticationError):
        async with _client(secure, username=None, password=None):
            pass


async def test_plaintext_to_the_tls_port_fails_fast_naming_the_address(secure: SecureIgniteNode) -> None:
    # connect_timeout_s is far above FAST: running into it would fail the time check, and a
    # timeout is not the answer either way (the node closes the connection at once).
    began = time.monotonic()
    with pytest.raises(IgniteConnectionError) as caught:
        async with _client(secure, ssl=None, connect_timeout_s=10.0):
            pass
    assert time.monotonic() - began < FAST
    assert not isinstance(caught.value, (IgniteTimeout, AuthenticationError))
    assert f"{secure.host}:{secure.port}" in str(caught.value)
    assert "closed the connection during the handshake" in str(caught.value)
    assert "does it expect TLS?" in str(caught.value)


async def test_tls_to_a_plaintext_port_fails_fast_with_a_clear_error(settings: Settings,
                                                                     secure: SecureIgniteNode) -> None:
    host, port = settings.ignite.nodes[0]
    began = time.monotonic()
    with pytest.raises(IgniteConnectionError) as caught:
        async with Client([(host, port)], ssl=secure.ssl_context(), connect_timeout_s=10.0):
            pass
    assert time.monotonic() - began < FAST
    assert not isinstance(caught.value, IgniteTimeout)
    assert f"{host}:{port}" in str(caught.value)
    assert "during the TLS handshake (does this port serve TLS?)" in str(caught.value)


async def test_a_certificate_from_an_unknown_ca_is_refused(secure: SecureIgniteNode) -> None:
    with pytest.raises(IgniteConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        async with _client(secure, ssl=ssl.create_default_context()):
            pass
