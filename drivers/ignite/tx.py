"""Transactions (ops 4000/4001, protocol 1.5.0 and later).

    async with client.tx_start(TransactionConcurrency.PESSIMISTIC,
                               TransactionIsolation.REPEATABLE_READ, timeout=5.0) as tx:
        await accounts.put("a", 10)
        await accounts.put("b", 20)
    # committed here; an exception (or a cancellation) in the block rolls back instead

Rules of this file:
- A transaction lives on the connection that started it.  While the block
  runs, ``txcontext.current_tx`` holds its ``TxBinding``: every request the
  task builds carries the tx id and goes to that connection, never elsewhere.
- Only the task that entered the block may use it (``active_tx()`` checks);
  a task spawned inside inherits the ContextVar and gets ``TransactionNotOwned``.
- A task in a transaction cannot start another (``TransactionNested``).
- ``commit()``/``rollback()`` end it early; after that the block's exit does
  nothing, and any use raises ``TransactionClosed``.
- The end request is sent before anything can interrupt it: a cancellation
  while it is in flight does not stop the node from committing or rolling back.
  A start request cancelled in flight rolls its transaction back when the id arrives.
- An optimistic commit the node refuses for a conflicting write raises
  ``TransactionConflict`` (the node's status 1 with a "read/write conflict" message).
"""

from __future__ import annotations

import asyncio
import contextvars
from types import TracebackType
from typing import TYPE_CHECKING

from drivers.ignite.connection import Connection, Reply, new_request
from drivers.ignite.errors import (
    IgniteError,
    LocalProtocolError,
    ServerError,
    TransactionClosed,
    TransactionConflict,
    TransactionError,
    TransactionNested,
    TransactionNotOwned,
    TxLimitExceeded,
)
from drivers.ignite.protocol.constants import OpCode, ProtocolVersion
from drivers.ignite.protocol.messages import Concurrency, Isolation, decode_int, encode_tx_end, encode_tx_start
from drivers.ignite.txcontext import TxBinding, current_tx

if TYPE_CHECKING:
    from drivers.ignite.client import Client

__all__ = ["Transaction", "TransactionConcurrency", "TransactionIsolation"]

TransactionConcurrency = Concurrency  # OPTIMISTIC = 0, PESSIMISTIC = 1 (pyignite's names)
TransactionIsolation = Isolation      # READ_COMMITTED = 0, REPEATABLE_READ = 1, SERIALIZABLE = 2

MIN_VERSION = ProtocolVersion(1, 5, 0)


