"""The parts every I/O pump is built from: connect, states and closing, the outbox (batching + deadlines), counters.

A pump (one ``asyncio.Protocol`` per connection) composes these and keeps only
what is its own: how replies are matched to requests (a FIFO, a table by id,
push messages) and how it checks that the peer is alive.

    connect      the connect ladder: a deadline around connect + setup, errors typed
    lifecycle    State, the allowed transitions, Closer (state + why it closed), fail_all
    outbox       Outbox: what is sent in one loop iteration leaves in one write, and each
                 request's deadline (a FIFO swept on one period, a heap for own timeouts)
    stats        PumpStats: counters an owner keeps across reconnects
"""

from drivers.kit.connect import ErrorKinds, connect, set_nodelay
from drivers.kit.lifecycle import Closer, State, fail_all
from drivers.kit.outbox import Outbox, stuck_after
from drivers.kit.stats import PumpStats

__all__ = ["Closer", "ErrorKinds", "Outbox", "PumpStats", "State", "connect", "fail_all", "set_nodelay", "stuck_after"]
