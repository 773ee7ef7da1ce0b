"""Cluster state (ops 5000/5001, feature CLUSTER_STATES): INACTIVE, ACTIVE, ACTIVE_READ_ONLY.

    state = await client.get_cluster_state()
    await client.set_cluster_state(ClusterState.ACTIVE_READ_ONLY)   # cache writes now fail

Deactivating a cluster whose caches live only in memory drops them: the node
forgets every in-memory cache when it becomes INACTIVE.
"""

from __future__ import annotations

from drivers.ignite.codec import BinaryTypeRegistry
from drivers.ignite.connection import Connection
from drivers.ignite.errors import LocalProtocolError
from drivers.ignite.protocol.constants import Feature, OpCode
from drivers.ignite.protocol.messages import ClusterState, decode_cluster_state, encode_cluster_change_state
from drivers.ignite.session import Session

__all__ = ["ClusterState", "get_cluster_state", "set_cluster_state"]


def _require(conn: Connection) -> Connection:
    if not conn.has(Feature.CLUSTER_STATES):
        raise LocalProtocolError(
            f"{conn.where}: the node does not offer the CLUSTER_STATES feature "
            f"(protocol {'.'.join(map(str, conn.version))}); cluster state needs protocol 1.7.0 and a 2.9+ node")
    return conn


def _state(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> ClusterState:
    return decode_cluster_state(frame, offset)


def _nothing(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> None:
    return None


async def get_cluster_state(session: Session) -> ClusterState:
    """The cluster's state, as the node the client talks to sees it."""
    conn = _require(await session.any_connection())
    state: ClusterState = await session.send(session.request(OpCode.CLUSTER_GET_STATE, pin=conn), _state)
    return state


async def set_cluster_state(session: Session, state: ClusterState, *, timeout_s: float | None = None) -> None:
    """Change the cluster's state; returns once the node has applied it.

    ``timeout_s`` defaults to the client's request timeout: activating a
    cluster with persistence can take longer.
    """
    try:
        state = ClusterState(state)
    except ValueError:
        raise LocalProtocolError(f"ignite: {state!r} is not a ClusterState (INACTIVE, ACTIVE, ACTIVE_READ_ONLY)"
                                 ) from None
    conn = _require(await session.any_connection())
    req = session.request(OpCode.CLUSTER_CHANGE_STATE, pin=conn)
    encode_cluster_change_state(req.buf, state)
    await session.send(req, _nothing, timeout_s=timeout_s)
