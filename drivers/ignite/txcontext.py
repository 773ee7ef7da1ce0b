"""The transaction a task is in, carried by a ContextVar.

A request built while ``current_tx`` holds a binding carries its tx id and is
sent on the binding's connection (a transaction belongs to the connection
that started it); nothing routes it elsewhere.  ``active_tx()`` is the one
place that decides whether the current task may use the binding.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.ignite.connection import Connection


@dataclass(eq=False, slots=True)
class TxBinding:
    """A started transaction: its id on ``conn``; ``closed`` once committed or rolled back."""

    tx_id: int
    conn: Connection
    closed: bool = False


current_tx: contextvars.ContextVar[TxBinding | None] = contextvars.ContextVar("ignite_tx", default=None)


def active_tx() -> TxBinding | None:
    """The transaction requests of the current task belong to, if any."""
    return current_tx.get()
