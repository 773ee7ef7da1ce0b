"""RedisClusterClient against the stack's real cluster: routing, commands split by slot, replicas, errors."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from drivers.errors import BackendError, BackendUnavailable, InterfaceError
from drivers.redis import PipelinedRedis, RedisClusterClient, RedisClusterConfig, RedisConfig
from drivers.redis.slots import key_slot
from tests.conftest import run_stack_async
from tests.redis_cluster.conftest import with_settings


def token() -> str:
    return uuid.uuid4().hex[:12]


async def test_every_key_goes_straight_to_the_primary_that_holds_it(cluster: RedisClusterClient) -> None:
    run = token()
    keys = [f"route:{run}:{i}" for i in range(600)]
    await asyncio.gather(*(cluster.set(k, k, px=60_000) for k in keys))
    assert await asyncio.gather(*(cluster.get(k) for k in keys)) == [k.encode() for k in keys]
    assert cluster.moved == 0 and cluster.asked == 0   # no node had to redirect a single command
    table = cluster.topology.table
    assert table is not None
    # Each key is where the table says, as the owner itself answers (a plain connection: no redirects).
    pipes = {a: PipelinedRedis(RedisConfig(host=a.host, port=a.port)) for a in table.primaries}
    try:
        held = await asyncio.gather(*(pipes[table.owners[key_slot(k)].primary].execute("GET", k)  # type: ignore[union-attr]
                                      for k in keys))
    finally:
        await asyncio.gather(*(p.aclose() for p in pipes.values()))
        await cluster.delete(keys)
    assert held == [k.encode() for k in keys]
    per_node = cluster.stats()["detail"]["nodes"]
    assert all(per_node[str(a)]["requests"] > 100 for a in table.primaries)


async def test_mget_across_every_node_keeps_the_callers_order(cluster: RedisClusterClient) -> None:
    run = token()
    keys = [f"mget:{run}:{i}" for i in range(300)]
    present = keys[::3]
    await cluster.batch([("SET", k, f"v-{k}", "PX", 60_000) for k in present], idempotent=True)
    order = [*keys[::-1], f"{{{run}}}:missing", keys[0]]
    try:
        values = await cluster.mget(order)
        assert cluster.calls.requests == 2   # the batch and the mget: one call each at the boundary
    finally:
        await cluster.delete(present)
    assert values == [f"v-{k}".encode() if k in present else None for k in order]
    assert len({key_slot(k) for k in order}) > 200 and cluster.moved == 0


async def test_keys_sharing_a_hash_tag_go_in_one_multi_key_command(cluster: RedisClusterClient) -> None:
    user = f"{{user:{token()}}}"
    await cluster.command("MSET", f"{user}:name", "ada", f"{user}:lang", "en", idempotent=True)
    assert await cluster.command("MGET", f"{user}:name", f"{user}:lang") == [b"ada", b"en"]
    assert await cluster.delete([f"{user}:name", f"{user}:lang"]) == 2
    assert cluster.moved == 0   # each went to its slot's primary straight away


async def test_a_batch_is_routed_per_command_and_answers_in_order(cluster: RedisClusterClient) -> None:
    run = token()
    commands = [("SET", f"batch:{run}:{i}", str(i), "PX", 60_000) for i in range(50)]
    commands += [("INCR", f"batch:{run}:{i}") for i in range(50)]
    replies = await cluster.batch(commands)
    assert replies == [b"OK"] * 50 + list(range(1, 51))
    assert cluster.moved == 0   # each command went to its key's primary straight away
    assert await cluster.delete([f"batch:{run}:{i}" for i in range(50)]) == 50


async def test_an_error_reply_in_a_batch_fails_it_after_the_other_commands_ran(cluster: RedisClusterClient) -> None:
    run = token()
    with pytest.raises(BackendError, match=r"WRONGTYPE|not an integer") as caught:
        await cluster.batch([("SET", f"bad:{run}:a", "x", "PX", 60_000), ("INCR", f"bad:{run}:a"),
                             ("SET", f"bad:{run}:b", "y", "PX", 60_000)])
    assert caught.value.backend == "redis-cluster"
    assert await cluster.mget([f"bad:{run}:a", f"bad:{run}:b"]) == [b"x", b"y"]
    await cluster.delete([f"bad:{run}:a", f"bad:{run}:b"])


async def test_set_nx_says_whether_it_set_the_key(cluster: RedisClusterClient) -> None:
    key = f"nx:{token()}"
    assert await cluster.set(key, "first", px=60_000, nx=True) is True
    assert await cluster.set(key, "second", px=60_000, nx=True) is False
    assert await cluster.get(key) == b"first"
    assert 0 < int(await cluster.command("PTTL", key)) <= 60_000
    await cluster.delete([key])


async def test_failures_reach_the_caller_as_driver_errors_of_redis_cluster(cluster: RedisClusterClient) -> None:
    with pytest.raises(BackendError, match="unknown command") as server_error:
        await cluster.command("NO-SUCH-COMMAND", "k")
    with pytest.raises(BackendError, match="CROSSSLOT") as cross_slot:
        await cluster.command("MGET", "a", "b")   # two slots in one command: the server refuses it
    with pytest.raises(InterfaceError) as misuse:
        await cluster.command()
    with pytest.raises(InterfaceError):
        await cluster.get(None)  # type: ignore[arg-type]
    with pytest.raises(InterfaceError, match="surrogates not allowed") as bad_key:
        await cluster.get("k\ud800")
    with pytest.raises(InterfaceError, match="surrogates not allowed") as bad_value:
        await cluster.set(f"k-{token()}", "v\ud800")
    for caught in (server_error, cross_slot, misuse, bad_key, bad_value):
        assert caught.value.backend == "redis-cluster"
    assert cluster.calls.errors == 2   # the server's answers, counted at the boundary


async def test_a_closed_client_fails_with_backend_unavailable(cluster_config: RedisClusterConfig) -> None:
    client = RedisClusterClient(cluster_config)
    await client.start()
    await client.aclose()
    await client.aclose()   # idempotent
    for call in (client.get("k"), client.mget(["a", "b"]), client.command("PING"), client.scan_unlink("x")):
        with pytest.raises(BackendUnavailable) as caught:
            await call
        assert caught.value.backend == "redis-cluster"


async def test_no_seed_answering_is_backend_unavailable() -> None:
    client = RedisClusterClient(RedisClusterConfig(nodes=(("127.0.0.1", 1),), connect_timeout_s=0.5))
    with pytest.raises(BackendUnavailable, match="no node answered") as caught:
        await client.start()
    assert caught.value.backend == "redis-cluster"
    await client.aclose()


@pytest.mark.parametrize(("username", "refused"), [(None, "AUTH <password> called without any password"),
                                                  ("someone", "WRONGPASS")])
async def test_credentials_are_sent_on_every_connection(cluster_config: RedisClusterConfig, username: str | None,
                                                         refused: str) -> None:
    # The stack's cluster has no password: the AUTH the client sends is refused, which shows it was sent.
    client = RedisClusterClient(with_settings(cluster_config, username=username, password="not-the-password"))
    with pytest.raises(BackendUnavailable, match=refused) as caught:
        await client.start()
    assert caught.value.backend == "redis-cluster"
    await client.aclose()


async def test_reads_from_replicas_are_served_by_the_replicas(cluster_config: RedisClusterConfig) -> None:
    # A node killed by an earlier test may still be rejoining as a replica: this test needs all three.
    from tests.redis_cluster.test_failover import wait_until_healthy

    await wait_until_healthy()
    run = token()
    keys = [f"replica:{run}:{i}" for i in range(200)]
    async with RedisClusterClient(with_settings(cluster_config, read_from_replicas=True)) as client:
        await client.batch([("SET", k, k, "PX", 60_000) for k in keys], idempotent=True)
        await client.command("WAIT", 1, 2000)   # this shard's replica has the writes: the others get a moment
        await asyncio.sleep(0.2)
        assert await asyncio.gather(*(client.get(k) for k in keys)) == [k.encode() for k in keys]
        assert await client.mget(keys) == [k.encode() for k in keys]
        table = client.topology.table
        assert table is not None
        replicas = {str(r) for shard in table.shards for r in shard.replicas}
        nodes = client.stats()["detail"]["nodes"]
        assert len(replicas) == 3 and all(nodes[r]["requests"] > 50 for r in replicas)
        assert client.moved == 0   # READONLY: each replica served its primary's slots itself
        await client.delete(keys)


async def test_the_table_is_read_again_periodically(cluster_config: RedisClusterConfig) -> None:
    async with RedisClusterClient(with_settings(cluster_config, refresh_interval_s=0.1)) as client:
        await asyncio.sleep(0.55)
        assert client.topology.refreshes >= 4   # the first read, then about one per 0.1 s
        assert await client.command("PING") == b"PONG"


async def test_scan_unlink_removes_a_prefix_on_every_primary_and_nothing_else(cluster: RedisClusterClient) -> None:
    run = token()
    doomed = [f"gone:{run}:*[x]:{i}" for i in range(300)]          # glob characters in the prefix itself
    kept = [f"gone:{run}:other:{i}" for i in range(30)] + [f"gone:{run}:*:{i}" for i in range(30)]
    await cluster.batch([("SET", k, "1", "PX", 60_000) for k in doomed + kept], idempotent=True)
    assert len({cluster.topology.table.owners[key_slot(k)].primary for k in doomed}) == 3  # type: ignore[union-attr]
    assert await cluster.scan_unlink(f"gone:{run}:*[x]:") == 300
    assert await cluster.mget(doomed) == [None] * 300
    assert await cluster.mget(kept) == [b"1"] * 60
    assert await cluster.delete(kept) == 60


async def test_stats_have_the_shape_of_every_client(cluster: RedisClusterClient) -> None:
    await cluster.get(f"stats:{token()}")
    stats = cluster.stats()
    assert stats["backend"] == "redis-cluster" and stats["connected"] and stats["requests"] >= 1
    assert stats["detail"]["slots_served"] == 16384
    assert sorted(n["role"] for n in stats["detail"]["nodes"].values()).count("primary") == 3
    assert await cluster.ping() > 0


async def test_a_cancelled_caller_is_not_an_error_and_leaves_the_connection_in_step(
        cluster: RedisClusterClient) -> None:
    key = f"cancel:{token()}"
    await cluster.set(key, "mine", px=60_000)
    tasks = [asyncio.ensure_future(cluster.get(key)) for _ in range(20)]
    await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[::2])
    assert results[1::2] == [b"mine"] * 10
    assert await cluster.get(key) == b"mine"
    assert cluster.calls.in_flight == 0 and cluster.calls.errors == 0
    await cluster.delete([key])


async def test_the_stack_shows_the_six_nodes_up_three_primaries_and_three_replicas(settings: object) -> None:
    done = await run_stack_async("status", "redis-cluster")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("redis-cluster-")]
    assert len(lines) == 6 and all(" up " in ln and "cluster_state ok" in ln for ln in lines), done.stdout
    assert sum("cluster primary" in ln for ln in lines) == 3 and sum("cluster replica" in ln for ln in lines) == 3
