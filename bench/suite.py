"""The load-test matrix: every route against every variant at every concurrency, with the ``/now`` probe.

Order of a run: make sure wrk is installed, the local stack is up (with the on-demand services
the chosen variants need, such as RabbitMQ for ``celery-rabbitmq``) and seeded; start every server
(pinned to ``server_cpu``) and probe each one's ``/now`` while idle; then, route by route and
concurrency by concurrency, each variant in turn: a warm-up wrk run (discarded), a measured wrk
run with the fixed-rate probe against ``/now`` during it (both on ``load_cpu``), and a wait until
the server has worked off what the load left queued.  Interleaving the variants this way makes a
drift in the machine's state hit all of them alike.  Optionally locust's mix against this project
last.  Every run is bounded in time and requests, and targets loopback only.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import locust_runner, machine, report, servers, wrk
from bench.servers import DEFAULT_VARIANTS, HELLO, NEEDS_SERVICE, Server

ROOT = Path(__file__).resolve().parents[1]
ROUTES: dict[str, str] = {
    "now": "/now",
    "redis": "/redis/kv/items:1",
    "mysql": "/mysql/items/1",
    "slow": "/mysql/sleep?s=0.05",
    "fanout": "/fanout/1",
}
DEFAULT_CONCURRENCY = [16, 64, 256]


class BenchError(RuntimeError):
    """An expected failure (no wrk, no stack, a server that does not start): one line for the user."""


@dataclass
class Config:
    seconds: float = 8.0
    warmup: float = 2.0
    concurrency: list[int] = field(default_factory=lambda: list(DEFAULT_CONCURRENCY))
    variants: list[str] = field(default_factory=lambda: list(DEFAULT_VARIANTS))
    routes: list[str] = field(default_factory=lambda: list(ROUTES))
    probe_rate: float = 100.0
    probe_timeout: float = 5.0
    idle_probe_seconds: float | None = None   # None: as long as the probe of a measured run (a p99 of as many samples)
    connections: int = 32       # backend connections of every variant: threads, Celery concurrency, MySQL pool
    hello: bool = True
    locust: bool = False
    locust_seconds: float = 20.0
    locust_users: int = 64
    out: Path = report.RESULTS
    stack: bool = True
    server_cpu: int | None = 0
    load_cpu: int | None = 1
    command: str = "python -m bench"
    quiet: bool = False

    def cells(self) -> list[tuple[str, str, int]]:
        """(route, variant, concurrency) in the order they run; the hello-world goes with the Redis read."""
        out: list[tuple[str, str, int]] = []
        for route in self.routes:
            for level in self.concurrency:
                if route == "redis" and self.hello:
                    out.append(("hello", HELLO, level))
                out += [(route, variant, level) for variant in self.variants]
        return out


class Progress:
    """One line per run: how far, how long so far, about how long left."""

    def __init__(self, total: int, per_cell_s: float, quiet: bool) -> None:
        self.total, self.per_cell_s, self.quiet = total, per_cell_s, quiet
        self.done = 0
        self.began = time.monotonic()

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def step(self, label: str) -> None:
        elapsed = time.monotonic() - self.began
        rate = elapsed / self.done if self.done else self.per_cell_s
        left = rate * (self.total - self.done)
        self.say(f"[{self.done + 1:>3}/{self.total}] {_clock(elapsed)} elapsed, ~{_clock(left)} left  {label}")

    def finished(self, text: str) -> None:
        self.done += 1
        self.say(f"          {text}")


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _run(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


def stack_commands(config: Config) -> list[list[str]]:
    """``python -m stack`` arguments: the default set, then the on-demand services the variants need."""
    extra = sorted({NEEDS_SERVICE[v] for v in config.variants if v in NEEDS_SERVICE})
    return [["up"], *([["up", *extra]] if extra else [])]


def prepare_stack(config: Config, progress: Progress) -> None:
    if config.stack:
        for args in stack_commands(config):
            progress.say(f"stack: starting what is not running (python -m stack {' '.join(args)}) ...")
            done = _run("stack", *args, timeout=1800)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()
                raise BenchError(f"the local stack did not come up: {tail[-1] if tail else 'no output'}")
    done = _run("app", "seed", timeout=300)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        raise BenchError(f"seeding failed (is the stack up?): {tail[-1] if tail else 'no output'}")


def probe_offset(duration: float) -> float:
    """When a measured run's probe starts: once wrk's connections are up."""
    return min(1.0, duration * 0.3)


def loaded_probe_seconds(config: Config) -> float:
    """A measured run's probe schedule: from ``probe_offset`` to 0.5 s before wrk stops."""
    duration = max(1, round(config.seconds))
    return max(0.5, duration - probe_offset(duration) - 0.5)


def idle_probe_seconds(config: Config) -> float:
    """The idle probe's schedule: as asked, else as long as a measured run's, so both p99s count as many samples."""
    return config.idle_probe_seconds if config.idle_probe_seconds is not None else loaded_probe_seconds(config)


