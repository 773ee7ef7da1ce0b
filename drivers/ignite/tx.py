"""Transactions (ops 4000/4001, protocol 1.5.0 and later).

    async with client.tx_start(TransactionConcurrency.PESSIMISTIC,
                               TransactionIsolation.REPEATABLE_READ, timeout_s=5.0) as tx:
        await accounts.put("a", 10)
        await accounts.put("b", 20)
    # committed here; an exception (or a cancellation) in the block rolls back instead

Rules of this file:
- A transaction lives on the connection that started it.  While the block
  runs, ``txcontext.current_tx`` holds its ``TxBinding``: every request the
  task builds carries the tx id and goes to that connection, never elsewhere.
- Only the task that entered the block may use it (``txcontext.usable()``
  checks, for requests and for ``commit``/``rollback`` alike); a task spawned
  inside inherits the ContextVar and gets ``TransactionNotOwned``.
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

from drivers.ignite.connection import Connection, Reply
from drivers.ignite.errors import (
    IgniteError,
    LocalProtocolError,
    ServerError,
    TransactionConflict,
    TransactionError,
    TransactionNested,
    TxLimitExceeded,
)
from drivers.ignite.protocol.constants import OpCode, ProtocolVersion
from drivers.ignite.protocol.messages import Concurrency, Isolation, decode_int, encode_tx_end, encode_tx_start
from drivers.ignite.session import Session
from drivers.ignite.txcontext import TxBinding, current_tx, usable

__all__ = ["Transaction", "TransactionConcurrency", "TransactionIsolation"]

TransactionConcurrency = Concurrency  # OPTIMISTIC = 0, PESSIMISTIC = 1 (pyignite's names)
TransactionIsolation = Isolation      # READ_COMMITTED = 0, REPEATABLE_READ = 1, SERIALIZABLE = 2

MIN_VERSION = ProtocolVersion(1, 5, 0)


class Transaction:
    """One Ignite transaction; enter it with ``async with`` (see ``Client.tx_start``)."""

    def __init__(self, session: Session, concurrency: Concurrency = Concurrency.PESSIMISTIC,
                 isolation: Isolation = Isolation.REPEATABLE_READ, timeout_s: float = 0,
                 label: str | None = None) -> None:
        try:
            self.concurrency = TransactionConcurrency(concurrency)
            self.isolation = TransactionIsolation(isolation)
        except ValueError as exc:
            raise LocalProtocolError(f"ignite: {exc}; use TransactionConcurrency and TransactionIsolation") from None
        if timeout_s < 0:
            raise LocalProtocolError(f"ignite: a transaction timeout is 0 (none) or more seconds, not {timeout_s}")
        self.timeout_s = timeout_s
        self.label = label
        self._session = session
        self._binding: TxBinding | None = None
        self._token: contextvars.Token[TxBinding | None] | None = None
        self._entered = False

    @property
    def tx_id(self) -> int | None:
        """The node's id of this transaction (``None`` before it started)."""
        return self._binding.tx_id if self._binding is not None else None

    @property
    def node(self) -> str | None:
        """The address ("host:port") of the node this transaction lives on (``None`` before it started)."""
        return f"{self._binding.conn.host}:{self._binding.conn.port}" if self._binding is not None else None

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
        conn = await self._session.any_connection()
        if conn.version < MIN_VERSION:
            raise LocalProtocolError(
                f"{conn.where}: transactions need protocol 1.5.0 or later, and this "
                f"connection speaks {'.'.join(map(str, conn.version))}")
        tx_id = await self._start(conn)
        self._binding = TxBinding(tx_id, conn, scope=self._session, label=self.label)
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
        return usable(binding)

    # -- requests ----------------------------------------------------------------------------------

    async def _start(self, conn: Connection) -> int:
        session = self._session
        req = session.request(OpCode.TX_START, pin=conn)
        encode_tx_start(req.buf, self.concurrency, self.isolation, round(self.timeout_s * 1000), self.label)
        reply = session.submit(req)
        try:
            return _tx_id(await asyncio.shield(reply))
        except TxLimitExceeded as exc:
            raise TxLimitExceeded(
                f"{conn.where}: the node refuses another transaction on this connection: "
                "it has as many active ones as it allows per connection (ThinClientConfiguration."
                f"maxActiveTxPerConnection, 100 by default); end some first. The node said: {exc.args[0]}",
                exc.status) from exc
        except asyncio.CancelledError:
            # The node may start the transaction anyway: roll it back as soon as its id arrives.
            reply.add_done_callback(lambda fut: _roll_back_orphan(session, conn, fut))
            raise

    async def _end(self, binding: TxBinding, *, commit: bool) -> None:
        binding.closed = True  # whatever the node answers, this transaction is over for the client
        session = self._session
        req = session.request(OpCode.TX_END, pin=binding.conn)
        encode_tx_end(req.buf, binding.tx_id, commit)
        ended = session.submit(req)  # queued now: an interruption from here on does not stop the node ending it
        try:
            await ended
        except ServerError as exc:
            if commit and type(exc) is ServerError and "conflict" in str(exc.args[0]):
                raise TransactionConflict(f"ignite: {binding.describe()} was not committed: {exc.args[0]}",
                                          exc.status) from exc
            raise


def _tx_id(reply: Reply) -> int:
    return decode_int(reply.frame, reply.header.payload_offset)


def _roll_back_orphan(session: Session, conn: Connection, started: asyncio.Future[Reply]) -> None:
    if started.cancelled() or started.exception() is not None:
        return
    req = session.request(OpCode.TX_END, pin=conn)
    encode_tx_end(req.buf, _tx_id(started.result()), False)
    try:
        ended = session.submit(req)
    except IgniteError:
        return  # the connection is gone, and the node rolls back its transactions with it
    ended.add_done_callback(lambda fut: fut.cancelled() or fut.exception())
