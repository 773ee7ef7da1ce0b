"""The stack's Redis Cluster: six cluster-enabled ``redis-server`` nodes made into one cluster.

Rules of this file:
- Each node is a service of its own (``redis-cluster-<i>`` in ``stack.services``, at the ports
  ``app.settings.REDIS_CLUSTER_PORTS``; cluster bus on port + 10000): its own process, pid file,
  log and ``nodes.conf`` under ``.stack/redis-cluster-<i>/``.  No persistence, like the other Redis.
- A node started while no other node of the stack belongs to a formed cluster starts empty (its
  old ``nodes.conf`` removed), so ``down`` then ``up`` makes a new cluster.  A node started while
  the others form a cluster keeps its ``nodes.conf`` and rejoins it: ``up redis-cluster-<i>``
  brings back a node that was killed.  A primary that owned slots is started only once the
  cluster has promoted its replica (up to ``FAILOVER_WAIT_S``): it then rejoins as a replica,
  instead of taking its slots back empty (no persistence) and having its replica copy that.
- The cluster is formed by a node's probe: once all six answer and none knows another node,
  ``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`` is started once, detached
  (its output in ``.stack/redis-cluster/create.log``), and the probes wait for it.
- A node is up when its own ``CLUSTER INFO`` says ``cluster_state:ok``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.settings import REDIS_CLUSTER_PORTS, STACK_HOST
from drivers.errors import BackendUnavailable, DriverError
from drivers.redis import PipelinedRedis, RedisConfig
from stack.process import STATE, SetupFailed, tail

NODE_TIMEOUT_MS = 2000
FAILOVER_WAIT_S = 20.0   # how long a killed primary's restart waits for its replica's promotion
NODES = tuple((STACK_HOST, port) for port in REDIS_CLUSTER_PORTS)
CREATE_LOG = STATE / "redis-cluster" / "create.log"



def node_options(state_dir: Path) -> list[str]:
    """The options that make a ``redis-server`` a cluster node keeping its state in ``state_dir``."""
    return ["--cluster-enabled", "yes", "--cluster-config-file", str(state_dir / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS)]


def parse_info(text: bytes | str) -> dict[str, str]:
    """``INFO`` / ``CLUSTER INFO`` text as a dict (section headers and blank lines skipped)."""
    if isinstance(text, bytes):
        text = text.decode()
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {key: value.strip() for key, value in pairs}


def _ask_sync(host: str, port: int, *args: str) -> bytes | None:
    """One command to a node, blocking with short timeouts (``up`` prepares nodes synchronously); None if it fails."""
    client = redis.Redis(host=host, port=port, socket_connect_timeout=0.5, socket_timeout=1.0,
                         retry=Retry(NoBackoff(), 0))   # redis-py's own retries would wait seconds
    try:
        reply: bytes = client.execute_command(*args)  # type: ignore[no-untyped-call]
    except redis.RedisError:
        return None
    finally:
        client.close()
    return reply


def formed_elsewhere(port: int) -> bool:
    """True when another node of the stack answers and knows other nodes: a formed cluster is running."""
    for host, other in NODES:
        reply = _ask_sync(host, other, "CLUSTER", "INFO") if other != port else None
        if reply is not None and int(parse_info(reply).get("cluster_known_nodes", "1")) > 1:
            return True
    return False


def _still_primary(node_id: str, port: int) -> bool:
    """True while another node of the stack lists ``node_id`` as a primary that owns slots."""
    for host, other in NODES:
        reply = _ask_sync(host, other, "CLUSTER", "NODES") if other != port else None
        for line in (reply or b"").decode().splitlines():
            fields = line.split()
            if fields and fields[0] == node_id:
                return "master" in fields[2].split(",") and len(fields) > 8
    return False


def _own_line(nodes_conf: Path) -> list[str] | None:
    """The fields of a node's own line in its nodes.conf (id, address, flags, ..., its slots), or None."""
    try:
        text = nodes_conf.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 2 and "myself" in fields[2].split(","):
            return fields
    return None


