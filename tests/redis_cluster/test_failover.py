"""A primary of the stack's cluster killed for real (SIGKILL) while reads and writes go on.

The cluster promotes the primary's replica (node timeout 2 s); the client finds the new
primary by reading the table again until the lost one owns nothing.  The killed node is then
started again through the stack (``stack up redis-cluster-<i>``: it rejoins as a replica) and
``wait_until_healthy`` waits until every node says ``cluster_state:ok`` again, so the tests
after this one find a whole cluster.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from dataclasses import dataclass, field

import pytest

from app.settings import REDIS_CLUSTER_PORTS
from drivers.errors import BackendUnavailable, DriverError
from drivers.redis import RedisClusterClient
from drivers.redis.slots import Address, key_slot, parse_shards
from stack.redis_cluster import parse_info
from tests.conftest import run_stack_async
from tests.redis_cluster.conftest import on_node

RECOVERY_LIMIT_S = 15.0


async def node_state(port: int) -> tuple[dict[str, str], dict[str, str], bytes]:
    """A node's INFO (server, replication), CLUSTER INFO and CLUSTER NODES."""
    info = parse_info(await on_node(port, "INFO", "server", "replication"))
    return info, parse_info(await on_node(port, "CLUSTER", "INFO")), await on_node(port, "CLUSTER", "NODES")


async def online_replicas(port: int) -> int:
    """How many replicas a node's CLUSTER SHARDS calls online, the test clients' source of replicas (a
    replica whose offset the node has not yet heard of through gossip is "loading" there)."""
    table = parse_shards(await on_node(port, "CLUSTER", "SHARDS"), Address("127.0.0.1", port))
    return sum(len(shard.replicas) for shard in table.shards)


def view(nodes: bytes) -> frozenset[tuple[str, str, str]]:
    """One node's picture of the cluster from CLUSTER NODES: (node id, role, its primary's id) per
    connected node.  A rejoining node shows up in some pictures as a replica before others."""
    seen = set()
    for line in nodes.decode().splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[7] != "connected":
            continue
        flags = set(fields[2].split(","))
        role = "master" if "master" in flags else "slave" if "slave" in flags else "?"
        seen.add((fields[0], role, fields[3]))
    return frozenset(seen)


