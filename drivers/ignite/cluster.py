"""Cluster state (ops 5000/5001, feature CLUSTER_STATES): INACTIVE, ACTIVE, ACTIVE_READ_ONLY.

    state = await client.get_cluster_state()
    await client.set_cluster_state(ClusterState.ACTIVE_READ_ONLY)   # cache writes now fail

Deactivating a cluster whose caches live only in memory drops them: the node
forgets every in-memory cache when it becomes INACTIVE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.ignite.codec import BinaryTypeRegistry
from drivers.ignite.connection import Connection, new_request
from drivers.ignite.errors import LocalProtocolError
from drivers.ignite.protocol.constants import Feature, OpCode
from drivers.ignite.protocol.messages import ClusterState, decode_cluster_state, encode_cluster_change_state

if TYPE_CHECKING:
    from drivers.ignite.client import Client

__all__ = ["ClusterState", "get_cluster_state", "set_cluster_state"]


def _require(conn: Connection) -> Connection:
    if not conn.has(Feature.CLUSTER_STATES):
        raise LocalProtocolError(
            f"ignite {conn.host}:{conn.port}: the node does not offer the CLUSTER_STATES feature "
            f"(protocol {'.'.join(map(str, conn.version))}); cluster state needs protocol 1.7.0 and a 2.9+ node")
    return conn


def _state(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> ClusterState:
    return decode_cluster_state(frame, offset)


def _nothing(frame: memoryview, offset: int, registry: BinaryTypeRegistry) -> None:
    return None


async def get_cluster_state(client: Client) -> ClusterState:
    """The cluster's state, as the node the client talks to sees it."""
    conn = _require(await client._connection())
    state: ClusterState = await client._roundtrip(new_request(OpCode.CLUSTER_GET_STATE), _state, conn=conn)
    return state


async def set_cluster_state(client: Client, state: ClusterState, *, timeout: float | None = None) -> None:
    """Change the cluster's state; returns once the node has applied it.

    ``timeout`` (seconds) defaults to the client's request timeout: activating a
    cluster with persistence can take longer.
    """
    try:
        state = ClusterState(state)
    except ValueError:
        raise LocalProtocolError(f"ignite: {state!r} is not a ClusterState (INACTIVE, ACTIVE, ACTIVE_READ_ONLY)"
                                 ) from None
    conn = _require(await client._connection())
    buf = new_request(OpCode.CLUSTER_CHANGE_STATE)
    encode_cluster_change_state(buf, state)
    await client._roundtrip(buf, _nothing, conn=conn, timeout=timeout)
