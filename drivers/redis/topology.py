"""A Redis Cluster's topology as the client sees it: one pipelined connection per node, the slot table, its refresh.

Rules of this file:
- One ``PipelinedRedis`` (``drivers.redis.pipe``) per node, made on first use and kept while
  the node is in the table: the commands of one loop iteration for that node leave in one
  write.  With ``read_from_replicas`` every connection sends READONLY when it opens
  (harmless on a primary), so a replica serves reads of its primary's slots.
- ``route[slot]`` is the link to the slot's primary (None: no node serves it), and
  ``readers[slot]`` the links that may serve its reads (the online replicas, or the primary
  when there are none).  Both lists are changed in place, so the client holds them once.
- The table is read (``CLUSTER SHARDS``, or ``CLUSTER SLOTS`` from a server older than 7)
  from the first node that answers: the known nodes, primaries first, then the seeds; nodes
  under suspicion last.  The first read, in ``start``, is awaited; every later one runs in
  the background and never holds up a request: requests are routed on the table they find.
- At most one refresh runs at a time.  Asked for meanwhile, it reads the table once more
  when it ends.  It is asked for on a MOVED (whose slot is already changed with ``moved``),
  on CLUSTERDOWN, on a lost connection (``lost(address)``: that node is a suspect) and every
  ``refresh_interval_s``.
- Failover: while a suspect still owns slots in the table just read and does not answer a
  PING, the refresh reads the table again, waiting ``refresh_backoff`` between rounds, until
  the cluster has promoted a replica (the suspect owns nothing) or the node answers again;
  after ``GIVE_UP_AFTER_S`` it stops (the periodic refresh goes on).
- Links of nodes that left the table are closed in the background (their pending commands
  fail with BackendUnavailable).  ``aclose`` cancels and awaits every task it owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from typing import Any

from drivers.errors import BackendError, BackendUnavailable, DriverError
from drivers.kit import PumpStats
from drivers.redis.config import RedisClusterConfig, RedisConfig
from drivers.redis.pipe import PipeConnection, PipelinedRedis
from drivers.redis.resp import encode_command
from drivers.redis.slots import BACKEND, SLOTS, Address, SlotTable, parse_shards, parse_slots

log = logging.getLogger("drivers.redis.topology")

GIVE_UP_AFTER_S = 60.0   # a failover refresh stops after this long (the periodic refresh goes on)

_SHARDS = encode_command(["CLUSTER", "SHARDS"])
_SLOTS = encode_command(["CLUSTER", "SLOTS"])
_PING = encode_command(["PING"])
_READONLY = encode_command(["READONLY"])


class ReadOnlyLink(PipelinedRedis):
    """A node's pipelined connection that sends READONLY when it opens (for reads on replicas)."""

    async def _run_setup(self, conn: PipeConnection) -> None:
        await super()._run_setup(conn)
        await conn.send(_READONLY)


def address_of(link: PipelinedRedis) -> Address:
    return Address(link.config.host, link.config.port)


