"""The parts every I/O pump is built from: connect, states and closing, write batching, deadlines, counters.

A pump (one ``asyncio.Protocol`` per connection) composes these and keeps only
what is its own: how replies are matched to requests (a FIFO, a table by id,
push messages) and how it checks that the peer is alive.

    connect      the connect ladder: a deadline around connect + setup, errors typed
    lifecycle    State, the allowed transitions, Closer (state + why it closed), fail_all
    batching     WriteBatcher: what is written in one loop iteration leaves in one write
    deadlines    Deadlines: a FIFO swept on one period for the common timeout, a heap for own ones
    stats        PumpStats: counters an owner keeps across reconnects
"""

from drivers.kit.batching import WriteBatcher
from drivers.kit.connect import ErrorKinds, connect, set_nodelay
from drivers.kit.deadlines import Deadlines
from drivers.kit.lifecycle import Closer, State, fail_all
from drivers.kit.stats import PumpStats

__all__ = ["Closer", "Deadlines", "ErrorKinds", "PumpStats", "State", "WriteBatcher", "connect", "fail_all",
           "set_nodelay"]
