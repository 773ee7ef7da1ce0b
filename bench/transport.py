"""The HTTP transport, measured: stock Tornado against ``app.http.fast_server``, same handlers, same run.

    .venv/bin/python -m bench.transport [--seconds 5] [--rounds 3] [--connections 50] [--before COMMIT]

Rules of this file:
- Every server is started once, pinned to CPU 1 (``taskset``); wrk runs pinned to CPU 0 with
  kept-alive connections.  The stack's own processes (those working in ``.stack/``: Redis,
  MariaDB, the Ignite nodes' JVMs...) are moved to CPU 0 for the run and put back after, so the
  server's core is its own: an Ignite node's periodic work or Redis's own CPU does not land on
  it.  The rounds alternate over all servers, so a machine that drifts drifts for all of them;
  the median round is reported.
- Pairs, each stock Tornado and then the fast transport: a hello-world handler written the
  usual way (``bench.hello``; ``hello/lean`` also swaps ``Application`` for ``LeanApplication``),
  the service's ``/now`` and its Redis read (``GET /redis/kv/{key}``)
  with everything the service does per request (metrics, request ids, access log to a file).
  aiohttp and uvicorn (raw ASGI) serve the same hello-world as the horizon.
- ``--before COMMIT`` adds the service as it was at that commit (a git worktree, Tornado's own
  server, the handlers of then): ``now/before`` and ``redis/before``, the baseline for what this
  transport and the leaner handler base buy together.
- Requests per CPU-second come from the server process's own CPU time (/proc), so they hold
  even if a server did not saturate its core.
- Written: ``bench/results/transport.{json,md}``.  Needs the stack (Redis and the rest) up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import wrk
from bench.servers import Server, free_port, stop_process, wait_ready

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SERVER_CPU, LOAD_CPU = 1, 0
KEY = "bench-transport"

# name -> (path, what it is)
TARGETS: dict[str, tuple[str, str]] = {
    "hello/tornado": ("/", "hello-world handler, Tornado's HTTPServer"),
    "hello/fast": ("/", "the same handler on the fast transport"),
    "hello/lean": ("/", "the same handler on the fast transport, Application -> LeanApplication"),
    "now/tornado": ("/now", "the service's /now, transport=tornado"),
    "now/fast": ("/now", "the service's /now, transport=fast (default)"),
    "redis/tornado": (f"/redis/kv/{KEY}", "the service's Redis read, transport=tornado"),
    "redis/fast": (f"/redis/kv/{KEY}", "the service's Redis read, transport=fast (default)"),
    "now/before": ("/now", "the service's /now at --before (Tornado's server, the handlers of then)"),
    "redis/before": (f"/redis/kv/{KEY}", "the service's Redis read at --before"),
    "aiohttp": ("/", "hello-world on aiohttp (horizon)"),
    "uvicorn": ("/", "hello-world on uvicorn + httptools, raw ASGI (horizon)"),
}
PAIRS = [("hello/tornado", "hello/fast"), ("hello/tornado", "hello/lean"), ("now/tornado", "now/fast"),
         ("redis/tornado", "redis/fast"),
         ("now/before", "now/fast"), ("redis/before", "redis/fast")]


def _command(name: str, port: int, log_dir: Path) -> tuple[list[str], dict[str, str], Path]:
    """argv, added environment, working directory."""
    py = sys.executable
    if name.startswith("hello/"):
        return [py, "-m", "bench.hello", str(port), name.split("/")[1]], {}, ROOT
    if name in ("aiohttp", "uvicorn"):
        return [py, "-m", "bench.horizon", name, str(port)], {}, ROOT
    transport = name.split("/")[1]
    if transport == "before":
        return [py, "-m", "app", "serve", "--port", str(port)], {}, log_dir / "before"
    return [py, "-m", "app", "serve", "--port", str(port)], {"ASYNCSTACK_SERVER__TRANSPORT": transport}, ROOT


@contextlib.contextmanager
def _stack_on(cpu: int) -> Iterator[int]:
    """Every thread of the stack's processes (working directory under ``.stack/``) on ``cpu`` meanwhile."""
    stack_dir = str(ROOT / ".stack")
    moved: dict[int, set[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if not os.readlink(proc / "cwd").startswith(stack_dir):
                continue
            for task in (proc / "task").iterdir():
                tid = int(task.name)
                moved[tid] = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, {cpu})
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue          # gone meanwhile, or not ours to move
    try:
        yield len(moved)
    finally:
        for tid, cpus in moved.items():
            with contextlib.suppress(ProcessLookupError, OSError):
                os.sched_setaffinity(tid, cpus)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(names: list[str], log_dir: Path) -> dict[str, Server]:
    servers: dict[str, Server] = {}
    try:
        for name in names:
            port = free_port()
            argv, env, cwd = _command(name, port, log_dir)
            log = log_dir / f"{name.replace('/', '-')}.log"
            server = Server(name, port, log)
            with log.open("wb") as out:
                server.procs.append(subprocess.Popen([*wrk.pin(SERVER_CPU), *argv], cwd=cwd, stdout=out,
                                                     stderr=subprocess.STDOUT, env={**os.environ, **env}))
            servers[name] = server
        for name, server in servers.items():
            wait_ready(server, "/" if not name.startswith(("now", "redis")) else "/now", 60.0)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def _put_key(server: Server) -> None:
    request = urllib.request.Request(f"{server.url}/redis/kv/{KEY}", data=json.dumps({"value": "x" * 100}).encode(),
                                     method="PUT", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


def _rounds(servers: dict[str, Server], names: list[str], runs: dict[str, list[dict[str, float]]], rounds: int,
            seconds: float, connections: int) -> None:
    for _ in range(rounds):
        for name in names:
            server = servers[name]
            pid = server.procs[0].pid
            path = TARGETS[name][0]
            wrk.run(server.url + path, seconds=1, connections=connections, cpu=LOAD_CPU)  # warm
            cpu0 = _cpu_seconds(pid)
            result = wrk.run(server.url + path, seconds=seconds, connections=connections, cpu=LOAD_CPU)
            cpu = _cpu_seconds(pid) - cpu0
            if result.error_count:
                raise RuntimeError(f"{name}: errors {result.errors}")
            runs[name].append({"requests_per_s": result.requests_per_s,
                               "requests_per_cpu_s": result.requests / cpu if cpu else 0.0,
                               "cpu_us_per_request": 1e6 * cpu / result.requests,
                               "p99_ms": result.p99_ms})
            server.check_alive()


def measure(seconds: float, rounds: int, connections: int, names: list[str], before: str | None) -> dict[str, Any]:
    wrk.ensure_installed()
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
        if before:
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(Path(tmp) / "before"), before],
                           cwd=ROOT, check=True)
        else:
            names = [n for n in names if not n.endswith("/before")]
        try:
            servers = _start(names, Path(tmp))
        except BaseException:
            _remove_worktree(Path(tmp), before)
            raise
        try:
            redis = next((s for n, s in servers.items() if n.startswith("redis/")), None)
            if redis is not None:
                _put_key(redis)
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
            with _stack_on(LOAD_CPU):
                _rounds(servers, names, runs, rounds, seconds, connections)
        finally:
            for server in servers.values():
                for proc in server.procs:
                    stop_process(proc)
            _remove_worktree(Path(tmp), before)
    median = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    ratios = {f"{fast} / {stock}": round(median[fast]["requests_per_cpu_s"] / median[stock]["requests_per_cpu_s"], 2)
              for stock, fast in PAIRS if stock in median and fast in median}
    for horizon in ("aiohttp", "uvicorn"):
        if horizon in median and "hello/tornado" in median:
            ratios[f"{horizon} / hello/tornado"] = round(
                median[horizon]["requests_per_cpu_s"] / median["hello/tornado"]["requests_per_cpu_s"], 2)
    return {"seconds": seconds, "rounds": rounds, "connections": connections, "median": median, "runs": runs,
            "ratios": ratios, "before": before, "when": time.strftime("%Y-%m-%d %H:%M")}


