"""The nodes' connections and the partition maps: which connections exist, and which one owns a key.

Rules of this file:
- One connection per node address.  All are opened at start (at least one must
  answer); a node that is down or lost is reopened in the background with
  ``config.reconnect`` backoff (``drivers.retry.reconnect``), for as long as the
  client is open.  Each node's counters survive its reconnects.
- Partition awareness applies to PARTITIONED caches with the default rendezvous
  affinity (the node says which with op 1101).  ``map_for`` answers from what is
  known; a cache whose map is not known yet is fetched in the background, and
  meanwhile its requests go to any node (the cluster forwards them).
- A cache the reply does not list at all, and that never had a map, is not known
  to that node yet (a cache created a moment ago on another node: measured, one
  ask in five right after the create); it is asked for again, ABSENT_TRIES times at
  most with a doubling delay from 2 x ABSENT_DELAY_S, and routed to any node
  meanwhile.  One that had a map was destroyed (by another client; a cache this
  client destroys is forgotten at once).  A cache listed as not applicable is a
  final answer.
- A reply flagged "affinity topology changed" starts one background refresh of
  every known map; requests keep flowing on the old maps meanwhile.  Nothing
  here ever makes a key operation wait for a map.
- Decisions are plain lookups in the current state; the I/O (connects, map
  fetches) runs in tasks the router owns and cancels on close.  The router calls
  nothing above it: key hashing lives in ``affinity``, request handling in ``session``.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from drivers.ignite.affinity import NOT_APPLICABLE, PartitionMap, maps_from_reply
from drivers.ignite.config import IgniteConfig
from drivers.ignite.connection import Connection
from drivers.ignite.errors import HandshakeError, IgniteConnectionError, IgniteError, ServerError
from drivers.ignite.protocol.constants import OpCode, ProtocolVersion
from drivers.ignite.protocol.framing import new_request
from drivers.ignite.protocol.messages import decode_cache_partitions, encode_cache_partitions
from drivers.kit import PumpStats, State
from drivers.retry import reconnect


@dataclass(eq=False)
class Node:
    """One node address, its connection (None while down) and its counters."""

    host: str
    port: int
    conn: Connection | None = None
    node_id: uuid.UUID | None = None
    counters: PumpStats = field(default_factory=PumpStats)
    failures: int = 0
    last_error: str | None = None
    task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ready(self) -> bool:
        return self.conn is not None and self.conn.state is State.READY


ABSENT_TRIES = 5
ABSENT_DELAY_S = 0.05


class Router:
    """Owns the nodes' connections and the partition maps of one client."""

    def __init__(self, config: IgniteConfig, ssl: Any = None) -> None:
        self.config = config
        self.ssl = ssl
        self.nodes = [Node(str(h), int(p)) for h, p in config.nodes]
        # With one address every request goes there anyway: skip the hashing altogether.
        self.partition_aware = config.partition_aware and len(self.nodes) > 1
        self.maps: dict[int, PartitionMap] = {}
        self.map_version: tuple[int, int] = (-1, -1)
        self.map_refreshes = 0
        self.version = ProtocolVersion(*config.protocol_version)  # what the last connection negotiated
        self._by_id: dict[uuid.UUID, Node] = {}
        self._rr = itertools.count()
        self._refresh: asyncio.Task[None] | None = None
        self._wanted: set[int] = set()
        self._absent: dict[int, int] = {}   # cache id -> replies in a row that did not list it
        self._later: set[int] = set()       # ... to be asked for again when the timer fires
        self._later_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._node_up = asyncio.Event()

    # -- connections ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to every node; at least one must answer.  The others keep being retried."""
        self._closed = False
        results = await asyncio.gather(*(self._open(n) for n in self.nodes), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, IgniteError):
                raise r
        if not any(n.ready for n in self.nodes):
            errors = [r for r in results if isinstance(r, IgniteError)]
            refused = [e for e in errors if isinstance(e, HandshakeError)]
            if refused:
                raise refused[0]  # the node answered and said no: retrying will not help
            if len(errors) == 1:
                raise errors[0]
            detail = "; ".join(f"{n.address}: {n.last_error}" for n in self.nodes)
            raise IgniteConnectionError(f"ignite: no node answered: {detail}")
        for node in self.nodes:
            if not node.ready:
                self._schedule_reconnect(node)

    async def _open(self, node: Node) -> None:
        try:
            conn = await Connection.open(node.host, node.port, self.config, ssl=self.ssl, counters=node.counters,
                                         on_lost=self.lost, on_topology=self.topology_changed)
        except IgniteError as exc:
            node.last_error = str(exc)
            node.failures += 1
            raise
        node.conn = conn
        node.failures = 0
        node.last_error = None
        self.version = conn.version
        if conn.node_id is not None:
            node.node_id = conn.node_id
            self._by_id[conn.node_id] = node
        self._node_up.set()

    def lost(self, conn: Connection, reason: BaseException | None) -> None:
        """A connection closed (the connection's on_lost callback): reconnect in the background."""
        for node in self.nodes:
            if node.conn is conn:
                node.conn = None
                node.last_error = str(reason) if reason else "connection lost"
                if not self._closed:
                    self._schedule_reconnect(node)
        if not any(n.ready for n in self.nodes):
            self._node_up.clear()

    def _schedule_reconnect(self, node: Node) -> None:
        if node.task is None or node.task.done():
            node.task = asyncio.ensure_future(self._reconnect(node))

    async def _reconnect(self, node: Node) -> None:
        # aclose() cancels this task before closing connections.
        await reconnect(lambda: self._open(node), self.config.reconnect, retry_on=(IgniteError,),
                        stop=lambda: self._closed or node.ready)
        if node.ready:
            self.refresh_all()  # a node came back: the maps may have moved

    def any(self) -> Connection | None:
        """A live connection, round robin; None when every node is down."""
        nodes = self.nodes
        n = len(nodes)
        start = next(self._rr)
        for i in range(n):
            node = nodes[(start + i) % n]
            if node.ready:
                return node.conn
        return None

    async def wait_any(self, timeout_s: float) -> Connection:
        """A live connection, waiting up to ``timeout_s`` for a reconnect."""
        conn = self.any()
        if conn is not None:
            return conn
        for node in self.nodes:
            self._schedule_reconnect(node)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    await self._node_up.wait()
                    conn = self.any()
                    if conn is not None:
                        return conn
                    self._node_up.clear()
        except TimeoutError:
            detail = "; ".join(f"{n.address}: {n.last_error}" for n in self.nodes)
            raise IgniteConnectionError(f"ignite: no node is reachable ({detail})") from None

    def node_conn(self, node_id: uuid.UUID | None) -> Connection | None:
        """The live connection to the node with this id, if any."""
        node = self._by_id.get(node_id) if node_id is not None else None
        return node.conn if node is not None and node.ready else None

    async def aclose(self) -> None:
        self._closed = True
        if self._later_timer is not None:
            self._later_timer.cancel()
            self._later_timer = None
        tasks = [n.task for n in self.nodes if n.task is not None]
        if self._refresh is not None:
            tasks.append(self._refresh)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        conns = [n.conn for n in self.nodes if n.conn is not None]
        for n in self.nodes:
            n.conn = None
            n.task = None
        await asyncio.gather(*(c.aclose() for c in conns), return_exceptions=True)

    # -- partition maps ---------------------------------------------------------------------

    def map_for(self, cache_id: int) -> PartitionMap | None:
        """The cache's map when requests for it can be routed by key; None otherwise (fetched if unknown)."""
        if not self.partition_aware:
            return None
        pmap = self.maps.get(cache_id)
        if pmap is None:
            self.want_map(cache_id)
            return None
        return None if pmap is NOT_APPLICABLE else pmap

    def want_map(self, cache_id: int) -> None:
        """Fetch the map of ``cache_id`` in the background (once)."""
        if cache_id in self._wanted:
            return
        self._wanted.add(cache_id)
        self._start_refresh()

    def topology_changed(self, version: tuple[int, int]) -> None:
        """A reply said the affinity topology moved on: refresh every map, in the background."""
        if version > self.map_version:
            self.refresh_all()

    def refresh_all(self) -> None:
        self._wanted.update(self.maps)
        self._start_refresh()

    def _start_refresh(self) -> None:
        if self._closed or (self._refresh is not None and not self._refresh.done()):
            return
        self._refresh = asyncio.ensure_future(self._refresh_maps())

    async def _refresh_maps(self) -> None:
        failures = 0
        while self._wanted and not self._closed:
            ids = sorted(self._wanted)
            self._wanted.clear()
            conn = self.any()
            if conn is None:
                self._wanted.update(ids)
                return
            buf = new_request(OpCode.CACHE_PARTITIONS)
            encode_cache_partitions(buf, ids, conn.features)
            try:
                reply = await conn.request(buf)
                parsed = decode_cache_partitions(reply.frame, reply.header.payload_offset, conn.features)
            except ServerError:
                for cache_id in ids:  # e.g. a cache destroyed meanwhile: route it to any node
                    self.maps[cache_id] = NOT_APPLICABLE
                continue
            except IgniteError:
                failures += 1
                if failures > 5:
                    return  # the next topology change or reconnect asks again
                await asyncio.sleep(self.config.reconnect.delay(failures))
                self._wanted.update(ids)
                continue
            fresh = maps_from_reply(parsed)
            later = []
            for cache_id in ids:
                if cache_id in fresh:
                    self._absent.pop(cache_id, None)
                    self._later.discard(cache_id)     # known now (a topology refresh came first)
                    continue
                if self.maps.get(cache_id, NOT_APPLICABLE) is not NOT_APPLICABLE:
                    fresh[cache_id] = NOT_APPLICABLE  # it had a map: destroyed meanwhile, by another client
                    continue
                fresh[cache_id] = NOT_APPLICABLE      # meanwhile, its requests go to any node
                tries = self._absent[cache_id] = self._absent.get(cache_id, 0) + 1
                if tries <= ABSENT_TRIES:
                    later.append(cache_id)
            self.maps.update(fresh)
            self.map_version = max(self.map_version, parsed.topology)
            self.map_refreshes += 1
            if later:
                self._ask_later(later)

    def forget(self, cache_id: int) -> None:
        """A cache this client destroyed: no map to keep, and none to ask for again."""
        self.maps.pop(cache_id, None)
        self._wanted.discard(cache_id)
        self._absent.pop(cache_id, None)
        self._later.discard(cache_id)

    def _ask_later(self, ids: list[int]) -> None:
        """Ask for these caches' maps again after a delay (doubling with each reply that left them out)."""
        self._later.update(ids)
        if self._later_timer is None:
            delay = ABSENT_DELAY_S * 2 ** min(self._absent[c] for c in ids)
            self._later_timer = asyncio.get_running_loop().call_later(delay, self._ask_again)

    def _ask_again(self) -> None:
        self._later_timer = None
        self._wanted.update(self._later)
        self._later.clear()
        self._start_refresh()

    # -- observability ----------------------------------------------------------------------

    def stats(self) -> list[dict[str, Any]]:
        return [{
            "address": n.address,
            "node_id": str(n.node_id) if n.node_id else None,
            "state": n.conn.state.value if n.conn is not None else "down",
            "in_flight": n.conn.in_flight if n.conn is not None else 0,
            "requests": n.counters.requests,
            "late_replies": n.counters.late_replies,
            "timeouts": n.counters.timeouts,
            "reconnects": n.counters.reconnects,
            "heartbeats_sent": n.conn.heartbeats_sent if n.conn is not None else 0,
            "last_error": n.last_error,
        } for n in self.nodes]