class Transaction:
    """One Ignite transaction; enter it with ``async with`` (see ``Client.tx_start``)."""

    def __init__(self, client: Client, concurrency: Concurrency = Concurrency.PESSIMISTIC,
                 isolation: Isolation = Isolation.REPEATABLE_READ, timeout: float = 0,
                 label: str | None = None) -> None:
        try:
            self.concurrency = TransactionConcurrency(concurrency)
            self.isolation = TransactionIsolation(isolation)
        except ValueError as exc:
            raise LocalProtocolError(f"ignite: {exc}; use TransactionConcurrency and TransactionIsolation") from None
        if timeout < 0:
            raise LocalProtocolError(f"ignite: a transaction timeout is 0 (none) or more seconds, not {timeout}")
        self.timeout = timeout
        self.label = label
        self._client = client
        self._binding: TxBinding | None = None
        self._token: contextvars.Token[TxBinding | None] | None = None
        self._entered = False

    @property
    def tx_id(self) -> int | None:
        """The node's id of this transaction (``None`` before it started)."""
        return self._binding.tx_id if self._binding is not None else None

    @property
    def closed(self) -> bool:
        """True once committed or rolled back."""
        return self._binding is not None and self._binding.closed

    def __repr__(self) -> str:
        state = "not started" if self._binding is None else "closed" if self._binding.closed else "open"
        return (f"<Transaction {self.concurrency.name} {self.isolation.name} id={self.tx_id} {state}"
                + (f" label={self.label!r}>" if self.label else ">"))

    # -- the block ---------------------------------------------------------------------------------

    async def __aenter__(self) -> Transaction:
        if self._entered:
            raise TransactionError("ignite: a Transaction is entered once; call client.tx_start() again")
        outer = current_tx.get()
        if outer is not None and not outer.closed and outer.owner is asyncio.current_task():
            raise TransactionNested(f"ignite: this task is already in {outer.describe()}; Ignite transactions "
                                    "do not nest: commit or roll it back first")
        self._entered = True
        conn = await self._client._connection()
        if conn.version < MIN_VERSION:
            raise LocalProtocolError(
                f"ignite {conn.host}:{conn.port}: transactions need protocol 1.5.0 or later, and this "
                f"connection speaks {'.'.join(map(str, conn.version))}")
        tx_id = await self._start(conn)
        self._binding = TxBinding(tx_id, conn, client=self._client, label=self.label)
        self._token = current_tx.set(self._binding)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        binding, token = self._binding, self._token
        self._token = None
        if token is not None:
            current_tx.reset(token)
        if binding is None or binding.closed:
            return
        if exc is None:
            await self._end(binding, commit=True)
            return
        try:
            await self._end(binding, commit=False)  # then the block's exception goes on
        except IgniteError as rollback_error:
            exc.add_note(f"ignite: the rollback after this error failed too: {rollback_error!r}")

    # -- explicit end ------------------------------------------------------------------------------

    async def commit(self) -> None:
        """Commit now; the block's exit then does nothing more."""
        await self._end(self._usable(), commit=True)

    async def rollback(self) -> None:
        """Roll back now; the block's exit then does nothing more."""
        await self._end(self._usable(), commit=False)

    def _usable(self) -> TxBinding:
        binding = self._binding
        if binding is None:
            raise TransactionError("ignite: the transaction has not started; use `async with client.tx_start()`")
        if binding.owner is not None and binding.owner is not asyncio.current_task():
            raise TransactionNotOwned(f"ignite: {binding.describe()} belongs to another task")
        if binding.closed:
            raise TransactionClosed(f"ignite: {binding.describe()} is already committed or rolled back")
        return binding

    # -- requests ----------------------------------------------------------------------------------

    async def _start(self, conn: Connection) -> int:
        buf = new_request(OpCode.TX_START)
        encode_tx_start(buf, self.concurrency, self.isolation, round(self.timeout * 1000), self.label)
        _, reply = conn.send(buf)
        try:
            return _tx_id(await asyncio.shield(reply))
        except TxLimitExceeded as exc:
            raise TxLimitExceeded(
                f"ignite {conn.host}:{conn.port}: the node refuses another transaction on this connection: "
                "it has as many active ones as it allows per connection (ThinClientConfiguration."
                f"maxActiveTxPerConnection, 100 by default); end some first. The node said: {exc.args[0]}",
                exc.status) from exc
        except asyncio.CancelledError:
            # The node may start the transaction anyway: roll it back as soon as its id arrives.
            reply.add_done_callback(lambda fut: _roll_back_orphan(conn, fut))
            raise

    async def _end(self, binding: TxBinding, *, commit: bool) -> None:
        binding.closed = True  # whatever the node answers, this transaction is over for the client
        buf = new_request(OpCode.TX_END)
        encode_tx_end(buf, binding.tx_id, commit)
        try:
            await binding.conn.request(buf)
        except ServerError as exc:
            if commit and type(exc) is ServerError and "conflict" in str(exc.args[0]):
                raise TransactionConflict(f"ignite: {binding.describe()} was not committed: {exc.args[0]}",
                                          exc.status) from exc
            raise


def _tx_id(reply: Reply) -> int:
    return decode_int(reply.frame, reply.header.payload_offset)


def _roll_back_orphan(conn: Connection, started: asyncio.Future[Reply]) -> None:
    if started.cancelled() or started.exception() is not None:
        return
    buf = new_request(OpCode.TX_END)
    encode_tx_end(buf, _tx_id(started.result()), False)
    try:
        _, ended = conn.send(buf)
    except IgniteError:
        return  # the connection is gone, and the node rolls back its transactions with it
    ended.add_done_callback(lambda fut: fut.cancelled() or fut.exception())
