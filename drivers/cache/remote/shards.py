"""The remote tier on several standalone Redis nodes, each key on one node (``redis-shards``).

Rules of this file:
- Each node is a ``RedisTier`` (``remote.redis``) on a ``RedisClient`` of its own:
  its own pipelined connection, settings, retries and lease rules.  This tier only
  routes; it never retries and never sends a command a single node would not.
- Placement is weighted rendezvous hashing (``drivers.cache.placement``) over the
  nodes' ids (``host:port``, ``host:port/db`` off db 0) and weights: every process
  that lists the same nodes and weights, in any order, puts a key on the same node.
- Batches (``get_many``, ``set_many``, ``delete_many``): the keys are grouped by
  node, each group is one request to its node, the groups are awaited concurrently,
  and the answers go back to the keys' input positions.  A batch on one node is
  just that node's request.
- Errors: a ``DriverError`` from a node is raised again as the same kind
  (unavailable, timeout, busy, error), with backend ``redis-shards`` and the node's
  address in the message; the node's own error is its ``__cause__``.  A node that is
  down fails only what touches it: a ``get``, ``acquire`` or ``release`` of a key
  placed on it, and the batches holding such a key.
- A batch over several nodes of which some fail waits for every group, then raises:
  the failed node's error, or for several the first one's kind with every failed
  node named.  ``get_many`` returns nothing partial (the cache above treats the
  error as any tier failure: counted by its breaker, the values loaded from the
  source).  Writes are not atomic across nodes: after a failed ``set_many`` or
  ``delete_many`` the healthy nodes' groups are done.
- ``delete_prefix`` SCANs and UNLINKs on every node concurrently (``scan_unlink``);
  the total removed, or the error as for batches once every node has answered.
- Changing the nodes or weights moves about weight/total of the keys to a new node;
  copies left on their old node are not read again and expire with their TTL (if
  the node later holds them again, a copy that outlived its TTL's purpose can
  resurface: keep TTLs short where nodes come and go).
- Lifecycle: ``start()`` starts every node concurrently and raises the error of the
  ones that failed (``aclose()`` after it is safe); ``aclose()`` closes every node,
  idempotent.
- Settings as text: ``parse_nodes(["host:port", "host:port@weight", "[::1]:6379"])``;
  a malformed entry is an ``InterfaceError`` naming it and the expected form.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

from drivers.cache.placement import Placement
from drivers.cache.remote.redis import RedisTier, scan_unlink
from drivers.errors import BackendBusy, BackendTimeout, DriverError, InterfaceError
from drivers.redis import RedisClient, RedisConfig

NAME = "redis-shards"
T = TypeVar("T")


def node_id(config: RedisConfig) -> str:
    """A node's id in the placement: ``host:port``, with ``/db`` when the db is not 0."""
    return config.address if config.db == 0 else f"{config.address}/{config.db}"


def _bad(spec: str, why: str) -> InterfaceError:
    return InterfaceError(f"{NAME}: node {spec!r}: {why}; write 'host:port' or 'host:port@weight' "
                          "(e.g. '10.0.0.5:6379@2', '[::1]:6379')", backend=NAME)


def parse_node(spec: str, base: RedisConfig | None = None) -> tuple[RedisConfig, float]:
    """One node written ``host:port`` or ``host:port@weight``: its settings (``base``'s but the address) and weight."""
    if not isinstance(spec, str) or not spec.strip():
        raise InterfaceError(f"{NAME}: a node is a 'host:port' or 'host:port@weight' string, not {spec!r}",
                             backend=NAME)
    address, at, weight_text = spec.strip().partition("@")
    weight = 1.0
    if at:
        try:
            weight = float(weight_text)
        except ValueError:
            raise _bad(spec, f"the weight {weight_text!r} is not a number") from None
        if not math.isfinite(weight) or weight <= 0:
            raise _bad(spec, f"the weight must be a positive finite number, not {weight_text!r}")
    host, colon, port_text = address.rpartition(":")
    if not colon or not host:
        raise _bad(spec, "no port")
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise _bad(spec, "an IPv6 address is written in brackets, '[::1]:6379'")
        host = host[1:-1]
    elif ":" in host:
        raise _bad(spec, "an IPv6 address is written in brackets, '[::1]:6379'")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _bad(spec, f"the port {port_text!r} is not a number from 1 to 65535")
    return dataclasses.replace(base or RedisConfig(), host=host, port=int(port_text)), weight


def parse_nodes(specs: Sequence[str], base: RedisConfig | None = None) -> list[tuple[RedisConfig, float]]:
    """Every node of ``specs`` (see ``parse_node``), ``base`` giving the settings other than the address."""
    if isinstance(specs, str):
        raise InterfaceError(f"{NAME}: nodes are a list of 'host:port[@weight]' strings, not one string "
                             f"({specs!r})", backend=NAME)
    return [parse_node(spec, base) for spec in specs]


