"""Redis Cluster: a managed client that routes each command by its key's slot, one pipelined connection per node.

Rules of this file:
- Routing: a command goes to the primary of its first key's slot (``drivers.redis.slots``);
  with ``read_from_replicas``, ``get`` and ``mget`` go to that primary's replicas in turn
  (their retries to the primary).  A command without a key goes to the primary of slot 0.
- Keys of several slots: Redis Cluster refuses a command whose keys lie in more than one
  slot, so ``mget``, ``delete`` and ``batch`` send one command per slot, all at once (the
  commands for one node leave in one write: ``drivers.redis.topology``); replies keep the
  caller's order.
- Redirects are followed for every command (the node that answered did not run it), at most
  ``max_redirects`` times, then ``BackendError``: MOVED changes that slot's owner, asks for a
  refresh and sends the command to the new owner; ASK sends ASKING and the command together
  to the target and leaves the table as it is; TRYAGAIN (keys of a slot half migrated)
  waits ``TRYAGAIN_WAIT_S`` and sends the command again.
- Failures: a lost connection (``BackendUnavailable``) and CLUSTERDOWN (turned into
  ``BackendUnavailable``) ask for a refresh; idempotent commands are then tried again under
  ``config.retry`` (``drivers.retry.Retrier``), each retry routed on the table as it is by
  then.  A timeout is never retried: the node may still run the command.  Whatever reaches
  the caller is a ``DriverError`` whose ``backend`` is "redis-cluster".
- Every call crosses the boundary ``calls`` once, named "get", "set", "mget", "delete",
  "batch" (or the caller's name for it), "scan_unlink", or the command's own name in
  lower case.  Inside a budget (``drivers.budget``) a command's deadline is what is left of
  it when that is less than ``socket_timeout_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from time import perf_counter
from typing import Any, TypeVar

from drivers import budget
from drivers.base import Calls, ClientStats, LifecycleMixin, client_stats
from drivers.errors import BackendError, BackendUnavailable, DriverError, InterfaceError
from drivers.redis.config import RedisClusterConfig
from drivers.redis.pipe import PipelinedRedis
from drivers.redis.resp import Arg, command_prefix, encode_command
from drivers.redis.slots import (
    BACKEND,
    Address,
    Key,
    RedirectKind,
    bytes_slot,
    first_key,
    key_bytes,
    key_slot,
    parse_redirect,
)
from drivers.redis.topology import Topology, address_of
from drivers.retry import Retrier

T = TypeVar("T")

TRYAGAIN_WAIT_S = 0.05
SCAN_COUNT = 1000

_GET = command_prefix("GET", total=2)
_PING = encode_command(["PING"])
_ASKING = encode_command(["ASKING"])

_deadline = budget.deadline   # the hot path asks for the budget only when there is one


def _ours(exc: BaseException) -> BaseException:
    """A driver error labelled as this client's (the node connections label theirs "redis")."""
    if isinstance(exc, DriverError):
        exc.backend = BACKEND
    return exc


def _encode(args: Sequence[Arg]) -> bytes:
    try:
        return encode_command(args)
    except InterfaceError as exc:
        raise _ours(exc) from None


def _glob_escape(prefix: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)


def _slot_of(args: Sequence[Arg]) -> int:
    key = first_key(args)
    return 0 if key is None else key_slot(key)


async def _raise(exc: BaseException) -> Any:
    raise exc