def wait_for_failover(state_dir: Path, port: int, timeout_s: float = FAILOVER_WAIT_S) -> None:
    """Before a primary that owned slots starts again, empty: wait until the cluster has promoted its replica.

    Started sooner (within the node timeout), it would take its slots back with no data, and
    its replica would copy that emptiness.  Started after, it rejoins as a replica.  Blocking.
    """
    myself = _own_line(state_dir / "nodes.conf")
    if myself is None or "master" not in myself[2].split(",") or len(myself) <= 8:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _still_primary(myself[0], port):
        time.sleep(0.2)


def forget(state_dir: Path, *, cluster_state: bool = True) -> None:
    """Remove the RDB file a replica's full sync left (no data survives a restart) and, with
    ``cluster_state``, the node's ``nodes.conf``: it then starts as an empty node of no cluster."""
    for name in ("nodes.conf", "dump.rdb") if cluster_state else ("dump.rdb",):
        (state_dir / name).unlink(missing_ok=True)


async def _ask(host: str, port: int) -> tuple[dict[str, str], dict[str, str]]:
    """A node's ``INFO server replication`` and ``CLUSTER INFO``, through the project's own connection."""
    pipe = PipelinedRedis(RedisConfig(host=host, port=port, connect_timeout_s=1.0, socket_timeout_s=2.0))
    try:
        info = parse_info(await pipe.execute("INFO", "server", "replication"))
        return info, parse_info(await pipe.execute("CLUSTER", "INFO"))
    finally:
        await pipe.aclose()


async def probe(host: str, port: int) -> str:
    """The node answers and its cluster is ``ok``; otherwise forms the cluster if it is time, and raises."""
    info, cluster = await _ask(host, port)
    state = cluster.get("cluster_state", "?")
    if state == "ok":
        role = "primary" if info.get("role") == "master" else "replica"
        return (f"Redis {info.get('redis_version', '?')} cluster {role}, cluster_state ok, "
                f"{cluster.get('cluster_known_nodes', '?')} nodes")
    progress = await _form()
    raise BackendUnavailable(f"redis-cluster {host}:{port}: cluster_state {state} ({progress})",
                             backend="redis-cluster")


class _Creation:
    """The one ``redis-cli --cluster create`` this process starts at a time (it runs detached)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def running(self) -> bool:
        """True while it runs; a SetupFailed (once) when it ended with an error."""
        proc = self.proc
        if proc is None:
            return False
        code = proc.poll()
        if code is None:
            return True
        self.proc = None
        if code != 0:
            raise SetupFailed(f"redis-cluster: `redis-cli --cluster create` exited {code}.\n"
                              f"Last lines of {CREATE_LOG}:\n{tail(CREATE_LOG)}")
        return False

    def start(self) -> None:
        CREATE_LOG.parent.mkdir(parents=True, exist_ok=True)
        argv = [shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                *(f"{host}:{port}" for host, port in NODES), "--cluster-replicas", "1", "--cluster-yes"]
        with CREATE_LOG.open("ab") as log:
            try:
                self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
            except OSError as exc:
                raise SetupFailed(f"redis-cluster: cannot run redis-cli ({exc})") from None


_creation = _Creation()


async def _form() -> str:
    """Start ``redis-cli --cluster create`` when all six nodes answer and none knows another; what is going on."""
    if _creation.running():
        return "redis-cli --cluster create is running"
    fresh = 0
    for host, port in NODES:
        try:
            _, cluster = await _ask(host, port)
        except DriverError:
            return f"waiting for {host}:{port} to answer"
        fresh += cluster.get("cluster_known_nodes") == "1" and cluster.get("cluster_slots_assigned") == "0"
    if fresh < len(NODES):
        return "the nodes are joining"
    if _creation.running():   # another probe started it while this one asked the nodes
        return "redis-cli --cluster create is running"
    _creation.start()
    return "creating the cluster"