def _retyped(exc: DriverError, message: str) -> DriverError:
    """An error of ``exc``'s kind with this tier's backend and ``message``."""
    if isinstance(exc, BackendBusy):
        return BackendBusy(message, backend=NAME, retry_after_s=exc.retry_after_s)
    if isinstance(exc, BackendTimeout):
        return BackendTimeout(message, backend=NAME, waited_s=exc.waited_s)
    return type(exc)(message, backend=NAME)


def _node_error(exc: DriverError, node: str) -> DriverError:
    return _retyped(exc, f"{NAME}: node {node}: {exc.message}")


class ShardedRedisTier:
    """A ``RemoteTier`` over standalone Redis nodes, each key on one of them: ``ShardedRedisTier([(config, 1.0)])``."""

    name = NAME

    def __init__(self, nodes: Sequence[tuple[RedisConfig, float]]) -> None:
        if not nodes:
            raise InterfaceError(f"{NAME}: at least one node is needed", backend=NAME)
        weights: dict[str, float] = {}
        configs: dict[str, RedisConfig] = {}
        for config, weight in nodes:
            node = node_id(config)
            if node in weights:
                raise InterfaceError(f"{NAME}: node {node} is listed twice", backend=NAME)
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight < math.inf:
                raise InterfaceError(f"{NAME}: node {node}'s weight must be a positive finite number, "
                                     f"not {weight!r}", backend=NAME)
            weights[node], configs[node] = weight, config
        self.placement = Placement(weights)
        self.nodes: dict[str, RedisTier] = {node: RedisTier(RedisClient(c), own=True) for node, c in configs.items()}
        self.address = ",".join(self.nodes)

    @classmethod
    def from_addresses(cls, specs: Sequence[str], base: RedisConfig | None = None) -> ShardedRedisTier:
        """The tier on nodes written as text (``parse_nodes``): ``from_addresses(["h1:6379", "h2:6379@2"])``."""
        return cls(parse_nodes(specs, base))

    def __repr__(self) -> str:
        return f"<ShardedRedisTier {self.address}>"

    def node_for(self, key: str) -> str:
        """The id of the node that holds ``key``."""
        return self.placement.node_for(key)

    async def start(self) -> None:
        await self._all({node: tier.start() for node, tier in self.nodes.items()})

    async def aclose(self) -> None:
        closed = await asyncio.gather(*(tier.aclose() for tier in self.nodes.values()), return_exceptions=True)
        for result in closed:
            if isinstance(result, BaseException):
                raise result   # every node was closed first

    async def get(self, key: str) -> bytes | None:
        node = self.placement.node_for(key)
        return await self._on(node, self.nodes[node].get(key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        groups = self.placement.group(keys)
        if len(groups) == 1:
            node = next(iter(groups))
            return await self._on(node, self.nodes[node].get_many(keys))
        answers = await self._all({node: self.nodes[node].get_many([keys[i] for i in positions])
                                   for node, positions in groups.items()})
        values: list[bytes | None] = [None] * len(keys)
        for positions, got in zip(groups.values(), answers, strict=True):
            for i, value in zip(positions, got, strict=True):
                values[i] = value
        return values

    async def set_many(self, items: Sequence[tuple[str, bytes, int]]) -> None:
        if not items:
            return
        groups = self.placement.group([key for key, _, _ in items])
        await self._all({node: self.nodes[node].set_many([items[i] for i in positions])
                         for node, positions in groups.items()})

    async def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        groups = self.placement.group(keys)
        await self._all({node: self.nodes[node].delete_many([keys[i] for i in positions])
                         for node, positions in groups.items()})

    async def delete_prefix(self, prefix: str) -> int:
        removed = await self._all({node: scan_unlink(tier.client, prefix) for node, tier in self.nodes.items()})
        return sum(removed)

    async def acquire(self, key: str, token: bytes, ttl_ms: int) -> bool:
        node = self.placement.node_for(key)
        return await self._on(node, self.nodes[node].acquire(key, token, ttl_ms))

    async def release(self, key: str, token: bytes) -> None:
        node = self.placement.node_for(key)
        await self._on(node, self.nodes[node].release(key, token))

    async def _on(self, node: str, call: Awaitable[T]) -> T:
        """``call``'s result; its ``DriverError`` as this tier's, naming ``node``."""
        try:
            return await call
        except DriverError as exc:
            raise _node_error(exc, node) from exc

    async def _all(self, calls: Mapping[str, Awaitable[T]]) -> list[T]:
        """Every node's call, concurrently, results in the order of ``calls``; raised once all are done."""
        if len(calls) == 1:
            ((node, call),) = calls.items()
            return [await self._on(node, call)]
        results: list[Any] = await asyncio.gather(*(self._on(node, call) for node, call in calls.items()),
                                                  return_exceptions=True)
        failed: list[DriverError] = []
        for result in results:
            if isinstance(result, DriverError):
                failed.append(result)
            elif isinstance(result, BaseException):
                raise result   # a cancellation or a bug, not a node's failure
        if not failed:
            return results
        first = failed[0]
        if len(failed) == 1:
            raise first
        joined = _retyped(first, f"{NAME}: {len(failed)} of {len(calls)} nodes failed: "
                                 + "; ".join(e.message.removeprefix(f"{NAME}: ") for e in failed))
        raise joined from first