class Topology:
    """The nodes' connections and the slot table of one cluster client."""

    def __init__(self, config: RedisClusterConfig) -> None:
        self.config = config
        self.seeds = tuple(Address(host, port) for host, port in config.nodes)
        self.table: SlotTable | None = None
        self.links: dict[Address, PipelinedRedis] = {}
        self.route: list[PipelinedRedis | None] = [None] * SLOTS
        self.readers: list[tuple[PipelinedRedis, ...]] = [()] * SLOTS
        self.refreshes = 0          # tables read and applied
        self.refresh_failures = 0   # rounds in which no node answered
        self.closed = False
        self._link_type = ReadOnlyLink if config.read_from_replicas else PipelinedRedis
        self._refresh: asyncio.Task[None] | None = None
        self._again = False
        self._suspects: set[Address] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed_counters = PumpStats()   # what the links closed so far had counted

    def __repr__(self) -> str:
        return f"<Topology {self.table!r} links={len(self.links)}>"

    # -- links ---------------------------------------------------------------------------------------

    def link(self, address: Address) -> PipelinedRedis:
        """The node's pipelined connection (made now if there is none)."""
        link = self.links.get(address)
        if link is None:
            if self.closed:
                raise BackendUnavailable("redis-cluster: client is closed", backend=BACKEND)
            c = self.config
            link = self.links[address] = self._link_type(RedisConfig(
                host=address.host, port=address.port, username=c.username, password=c.password,
                connect_timeout_s=c.connect_timeout_s, socket_timeout_s=c.socket_timeout_s))
        return link

    def moved(self, slot: int, address: Address) -> PipelinedRedis:
        """A MOVED: ``slot`` is served by ``address`` from now on (a refresh is asked for); its link."""
        link = self.link(address)
        if self.table is not None:
            self.table.move(slot, address)
        self.route[slot] = link
        self.readers[slot] = (link,)
        self.refresh_soon()
        return link

    def lost(self, link: PipelinedRedis | None) -> None:
        """A command on ``link`` found its connection lost (or no node for its slot): refresh, that node suspected."""
        self.refresh_soon(None if link is None else address_of(link))

    def counters(self) -> PumpStats:
        """The links' counters added up (those of links already closed included)."""
        total = dataclasses.replace(self._closed_counters)
        for link in self.links.values():
            _add(total, link.counters)
        return total

    # -- the table -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the table from the seeds (a DriverError if none answers) and start the periodic refresh."""
        if self.closed:
            raise BackendUnavailable("redis-cluster: client is closed", backend=BACKEND)
        if self.table is None:
            self._apply(await self._read())
        if self._ticker is None and self.config.refresh_interval_s > 0:
            self._ticker = asyncio.create_task(self._tick(), name="redis-cluster-refresh-ticker")

    def refresh_soon(self, suspect: Address | None = None) -> None:
        """Read the table again in the background (once more after the running refresh, if there is one)."""
        if self.closed:
            return
        if suspect is not None:
            self._suspects.add(suspect)
        if self._refresh is None:
            self._refresh = asyncio.get_running_loop().create_task(self._refreshing(), name="redis-cluster-refresh")
            self._refresh.add_done_callback(self._refreshed)
        else:
            self._again = True

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refresh = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("redis-cluster: the topology refresh failed", exc_info=exc)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_interval_s)
            self.refresh_soon()

    async def _refreshing(self) -> None:
        began = time.monotonic()
        attempt = 0
        while True:
            self._again = False
            suspects, self._suspects = self._suspects, set()
            try:
                table: SlotTable | None = await self._read(avoid=suspects)
            except DriverError as exc:
                table = None
                self.refresh_failures += 1
                log.warning("%s", exc.message)
            if table is not None:
                self._apply(table)
            owning = [a for a in suspects if table is None or a in table.primaries]
            still = [a for a in owning if not await self._answers(a)]
            if still or table is None:
                if time.monotonic() - began >= GIVE_UP_AFTER_S:
                    return
                self._suspects.update(still)
                await asyncio.sleep(self.config.refresh_backoff.delay(attempt))
                attempt += 1
                continue
            if not self._again:
                return

    async def _answers(self, address: Address) -> bool:
        try:
            await self.link(address).call(_PING, self.config.connect_timeout_s)
        except DriverError:
            return False
        return True

    async def _read(self, avoid: set[Address] | frozenset[Address] = frozenset()) -> SlotTable:
        """The table as the first node that answers sees it."""
        known = list(self.table.nodes) if self.table is not None else []
        primaries = set(self.table.primaries) if self.table is not None else set()
        random.shuffle(known)
        known.sort(key=lambda a: a not in primaries)
        candidates = list(dict.fromkeys([*known, *self.seeds]))
        candidates.sort(key=lambda a: a in avoid)
        failures: list[str] = []
        for address in candidates:
            if self.closed:
                break
            try:
                return await self._read_from(address)
            except DriverError as exc:
                failures.append(f"{address}: {exc.message}")
        raise BackendUnavailable("redis-cluster: no node answered with the slot table (" + "; ".join(failures)
                                 + ")", backend=BACKEND)

    async def _read_from(self, address: Address) -> SlotTable:
        link = self.link(address)
        timeout_s = self.config.connect_timeout_s
        try:
            reply: Any = await link.call(_SHARDS, timeout_s)
        except BackendError as exc:
            if "unknown subcommand" not in exc.message.lower():
                raise
            return parse_slots(await link.call(_SLOTS, timeout_s), address)   # before Redis 7
        return parse_shards(reply, address)

    def _apply(self, table: SlotTable) -> None:
        """Route by ``table`` from now on; close the links of nodes it no longer names."""
        self.table = table
        primary: dict[int, PipelinedRedis] = {}
        readers: dict[int, tuple[PipelinedRedis, ...]] = {}
        for shard in table.shards:
            key = id(shard)
            primary[key] = self.link(shard.primary)
            readers[key] = tuple(self.link(r) for r in shard.replicas) or (primary[key],)
        self.route[:] = [None if s is None else primary[id(s)] for s in table.owners]
        self.readers[:] = [() if s is None else readers[id(s)] for s in table.owners]
        named = set(table.nodes) | set(self.seeds)
        for address in [a for a in self.links if a not in named]:
            self._close_link(self.links.pop(address))
        self.refreshes += 1

    def _close_link(self, link: PipelinedRedis) -> None:
        _add(self._closed_counters, link.counters)
        task = asyncio.get_running_loop().create_task(link.aclose(), name=f"redis-cluster-close-{link.where}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # -- closing -------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop refreshing and close every link (pending commands fail with BackendUnavailable); idempotent."""
        self.closed = True
        tasks = [t for t in (self._ticker, self._refresh) if t is not None]
        self._ticker = self._refresh = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        links, self.links = list(self.links.values()), {}
        self.route[:] = [None] * SLOTS
        self.readers[:] = [()] * SLOTS
        await asyncio.gather(*(link.aclose() for link in links), *self._closing, return_exceptions=True)


def _add(total: PumpStats, counters: PumpStats) -> None:
    total.requests += counters.requests
    total.late_replies += counters.late_replies
    total.timeouts += counters.timeouts
    total.connects += counters.connects