async def wait_until_healthy(timeout_s: float = 30.0) -> None:
    """Every node answers with cluster_state:ok, no node is flagged as failing, every replica is in sync,
    and all six nodes draw the same picture: three primaries, three replicas, each replica under its primary."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            states = [await node_state(port) for port in REDIS_CLUSTER_PORTS]
        except DriverError as exc:
            last = exc.message
        else:
            problems = [f"{port}: state {cluster.get('cluster_state')}, {nodes.count(b'fail')} fail flags, "
                        f"role {info.get('role')} link {info.get('master_link_status', '-')}"
                        for port, (info, cluster, nodes) in zip(REDIS_CLUSTER_PORTS, states, strict=True)
                        if cluster.get("cluster_state") != "ok" or b"fail" in nodes
                        or info.get("master_link_status", "up") != "up"]
            six = ["master"] * 3 + ["slave"] * 3
            roles = sorted(info.get("role", "?") for info, _, _ in states)
            views = {view(nodes) for _, _, nodes in states}
            whole = len(views) == 1 and sorted(role for _, role, _ in next(iter(views))) == six
            if not problems and roles == six and whole:
                try:
                    online = [await online_replicas(port) for port in REDIS_CLUSTER_PORTS]
                except DriverError as exc:
                    online = [-1]
                    problems.append(exc.message)
                if online == [3] * len(REDIS_CLUSTER_PORTS):
                    return
                problems.append(f"replicas online in CLUSTER SHARDS per node: {online}")
            last = "; ".join(problems) or f"roles {roles}, {len(views)} different views of the cluster"
        await asyncio.sleep(0.2)
    raise AssertionError(f"the cluster is not healthy after {timeout_s:.0f} s: {last}")


async def start_again(port: int) -> None:
    """The stack starts the node again (keeping its nodes.conf: it rejoins the cluster)."""
    name = f"redis-cluster-{REDIS_CLUSTER_PORTS.index(port)}"
    done = await run_stack_async("up", name)
    assert done.returncode == 0, done.stdout + done.stderr


@dataclass
class Load:
    """Writers and readers going on all through the test; what they met."""

    client: RedisClusterClient
    keys: list[str]
    victim_slots: set[int]
    errors: list[BaseException] = field(default_factory=list)
    victim_ok_at: list[float] = field(default_factory=list)    # writes to the lost primary's slots that succeeded
    victim_failed_at: list[float] = field(default_factory=list)
    other_failed_at: list[float] = field(default_factory=list)   # failures on the other shards' slots
    writes: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def worker(self, offset: int) -> None:
        n = offset
        while not self.stop.is_set():
            key = self.keys[n % len(self.keys)]
            n += 7
            victim = key_slot(key) in self.victim_slots
            try:
                if n % 2:
                    await self.client.set(key, str(n), px=60_000)
                    self.writes += 1
                    if victim:
                        self.victim_ok_at.append(time.monotonic())
                else:
                    await self.client.get(key)
            except BaseException as exc:   # everything is recorded; the test checks each is a DriverError
                self.errors.append(exc)
                (self.victim_failed_at if victim else self.other_failed_at).append(time.monotonic())
                await asyncio.sleep(0.01)


async def test_a_killed_primary_is_replaced_and_writes_succeed_again(cluster: RedisClusterClient) -> None:
    await wait_until_healthy()
    run = uuid.uuid4().hex[:8]
    keys = [f"failover:{run}:{i}" for i in range(300)]
    table = cluster.topology.table
    assert table is not None
    victim = table.shard(key_slot(keys[0]))
    assert victim is not None
    port = victim.primary.port
    victim_slots = {s for s, shard in enumerate(table.owners) if shard is not None and shard.primary.port == port}
    info, _, _ = await node_state(port)
    pid = int(info["process_id"])

    load = Load(cluster, keys, victim_slots)
    workers = [asyncio.ensure_future(load.worker(i)) for i in range(16)]
    try:
        await asyncio.sleep(0.5)
        assert not load.errors and load.victim_ok_at, "the load runs cleanly before the kill"
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        while time.monotonic() - killed_at < RECOVERY_LIMIT_S:
            failed = [t for t in load.victim_failed_at if t >= killed_at]
            if failed and any(t > failed[0] for t in load.victim_ok_at):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)   # writes go on on the new primary for a while
    finally:
        load.stop.set()
        await asyncio.gather(*workers)
        await start_again(port)
    failed = [t for t in load.victim_failed_at if t >= killed_at]
    assert failed, "writes to the killed primary's slots failed for a while"
    recovered = [t for t in load.victim_ok_at if t > failed[0]]
    assert recovered, f"no write to the lost primary's slots succeeded within {RECOVERY_LIMIT_S:.0f} s"
    assert recovered[0] - killed_at < RECOVERY_LIMIT_S
    strangers = [e for e in load.errors if not (isinstance(e, DriverError) and e.backend == "redis-cluster")]
    assert not strangers, f"errors other than the cluster's DriverErrors reached the callers: {strangers[:3]}"
    new_primary = cluster.topology.table.shard(key_slot(keys[0]))  # type: ignore[union-attr]
    assert new_primary is not None and new_primary.primary.port != port
    print(f"\nprimary {port} killed: writes to its slots failed from +{failed[0] - killed_at:.2f} s, "
          f"succeeded again at +{recovered[0] - killed_at:.2f} s (new primary {new_primary.primary}); "
          f"{len(load.errors)} errors, all DriverErrors; other shards failed "
          f"{len([t for t in load.other_failed_at if t >= killed_at])} times; "
          f"{cluster.topology.refreshes} table reads, {cluster.stats()['retries']} retries")

    await wait_until_healthy()
    info, _, _ = await node_state(port)
    assert info["role"] == "slave", "the killed node came back as a replica"
    await cluster.batch([("SET", k, "after", "PX", 60_000) for k in keys], idempotent=True)
    assert await cluster.mget(keys) == [b"after"] * len(keys)
    await cluster.delete(keys)


async def test_after_one_failed_command_the_client_finds_the_promoted_replica_by_itself(
        cluster: RedisClusterClient) -> None:
    await wait_until_healthy()
    key = f"failover:alone:{uuid.uuid4().hex[:8]}"
    slot = key_slot(key)
    table = cluster.topology.table
    shard = table.shard(slot) if table is not None else None
    assert shard is not None
    port = shard.primary.port
    info, _, _ = await node_state(port)
    try:
        os.kill(int(info["process_id"]), signal.SIGKILL)
        killed_at = time.monotonic()
        with pytest.raises(BackendUnavailable) as caught:   # retried, and still nothing there: no traffic after it
            await cluster.set(key, "v", px=60_000)
        assert caught.value.backend == "redis-cluster"
        while time.monotonic() - killed_at < RECOVERY_LIMIT_S:
            now = cluster.topology.table.shard(slot)  # type: ignore[union-attr]
            if now is not None and now.primary.port != port:
                break
            await asyncio.sleep(0.05)
        found_at = time.monotonic() - killed_at
        retries = cluster.stats()["retries"]
        assert await cluster.set(key, "v", px=60_000)
        assert cluster.stats()["retries"] == retries, "the first try went to the new primary"
        assert found_at < RECOVERY_LIMIT_S
        print(f"\nprimary {port} killed, one failed write: the table named the new primary at +{found_at:.2f} s")
    finally:
        await start_again(port)
        await wait_until_healthy()
    await cluster.delete([key])
