"""The transaction a task is in, carried by a ContextVar, and the one check of who may use it.

A request made while ``current_tx`` holds a binding of the same session
carries its tx id and is sent on the binding's connection (a transaction
belongs to the connection that started it); nothing routes it elsewhere.
``usable()`` is the one place that decides whether the current task may use a
binding: only the task that started the transaction may, and only until it is
committed or rolled back.  A task spawned inside ``async with client.tx_start()``
inherits the ContextVar, so without that check its requests would silently
join the transaction.
"""

from __future__ import annotations

import asyncio
import contextvars
from dataclasses import dataclass, field

from drivers.ignite.connection import Connection
from drivers.ignite.errors import TransactionClosed, TransactionNotOwned


def _current_task() -> asyncio.Task[object] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop
        return None


@dataclass(eq=False, slots=True)
class TxBinding:
    """A started transaction: its id on ``conn``; ``closed`` once committed or rolled back.

    ``owner`` is the task that started it (by default, the current one);
    ``scope`` the session it was started through: another client's requests in
    the same task are not part of it.
    """

    tx_id: int
    conn: Connection
    closed: bool = False
    scope: object = None
    owner: asyncio.Task[object] | None = field(default_factory=_current_task)
    label: str | None = None

    def describe(self) -> str:
        name = f" {self.label!r}" if self.label else ""
        return f"transaction{name} (id {self.tx_id} on {self.conn.where})"


current_tx: contextvars.ContextVar[TxBinding | None] = contextvars.ContextVar("ignite_tx", default=None)


def usable(tx: TxBinding) -> TxBinding:
    """``tx`` if the current task may use it; ``TransactionNotOwned`` or ``TransactionClosed`` if not."""
    if tx.owner is not None and tx.owner is not _current_task():
        raise TransactionNotOwned(
            f"ignite: this task inherited {tx.describe()} from the task that started it; a transaction "
            "is used only by its own task. Start the task outside `async with client.tx_start()`, or "
            "give it a fresh context (asyncio.create_task(coro, context=contextvars.Context())).")
    if tx.closed:
        raise TransactionClosed(f"ignite: {tx.describe()} is already committed or rolled back")
    return tx


def active_tx(scope: object = None) -> TxBinding | None:
    """The transaction the current task's requests through ``scope`` belong to, if any (checked by ``usable``)."""
    tx = current_tx.get()
    if tx is None or (scope is not None and tx.scope is not None and tx.scope is not scope):
        return None
    return usable(tx)
