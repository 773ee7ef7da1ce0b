"""WebSocket broadcast: 10,000 subscribers on one server process, against Tornado's and websockets' own fan-out.

    .venv/bin/python -m bench.ws_broadcast [--connections 10000] [--spaced 20] [--burst 30]
                                           [--targets asyncstack,tornado,websockets]

For each target, in the same run: a server process (pinned to CPU 0 when ``taskset``
exists) gets ``--connections`` subscribers from ``bench.ws_clients`` processes (on
CPU 1), all on one channel.  Then:

- memory per idle connection: the server's RSS growth while they connected, divided
  by their number (kernel socket buffers are not in RSS, and not counted);
- delivery latency: ``--spaced`` messages, 200 ms apart, each timed from just before
  its publish to its arrival at every subscriber: p50 / p99 / max over all frames;
- frames per second per core: ``--burst`` messages back to back from
  ``--burst-publishers`` (8) publishers at once; frames delivered divided by the
  server's CPU seconds (user + system, from ``/proc``) meanwhile.  Messages that
  reach the server together leave in one write per subscriber: with one publisher
  at a time (``--burst-publishers 1``) every frame is its own write, and the
  kernel's loopback send path is most of the cost.

``asyncstack`` is ``python -m app serve`` (publishing through ``POST /publish``, so
through Redis, and delivering frame-once); ``tornado`` calls ``write_message`` per
connection; ``websockets`` uses ``websockets.broadcast``.  Both are in
``bench/ws_baselines.py`` and skip Redis: they only fan out.  Needs the local stack
for ``asyncstack``.  Results: ``bench/results/ws_broadcast.json`` and ``.md``.
Loopback only; each phase is bounded; servers and clients are stopped at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.servers import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-publish-token"
CHANNEL = "bench"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Result:
    target: str
    connections: int
    idle_kb_per_connection: float
    spaced_p50_ms: float
    spaced_p99_ms: float
    spaced_max_ms: float
    burst_frames: int
    burst_cpu_s: float
    frames_per_s_per_core: float
    burst_p99_ms: float
    delivered: float           # frames received / frames expected, both phases
    burst_user_s: float        # the server's CPU in the burst: user space (Python) ...
    burst_system_s: float      # ... and kernel (the loopback TCP send path)


def _pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def _cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def _cpu_seconds(pid: int) -> float:
    return sum(_cpu_times(pid))


def _rss_kb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 1024


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"error: nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


class Publisher:
    """Publishes ``{"t": <now>, "phase": ...}`` to the target the way its users would."""

    def __init__(self, target: str, port: int) -> None:
        self.target = target
        if target == "asyncstack":
            self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        else:
            from websockets.sync.client import connect
            self.stack = contextlib.ExitStack()
            self.ws = self.stack.enter_context(connect(f"ws://127.0.0.1:{port}/ws", compression=None))

    def publish(self, phase: str) -> None:
        data = {"t": time.time(), "phase": phase}
        if self.target == "asyncstack":
            body = json.dumps(data).encode()
            self.http.request("POST", f"/publish/{CHANNEL}", body=body, headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
            resp = self.http.getresponse()
            answer = resp.read()
            if resp.status != 200:
                raise SystemExit(f"error: publish answered {resp.status}: {answer[:200]!r}")
        else:
            self.ws.send(json.dumps({"op": "publish", "data": data}))

    def close(self) -> None:
        if self.target == "asyncstack":
            self.http.close()
        else:
            self.stack.close()


def _server_cmd(target: str, port: int) -> tuple[list[str], dict[str, str]]:
    if target == "asyncstack":
        env = {"ASYNCSTACK_WS__PUBLISH_TOKEN": TOKEN, "ASYNCSTACK_SERVER__ACCESS_LOG": "false"}
        return [sys.executable, "-m", "app", "serve", "--port", str(port)], env
    return [sys.executable, "-m", "bench.ws_baselines", target, str(port)], {}


def _settle(pid: int, timeout: float = 30) -> None:
    """Wait until the server is idle again (its CPU time stops growing): the burst has left it."""
    deadline = time.monotonic() + timeout
    last = _cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = _cpu_seconds(pid)
        if now - last < 0.01:
            return
        last = now


def run_target(target: str, connections: int, spaced: int, burst: int, client_procs: int,
               burst_publishers: int) -> Result:
    port = free_port()
    cmd, env = _server_cmd(target, port)
    server = subprocess.Popen([*_pin(0), *cmd], cwd=ROOT, env={**os.environ, **env},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    clients: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="ws-bench-"))
    try:
        _wait_port(port, server)
        time.sleep(0.5)
        rss_before = _rss_kb(server.pid)
        shares = [connections // client_procs + (i < connections % client_procs) for i in range(client_procs)]
        for i, share in enumerate(shares):
            clients.append(subprocess.Popen(
                [*_pin(1), sys.executable, "-m", "bench.ws_clients", str(port), CHANNEL, str(share),
                 str(tmp / f"c{i}.json")], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        for client in clients:
            assert client.stdout is not None
            line = client.stdout.readline().decode().strip()
            if not line.startswith("ready"):
                raise SystemExit(f"error: a client process failed to connect its subscribers ({line!r})")
        time.sleep(1.0)
        idle_kb = (_rss_kb(server.pid) - rss_before) / connections
        print(f"  {target}: {connections} subscribers connected, {idle_kb:.1f} KB each", flush=True)

        publisher = Publisher(target, port)
        for _ in range(spaced):
            publisher.publish("spaced")
            time.sleep(0.2)
        _settle(server.pid)
        # The burst comes from several publishers at once, as it would from many request handlers.
        publishers = [publisher] + [Publisher(target, port) for _ in range(burst_publishers - 1)]
        shares = [burst // len(publishers) + (i < burst % len(publishers)) for i in range(len(publishers))]
        user_before, sys_before = _cpu_times(server.pid)

        def send(one: Publisher, count: int) -> None:
            for _ in range(count):
                one.publish("burst")

        with concurrent.futures.ThreadPoolExecutor(len(publishers)) as pool:
            list(pool.map(send, publishers, shares))
        _settle(server.pid)
        user_after, sys_after = _cpu_times(server.pid)
        user, system = user_after - user_before, sys_after - sys_before
        cpu = user + system
        for one in publishers:
            one.close()

        for client in clients:
            assert client.stdin is not None
            client.stdin.write(b"report\n")
            client.stdin.flush()
        for client in clients:
            client.wait(60)
        spaced_lat: list[float] = []
        burst_lat: list[float] = []
        for i in range(len(clients)):
            report = json.loads((tmp / f"c{i}.json").read_text())
            spaced_lat += report["latencies_ms"].get("spaced", [])
            burst_lat += report["latencies_ms"].get("burst", [])
        spaced_lat.sort()
        burst_lat.sort()
        frames = len(burst_lat)
        delivered = (len(spaced_lat) + len(burst_lat)) / (connections * (spaced + burst))
        return Result(target, connections, round(idle_kb, 2), round(_percentile(spaced_lat, 0.5), 2),
                      round(_percentile(spaced_lat, 0.99), 2), round(spaced_lat[-1] if spaced_lat else 0, 2),
                      frames, round(cpu, 3), round(frames / cpu) if cpu > 0 else 0,
                      round(_percentile(burst_lat, 0.99), 2), round(delivered, 4), round(user, 3), round(system, 3))
    finally:
        for client in clients:
            stop_process(client)
        stop_process(server)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--spaced", type=int, default=20, help="messages 200 ms apart (latency)")
    parser.add_argument("--burst", type=int, default=30, help="messages back to back (frames/s per core)")
    parser.add_argument("--burst-publishers", type=int, default=8, help="publishers sending the burst at once")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--targets", default="asyncstack,tornado,websockets")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and Markdown go")
    args = parser.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - {"asyncstack", "tornado", "websockets"}
    if unknown:
        print(f"error: unknown targets {sorted(unknown)}: choose from asyncstack, tornado, websockets", file=sys.stderr)
        return 2
    results = []
    for target in targets:
        print(f"{target}: {args.connections} connections, {args.spaced} spaced + {args.burst} burst messages",
              flush=True)
        result = run_target(target, args.connections, args.spaced, args.burst, args.client_procs,
                            args.burst_publishers)
        results.append(result)
        print(f"  p50 {result.spaced_p50_ms} ms  p99 {result.spaced_p99_ms} ms  "
              f"{result.frames_per_s_per_core:,} frames/s per core  delivered {result.delivered:.2%}", flush=True)

    by = {r.target: r for r in results}
    summary: dict[str, Any] = {}
    ours = by.get("asyncstack")
    if ours is not None:
        summary["targets_met"] = {
            "idle_kb_per_connection<=20": ours.idle_kb_per_connection <= 20,
            "p99_delivery_ms<500": ours.spaced_p99_ms < 500,
            "frames_per_s_per_core>=100000": ours.frames_per_s_per_core >= 100_000,
        }
        for other in ("tornado", "websockets"):
            if other in by and by[other].frames_per_s_per_core:
                summary[f"frames_per_core_vs_{other}"] = round(ours.frames_per_s_per_core
                                                               / by[other].frames_per_s_per_core, 2)
                summary[f"idle_memory_vs_{other}"] = round(ours.idle_kb_per_connection
                                                           / max(by[other].idle_kb_per_connection, 0.01), 2)
    print(json.dumps(summary, indent=2))
    results_dir: Path = args.results
    results_dir.mkdir(parents=True, exist_ok=True)
    meta = {"connections": args.connections, "spaced": args.spaced, "burst": args.burst, "cpus": os.cpu_count(),
            "burst_publishers": args.burst_publishers, "pinned": bool(_pin(0))}
    (results_dir / "ws_broadcast.json").write_text(json.dumps(
        {"meta": meta, "runs": [asdict(r) for r in results], "summary": summary}, indent=2))
    header = ("| target | connections | idle KB/conn | p50 ms | p99 ms | max ms | frames/s per core | "
              "burst p99 ms | delivered |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.target} | {r.connections} | {r.idle_kb_per_connection} | {r.spaced_p50_ms} | "
              f"{r.spaced_p99_ms} | {r.spaced_max_ms} | {r.frames_per_s_per_core:,} | {r.burst_p99_ms} | "
              f"{r.delivered:.2%} |" for r in results]
    (results_dir / "ws_broadcast.md").write_text("\n".join(lines) + "\n\n" + json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