def _remove_worktree(tmp: Path, before: str | None) -> None:
    if before:
        subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "before")], cwd=ROOT, check=False)


def report(result: dict[str, Any]) -> str:
    lines = [f"# HTTP transport: stock Tornado and app.http.fast_server ({result['when']})", "",
             f"wrk -c{result['connections']}, {result['seconds']:g} s per run, median of {result['rounds']} "
             f"alternating rounds; each server pinned to CPU {SERVER_CPU}, wrk to CPU {LOAD_CPU}."
             + (f" Before: commit {result['before']}." if result.get("before") else ""), "",
             "| server | requests/s | requests per CPU-second | CPU µs per request | p99 ms |",
             "|---|---:|---:|---:|---:|"]
    for name, m in result["median"].items():
        lines.append(f"| {name}: {TARGETS[name][1]} | {m['requests_per_s']:,.0f} | {m['requests_per_cpu_s']:,.0f} "
                     f"| {m['cpu_us_per_request']:,.0f} | {m['p99_ms']:.1f} |")
    lines += ["", "| ratio (requests per CPU-second) | |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f}x |" for k, v in result["ratios"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--only", default=",".join(TARGETS), help="comma-separated subset of: " + ", ".join(TARGETS))
    parser.add_argument("--before", help="a commit: also run the service as it was then (now/before, redis/before)")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    result = measure(args.seconds, args.rounds, args.connections, names, args.before)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "transport.json").write_text(json.dumps(result, indent=1))
    text = report(result)
    (RESULTS / "transport.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