def run_probe(url: str, *, rate: float, seconds: float, timeout_s: float, start_at: float | None,
              cpu: int | None) -> subprocess.Popen[str]:
    """The probe as a process of its own (on the load generator's CPU); read it with ``probe_result``."""
    argv = [*wrk.pin(cpu), sys.executable, "-m", "bench.probe", url, "--rate", f"{rate:g}", "--seconds",
            f"{seconds:g}", "--timeout", f"{timeout_s:g}"]
    if start_at is not None:
        argv += ["--start-at", f"{start_at:.3f}"]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def probe_result(proc: subprocess.Popen[str], wait_s: float) -> dict[str, Any] | None:
    try:
        out, err = proc.communicate(timeout=wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return None
    if proc.returncode != 0:
        raise BenchError(f"the probe failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}")
    data: dict[str, Any] = json.loads(out)
    data.pop("wall_s", None)
    return data


def measure(server: Server, path: str, concurrency: int, config: Config, *, probe: bool) -> dict[str, Any]:
    """Warm-up run (discarded), settle, measured run with the probe during it, settle."""
    url = server.url + path
    settle_path = "/" if server.name == HELLO else servers.READY_PATH
    if config.warmup > 0:
        wrk.run(url, seconds=config.warmup, connections=concurrency, cpu=config.load_cpu)
        servers.settle(server, settle_path)
    prober = None
    duration = max(1, round(config.seconds))
    if probe:  # its schedule starts once wrk's connections are up and ends before wrk stops
        offset = probe_offset(duration)
        prober = run_probe(server.url + "/now", rate=config.probe_rate, seconds=loaded_probe_seconds(config),
                           timeout_s=config.probe_timeout, start_at=time.time() + offset, cpu=config.load_cpu)
    idle_rss = servers.rss_bytes(server)
    peak_rss = [idle_rss]
    done = threading.Event()

    def sample_rss() -> None:       # the server's memory under this load: its peak, every 0.25 s
        while not done.wait(0.25):
            peak_rss[0] = max(peak_rss[0], servers.rss_bytes(server))

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    ticks = machine.cpu_times()
    try:
        result = wrk.run(url, seconds=duration, connections=concurrency, cpu=config.load_cpu)
    except BaseException:
        if prober is not None:
            prober.kill()
            prober.communicate()
        raise
    finally:
        done.set()
        sampler.join()
    steal = machine.steal_percent(ticks, machine.cpu_times())
    probed = probe_result(prober, duration + config.probe_timeout + 30) if prober is not None else None
    settled = servers.settle(server, settle_path)
    baseline = server.idle_rss or idle_rss   # before any load: what the load's connections and requests added
    memory = {"rss_idle_mb": round(baseline / 2**20, 1), "rss_peak_mb": round(peak_rss[0] / 2**20, 1),
              "kb_per_connection": round((peak_rss[0] - baseline) / 1024 / concurrency, 1)}
    return {"wrk": result.as_dict(), "probe": probed, "settled_after": settled, "memory": memory,
            "steal_percent": steal}


def _describe(run: dict[str, Any]) -> str:
    w, p = run["wrk"], run.get("probe")
    text = (f"{w['requests_per_s']:>9,.0f} req/s  p50 {w['p50_ms']:>8.2f}  p99 {w['p99_ms']:>8.2f}  "
            f"max {w['max_ms']:>9.2f} ms  errors {w['error_count']}")
    if p:
        bound = ">=" if p["censored"] else ""
        text += f"  | /now probe p99 {bound}{p['p99_ms']:.2f} ms ({p['unanswered']} unanswered)"
    m = run.get("memory")
    if m:
        text += f"  | RSS {m['rss_peak_mb']:.0f} MB (+{m['kb_per_connection']:.0f} KB per connection)"
    if run.get("steal_percent") is not None:
        text += f"  | steal {run['steal_percent']:.0f}%"
    return text


def setup_lines(config: Config) -> list[str]:
    cpus = os.cpu_count() or 1
    pinned = config.server_cpu is not None and cpus > 1 and bool(wrk.pin(config.server_cpu))
    lines = [f"wrk: one thread, {max(1, round(config.seconds))} s per measured run after a "
             f"{max(1, round(config.warmup)) if config.warmup > 0 else 0} s warm-up run (excluded); "
             f"concurrency {', '.join(str(c) for c in config.concurrency)}; loopback only.",
             ("Each server's processes (for Celery: the Tornado process and the worker) pinned to CPU "
              f"{config.server_cpu}; wrk, the probe and locust to CPU {config.load_cpu}; the backends (MariaDB, "
              "Redis, FerretDB, Ignite) are not pinned." if pinned else "No CPU pinning (taskset missing or 1 CPU)."),
             f"Every variant gets {config.connections} backend connections: the thread pool's threads, Celery's "
             "worker concurrency and this project's MySQL pool (the same size, for a fair comparison).",
             f"Thread pool: {config.connections} threads (Python's default `ThreadPoolExecutor` would have "
             f"min(32, CPUs + 4) = {min(32, cpus + 4)} here); each thread holds its own MySQL and Ignite connection.",
             f"Celery: worker `--pool=threads --concurrency={config.connections}` (prefetch multiplier 4), "
             "Redis broker and result backend; Tornado sends with `send_task` and awaits the result's pub/sub message "
             "on one PSUBSCRIBE (no polling).",
             *(["Celery with RabbitMQ (`celery-rabbitmq`): the same worker, task and result backend (Redis, results "
                "under a key prefix of their own), RabbitMQ (Debian's `rabbitmq-server`, `python -m stack up "
                "rabbitmq`, not pinned) as the broker."] if "celery-rabbitmq" in config.variants else []),
             f"This project: `python -m app serve`, one process, MySQL pool of {config.connections} "
             "connections, access log off, other settings default.",
             f"`/now` probe: {config.probe_rate:g} req/s, open loop, during every measured run (from 1 s after "
             "its start to 0.5 s before its end) and for "
             f"{idle_probe_seconds(config):g} s against each idle server; unanswered "
             f"{config.probe_timeout:g} s after its schedule ends = counted at their waiting time."]
    return lines


def run(config: Config) -> dict[str, Any]:
    """Run the whole matrix; write the report into ``config.out``; return the results."""
    cells = config.cells()
    per_cell = (max(1, round(config.warmup)) if config.warmup > 0 else 0) + max(1, round(config.seconds)) + 1.5
    progress = Progress(len(cells), per_cell, config.quiet)
    try:
        wrk.ensure_installed()
    except wrk.WrkError as exc:
        raise BenchError(str(exc)) from None
    prepare_stack(config, progress)
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "meta": {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "command": config.command,
                 "commit": report.git_commit(ROOT), "machine": report.machine(), "seconds": config.seconds,
                 "warmup": config.warmup, "concurrency": config.concurrency, "probe_rate": config.probe_rate,
                 "connections": config.connections, "paths": {**ROUTES, "hello": "/"}, "setup": setup_lines(config)},
        "runs": [], "idle_probes": {}, "locust": None,
    }
    logs = config.out / "logs"
    running: dict[str, Server] = {}
    interrupted = False
    try:
        names = ([HELLO] if config.hello and "redis" in config.routes else []) + config.variants
        progress.say(f"starting {', '.join(names)} ...")
        running.update(servers.start_all(names, logs, cpu=config.server_cpu, threads=config.connections,
                                         mysql_pool=config.connections))
        for server in running.values():
            server.idle_rss = servers.rss_bytes(server)
        for name in config.variants:
            ticks = machine.cpu_times()
            proc = run_probe(running[name].url + "/now", rate=config.probe_rate, seconds=idle_probe_seconds(config),
                             timeout_s=config.probe_timeout, start_at=None, cpu=config.load_cpu)
            idle = probe_result(proc, idle_probe_seconds(config) + config.probe_timeout + 30)
            results["idle_probes"][name] = idle
            if idle:
                idle["steal_percent"] = steal = machine.steal_percent(ticks, machine.cpu_times())
                progress.say(f"idle /now probe, {name}: p50 {idle['p50_ms']:.2f} ms, p99 {idle['p99_ms']:.2f} ms"
                             + (f" (steal {steal:.0f}%)" if steal is not None else ""))
        for route, variant, level in cells:
            path = "/" if route == "hello" else ROUTES[route]
            progress.step(f"{variant:<10} {route:<6} c={level:<4} GET {path}")
            outcome = measure(running[variant], path, level, config, probe=variant != HELLO)
            run_record = {"route": route, "path": path, "variant": variant, "concurrency": level, **outcome}
            results["runs"].append(run_record)
            progress.finished(_describe(run_record))
        if config.locust:
            server = running.get("project") or servers.start("project", logs, cpu=config.server_cpu,
                                                             mysql_pool=config.connections)
            running["project"] = server
            progress.say(f"locust: {config.locust_users} users for {config.locust_seconds:g} s "
                         "against this project ...")
            results["locust"] = locust_runner.run(server.url, config.out / "locust", users=config.locust_users,
                                                  seconds=config.locust_seconds, cpu=config.load_cpu)
            total = results["locust"]["total"] or {}
            progress.say(f"locust: {total.get('requests')} requests, {total.get('failures')} failures, "
                         f"{total.get('requests_per_s')} req/s")
    except KeyboardInterrupt:
        interrupted = True
        progress.say("interrupted: stopping the servers and writing what was measured")
    except (servers.ServerFailed, wrk.WrkError, locust_runner.LocustError) as exc:
        raise BenchError(str(exc)) from None
    finally:
        for server in running.values():
            server.stop()
    results["meta"]["finished"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results["meta"]["complete"] = not interrupted
    paths = report.write(results, config.out)
    progress.say("wrote " + ", ".join(str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p) for p in paths))
    if interrupted:
        raise KeyboardInterrupt
    return results