class RedisClusterClient(LifecycleMixin):
    """The process's Redis Cluster client: ``await client.get(key)``, ``mget``, ``set``, ``command``, ``batch``."""

    name = "redis-cluster"

    def __init__(self, config: RedisClusterConfig | None = None) -> None:
        c = self.config = config or RedisClusterConfig()
        self.address = ",".join(f"{host}:{port}" for host, port in c.nodes)
        self.topology = Topology(c)
        self.calls = Calls(BACKEND)
        self.moved = 0         # MOVED replies followed
        self.asked = 0         # ASK replies followed
        self.tried_again = 0   # TRYAGAIN replies waited out
        self._route = self.topology.route       # slot -> its primary's link (changed in place)
        self._readers = self.topology.readers   # slot -> the links that may serve its reads
        self._replicas = c.read_from_replicas
        self._turn = 0
        self._retry = Retrier(c.retry, (BackendUnavailable,), give_up=lambda: self.topology.closed)
        self._started = False

    def __repr__(self) -> str:
        return f"<RedisClusterClient {self.address} {'started' if self._started else 'not started'}>"

    async def start(self) -> None:
        """Read the slot table from the seed nodes and PING every primary."""
        try:
            await self.topology.start()
            await self._ping()
        except DriverError as exc:
            raise _ours(exc) from None
        self._started = True

    async def aclose(self) -> None:
        self._started = False
        await self.topology.aclose()

    # -- one command -------------------------------------------------------------------------------

    async def _one(self, op: str, slot: int, payload: bytes, idempotent: bool, read: bool = False) -> Any:
        """One command for ``slot`` through the boundary: the fast path, then ``_failed`` for anything else."""
        calls = self.calls
        observer = calls.observer
        began = perf_counter() if observer is not None else 0.0
        calls.in_flight += 1
        link = self._reader(slot) if read else self._route[slot]
        try:
            if link is None:
                raise self._unserved(slot)
            reply = await link.call(payload, None if _deadline() is None else self._budgeted())
        except BaseException as exc:
            return await self._failed(op, slot, payload, idempotent, began, exc, link)
        # Calls.end, inlined: this is the path of every GET.
        calls.in_flight -= 1
        calls.requests += 1
        if observer is not None:
            observer(BACKEND, op, perf_counter() - began, None)
        return reply

    async def _failed(self, op: str, slot: int, payload: bytes, idempotent: bool, began: float,
                      exc: BaseException, link: PipelinedRedis | None) -> Any:
        try:
            reply = await self._settle(slot, payload, exc, link, idempotent)
        except BaseException as final:
            self.calls.end(op, began, _ours(final))
            raise
        self.calls.end(op, began)
        return reply

    async def _settle(self, slot: int, payload: bytes, exc: BaseException, link: PipelinedRedis | None,
                      idempotent: bool) -> Any:
        """After a failed first try: follow redirects; after a lost connection, retry an idempotent command."""
        try:
            return await self._recover(slot, payload, exc, link)
        except BackendUnavailable as lost:
            if not idempotent:
                raise
            return await self._retry.again(lost, self._attempt, slot, payload)

    async def _attempt(self, slot: int, payload: bytes) -> Any:
        """One more try, to the slot's primary as the table says now."""
        link = self._route[slot]
        try:
            if link is None:
                raise self._unserved(slot)
            return await link.call(payload, self._timeout())
        except DriverError as exc:
            return await self._recover(slot, payload, exc, link)

    async def _recover(self, slot: int, payload: bytes, exc: BaseException, link: PipelinedRedis | None) -> Any:
        """Follow MOVED / ASK / TRYAGAIN until a reply; raise any other failure (and too many redirects)."""
        redirects = 0
        while True:
            target, asking, wait = self._redirected(slot, exc, link, redirects)
            redirects += 1
            try:
                if wait:
                    await asyncio.sleep(wait)
                return await (self._ask(target, payload) if asking else target.call(payload, self._timeout()))
            except DriverError as again:
                exc, link = again, target

    def _redirected(self, slot: int, exc: BaseException, link: PipelinedRedis | None,
                    redirects: int) -> tuple[PipelinedRedis, bool, float]:
        """Where a failed command goes next: (link, with ASKING, after a wait); raises when it goes nowhere."""
        if isinstance(exc, BackendUnavailable):
            self.topology.lost(link)
            raise exc
        if not isinstance(exc, BackendError) or link is None:
            raise exc
        message = exc.message.removeprefix("redis: ")
        redirect = parse_redirect(message, address_of(link))
        if redirect is None:
            if message.startswith("CLUSTERDOWN"):
                self.topology.refresh_soon()
                raise BackendUnavailable(f"redis-cluster {link.where}: {message}", backend=BACKEND) from exc
            if not message.startswith("TRYAGAIN"):
                raise exc
        if redirects >= self.config.max_redirects:
            raise BackendError(f"redis-cluster: slot {slot}: still redirected after {redirects} redirects "
                               f"({message})", backend=BACKEND) from exc
        if redirect is None:
            self.tried_again += 1
            return self._route[slot] or link, False, TRYAGAIN_WAIT_S
        if redirect.kind is RedirectKind.MOVED:
            self.moved += 1
            return self.topology.moved(redirect.slot, redirect.address), False, 0.0
        self.asked += 1
        return self.topology.link(redirect.address), True, 0.0

    async def _ask(self, link: PipelinedRedis, payload: bytes) -> Any:
        """ASKING and the command in one write to ``link``: the node serves the command once, mid-migration."""
        timeout_s = self._timeout()
        if not link.connected:
            await link.call(_PING, timeout_s)   # connect first, so that the two leave together
        asking = link.call(_ASKING, timeout_s)
        reply = link.call(payload, timeout_s)
        done = await asyncio.gather(asking, reply, return_exceptions=True)
        asked: Any = done[0]
        answer: Any = done[1]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(asked, BaseException):
            raise asked
        return answer

    def _reader(self, slot: int) -> PipelinedRedis | None:
        readers = self._readers[slot]
        if not readers:
            return None
        self._turn += 1
        return readers[self._turn % len(readers)]

    def _unserved(self, slot: int) -> BackendUnavailable:
        return BackendUnavailable(f"redis-cluster: no node serves slot {slot} in the table the client has",
                                  backend=BACKEND)

    def _timeout(self) -> float | None:
        return None if _deadline() is None else self._budgeted()

    def _budgeted(self) -> float | None:
        """The command's deadline inside a budget: what is left of it, if less than the socket timeout."""
        own = self.config.socket_timeout_s
        left = budget.limit(own, BACKEND)
        return left if left < own else None

    # -- many commands -----------------------------------------------------------------------------

    async def _call(self, op: str, work: Awaitable[T]) -> T:
        """``work`` through the boundary as one call named ``op``."""
        began = self.calls.start()
        try:
            result = await work
        except BaseException as exc:
            self.calls.end(op, began, _ours(exc))
            raise
        self.calls.end(op, began)
        return result

    async def _many(self, slots: Sequence[int], payloads: Sequence[bytes], idempotent: bool,
                    read: bool = False) -> list[Any]:
        """One command per slot, all sent at once; the replies in order, the first failure raised once all are in."""
        timeout_s = self._timeout()
        links = [self._reader(s) if read else self._route[s] for s in slots]
        sent = [_raise(self._unserved(s)) if link is None else link.call(p, timeout_s)
                for s, p, link in zip(slots, payloads, links, strict=True)]
        results: list[Any] = await asyncio.gather(*sent, return_exceptions=True)
        failed = [i for i, result in enumerate(results) if isinstance(result, BaseException)]
        if not failed:
            return results
        settled = await asyncio.gather(*(self._settle(slots[i], payloads[i], results[i], links[i], idempotent)
                                         for i in failed), return_exceptions=True)
        for i, result in zip(failed, settled, strict=True):
            results[i] = result
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def _unlink(self, keys: Sequence[Key]) -> int:
        by_slot: dict[int, list[Key]] = {}
        for key in keys:
            by_slot.setdefault(key_slot(key), []).append(key)
        replies = await self._many(list(by_slot), [_encode(["UNLINK", *group]) for group in by_slot.values()], True)
        return sum(int(n) for n in replies)

    async def _mget(self, keys: Sequence[Key]) -> list[bytes | None]:
        by_slot: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_slot.setdefault(key_slot(key), []).append(i)
        payloads = [_encode(["MGET", *(keys[i] for i in where)]) for where in by_slot.values()]
        replies = await self._many(list(by_slot), payloads, True, self._replicas)
        values: list[bytes | None] = [None] * len(keys)
        for where, reply in zip(by_slot.values(), replies, strict=True):
            for i, value in zip(where, reply, strict=True):
                values[i] = value
        return values

    # -- per node ----------------------------------------------------------------------------------

    async def _on_node(self, address: Address, payload: bytes) -> Any:
        """A command for one node (SCAN, PING), not routed by slot; tried again after a lost connection."""
        link = self.topology.link(address)
        try:
            return await link.call(payload, self._timeout())
        except BackendUnavailable as exc:
            self.topology.lost(link)
            return await self._retry.again(exc, self._node_call, address, payload)

    async def _node_call(self, address: Address, payload: bytes) -> Any:
        return await self.topology.link(address).call(payload, self._timeout())

    def _primaries(self) -> tuple[Address, ...]:
        table = self.topology.table
        if table is None:
            raise BackendUnavailable("redis-cluster: the client is not started (no slot table)", backend=BACKEND)
        return table.primaries

    async def _scan_node(self, address: Address, pattern: str) -> int:
        cursor: Any = b"0"
        removed = 0
        while True:
            cursor, keys = await self._on_node(address, _encode(["SCAN", cursor, "MATCH", pattern,
                                                                  "COUNT", SCAN_COUNT]))
            if keys:
                removed += await self._unlink(keys)
            if cursor in (b"0", 0):
                return removed

    async def _scan_unlink(self, prefix: str) -> int:
        pattern = _glob_escape(prefix) + "*"
        counts = await asyncio.gather(*(self._scan_node(a, pattern) for a in self._primaries()),
                                      return_exceptions=True)
        for count in counts:
            if isinstance(count, BaseException):
                raise count
        return sum(counts)  # type: ignore[arg-type]

    async def _ping(self) -> None:
        results = await asyncio.gather(*(self._on_node(a, _PING) for a in self._primaries()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise _ours(result)

    # -- the commands ------------------------------------------------------------------------------

    async def get(self, key: Key) -> bytes | None:
        data = key_bytes(key)                  # once, for the slot and the command
        value: bytes | None = await self._one("get", bytes_slot(data), _GET + b"$%d\r\n%s\r\n" % (len(data), data),
                                              True, self._replicas)
        return value

    async def set(self, key: Key, value: bytes | str, *, px: int | None = None, nx: bool = False) -> bool:
        """SET, with PX (a TTL in milliseconds) and NX (only if absent); False when NX found the key.

        Retried after a lost connection unless ``nx`` (a second try could find the key it set).
        """
        args: list[Arg] = ["SET", key, value]
        if px is not None:
            args += ("PX", px)
        if nx:
            args.append("NX")
        return await self._one("set", key_slot(key), _encode(args), not nx) is not None

    async def mget(self, keys: Sequence[Key]) -> list[bytes | None]:
        """The values of ``keys`` in their order (None where absent): one MGET per slot, all slots at once."""
        if not keys:
            return []
        return await self._call("mget", self._mget(keys))

    async def delete(self, keys: Sequence[Key]) -> int:
        """UNLINK ``keys`` (one command per slot, all at once); how many existed."""
        if not keys:
            return 0
        return await self._call("delete", self._unlink(keys))

    async def command(self, *args: Arg, idempotent: bool = False) -> Any:
        """Any short, non-blocking command, routed by its first key: ``await command("INCR", "n")``.

        Retried after a lost connection only when the caller says it is ``idempotent``.  Its
        keys must share one slot (hash tags: ``{user1}:a``, ``{user1}:b``).  Never send blocking,
        pub/sub, MULTI/WATCH or connection-state commands here (``drivers.redis.pipe``).
        """
        payload = _encode(args)
        op = key_bytes(args[0]).decode(errors="replace").lower()
        return await self._one(op, _slot_of(args), payload, idempotent)

    async def batch(self, commands: Sequence[Sequence[Arg]], *, op: str = "batch",
                    idempotent: bool = False) -> list[Any]:
        """Several commands, each routed by its first key and sent at once; their replies in order.

        The first error reply fails the batch (``BackendError``) once every reply is in; after a
        lost connection the commands that failed are sent again when ``idempotent``.
        """
        if not commands:
            return []
        payloads = [_encode(c) for c in commands]
        slots = [_slot_of(c) for c in commands]
        return await self._call(op, self._many(slots, payloads, idempotent))

    async def scan_unlink(self, prefix: str) -> int:
        """Remove every key that starts with ``prefix``: SCAN each primary, UNLINK what matches; how many.

        Keys written while it runs may be missed; a failover during the walk fails it.
        """
        return await self._call("scan_unlink", self._scan_unlink(prefix))

    def stats(self) -> ClientStats:
        topology = self.topology
        table = topology.table
        primaries = set(table.primaries) if table is not None else set()
        links = topology.links
        counters = topology.counters()
        nodes = {str(address): {"role": "primary" if address in primaries else "replica",
                                "connected": link.connected, "in_flight": link.in_flight,
                                "requests": link.counters.requests}
                 for address, link in links.items()}
        return client_stats(
            self.calls, address=self.address, connected=any(link.connected for link in links.values()),
            late_replies=counters.late_replies, reconnects=sum(link.counters.reconnects for link in links.values()),
            retries=self._retry.retries,
            detail={"started": self._started, "nodes": nodes, "slots_served": table.covered if table else 0,
                    "moved": self.moved, "asked": self.asked, "tried_again": self.tried_again,
                    "refreshes": topology.refreshes, "refresh_failures": topology.refresh_failures,
                    "read_from_replicas": self._replicas, "pipelined_requests": counters.requests,
                    "pipelined_timeouts": counters.timeouts})
