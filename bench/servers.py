"""Starting and stopping the servers under test: the service, the variants, the hello-world baseline.

Every server listens on a free loopback port; with ``taskset`` and two or more CPUs each server's
processes (for Celery: the Tornado process and the worker) are pinned to ``cpu``, so every variant
gets the same single core while the load generators run on another.  Output goes to a log file
per server; a server that does not come up is reported with the tail of its log.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.wrk import pin

ROOT = Path(__file__).resolve().parents[1]

# name -> what it is, for the report
VARIANTS: dict[str, str] = {
    "blocking": "blocking drivers in the handler (pymysql, redis-py, pymongo, pyignite sync)",
    "threadpool": "the same calls via run_in_executor on a thread pool",
    "celery": "the same calls as Celery tasks (Redis broker + result backend), awaited without blocking",
    "celery-rabbitmq": "the same Celery tasks with RabbitMQ as the broker (Redis result backend)",
    "project": "this project (python -m app serve)",
    "unlimited": "this project with its adaptive concurrency limits and read pauses off (as it was before them)",
    "nopause": "this project with its adaptive limits but without read pauses (excess requests read, then shed)",
    "strict": "this project with the limits' lag target at 2 ms instead of 5 (cheap routes favoured more)",
    "before": "this project as it was before its overload work (no request budget, limits, read pauses or turns; "
              "Tornado's own HTTP layer, aiomysql), from git",
}
# The last commit before the overload work: no request budget, adaptive limits, read pauses or
# turns, and Tornado's own HTTP layer (the faster transport came later): "before" in the shedding
# scenario.
BEFORE_COMMIT = "814d964"
UNLIMITED = {f"ASYNCSTACK_{backend}__LIMIT__ENABLED": "false" for backend in ("MYSQL", "MONGO", "IGNITE")}
NO_PAUSE = {"ASYNCSTACK_SERVER__READ_PAUSE_MAX_S": "0"}
STRICT = {f"ASYNCSTACK_{backend}__LIMIT__LAG_TARGET_S": "0.002" for backend in ("MYSQL", "MONGO", "IGNITE")}
# Variants that need a server outside the stack's default set: run only when asked for by name
# (``--variants``), after ``python -m stack up <service>``.
NEEDS_SERVICE: dict[str, str] = {"celery-rabbitmq": "rabbitmq"}
# Variants run from another commit's files (``git archive``): only when asked for by name, in a clone
# that has the commit.
FROM_GIT: dict[str, str] = {"before": BEFORE_COMMIT}
DEFAULT_VARIANTS = [name for name in VARIANTS if name not in NEEDS_SERVICE and name not in FROM_GIT]
CELERY_BROKERS = {"celery": ("redis", "worker_app"), "celery-rabbitmq": ("rabbitmq", "rabbitmq_worker_app")}
HELLO = "hello"
READY_PATH = "/mysql/items/1"  # a backend round trip through the variant's own path


def rss_bytes(server: Server) -> int:
    """Resident memory of the server's processes now, summed (0 for those gone)."""
    total = 0
    for proc in server.procs:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


class ServerFailed(RuntimeError):
    """A server did not start or answer; the message names it and ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    log: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    idle_rss: int = 0      # resident memory once started and answering, before any load (bytes)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise ServerFailed(f"{self.name} exited with status {proc.returncode}\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for whatever has not exited after 15 s; the web process first."""
        for proc in reversed(self.procs):
            stop_process(proc)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def commands(name: str, port: int, *, threads: int, mysql_pool: int) -> tuple[list[list[str]], dict[str, str]]:
    """The command lines that start server ``name`` (in order), and the environment they add.

    ``threads`` is the variant's backend connections (the thread pool's threads, Celery's worker
    concurrency); ``mysql_pool`` this project's MySQL pool.
    """
    py = sys.executable
    if name == HELLO:
        return [[py, "-m", "bench.hello", str(port)]], {}
    if name in ("project", "unlimited", "nopause", "strict", "before"):
        env = {"ASYNCSTACK_SERVER__ACCESS_LOG": "false", "ASYNCSTACK_MYSQL__POOL_MAX": str(mysql_pool)}
        if name == "unlimited":
            env.update(UNLIMITED | NO_PAUSE)
        elif name == "nopause":
            env.update(NO_PAUSE)
        elif name == "strict":
            env.update(STRICT)
        return [[py, "-m", "app", "serve", "--port", str(port)]], env
    if name == "blocking":
        return [[py, "-m", "bench.variants.blocking", "--port", str(port)]], {}
    if name == "threadpool":
        return [[py, "-m", "bench.variants.threadpool", "--port", str(port), "--threads", str(threads)]], {}
    if name in CELERY_BROKERS:
        broker, app = CELERY_BROKERS[name]
        worker = [py, "-m", "celery", "-A", f"bench.variants.celery_tasks:{app}", "worker", "--pool=threads",
                  f"--concurrency={threads}", "-Q", "asyncstack-bench", "--without-gossip", "--without-mingle",
                  "--without-heartbeat", "--loglevel=WARNING", "-n", f"bench-{port}@%h"]
        return [worker, [py, "-m", "bench.variants.celery_server", "--port", str(port), "--broker", broker]], {}
    raise ValueError(f"unknown server {name!r}; known: {', '.join([*VARIANTS, HELLO])}")


_trees: dict[str, Path] = {}


def source_dir(name: str) -> Path:
    """Where server ``name`` runs from: this tree, or for ``FROM_GIT`` variants their commit's files.

    Those are extracted once per process (``git archive``) into a temporary directory removed at exit;
    they run with this interpreter and its packages, against the same stack.  ``python -m`` puts the
    working directory first on ``sys.path``, so starting there is enough to import their ``app``.
    """
    commit = FROM_GIT.get(name)
    if commit is None:
        return ROOT
    if commit not in _trees:
        done = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=False)
        if done.returncode:
            raise ServerFailed(f"{name}: commit {commit} is not in this clone "
                               f"({done.stderr.decode(errors='replace').strip()})")
        tree = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
        atexit.register(shutil.rmtree, tree, ignore_errors=True)
        with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
            archive.extractall(tree, filter="data")
        _trees[commit] = tree
    return _trees[commit]


def launch(name: str, log_dir: Path, *, cpu: int | None = 0, threads: int = 32, mysql_pool: int = 256) -> Server:
    """Start a server's processes (for Celery: the worker, then the web process) without waiting."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    server = Server(name, port, log_dir / f"{name}.log")
    argvs, env = commands(name, port, threads=threads, mysql_pool=mysql_pool)
    with server.log.open("wb") as log:
        for argv in argvs:
            server.procs.append(subprocess.Popen([*pin(cpu), *argv], cwd=source_dir(name), stdout=log,
                                                 stderr=subprocess.STDOUT, env={**os.environ, **env}))
    return server


def start_all(names: list[str], log_dir: Path, *, cpu: int | None = 0, threads: int = 32, mysql_pool: int = 256,
              timeout_s: float = 60.0) -> dict[str, Server]:
    """Start several servers at once; return when each answers a backend route (all stopped on failure)."""
    started: dict[str, Server] = {}
    try:
        for name in names:
            started[name] = launch(name, log_dir, cpu=cpu, threads=threads, mysql_pool=mysql_pool)
        for name, server in started.items():
            wait_ready(server, "/" if name == HELLO else READY_PATH, timeout_s)
    except BaseException:
        for server in started.values():
            server.stop()
        raise
    return started


def start(name: str, log_dir: Path, *, cpu: int | None = 0, threads: int = 32, mysql_pool: int = 256,
          timeout_s: float = 60.0) -> Server:
    """Start one server and wait until it answers a backend route."""
    return start_all([name], log_dir, cpu=cpu, threads=threads, mysql_pool=mysql_pool, timeout_s=timeout_s)[name]


def get(url: str, timeout_s: float) -> tuple[int, float]:
    """(status, seconds) of one GET; status 0 when no answer came."""
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError:
        status = 0
    return status, time.perf_counter() - began


def wait_ready(server: Server, path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = 0
    while time.monotonic() < deadline:
        server.check_alive()
        last, _ = get(server.url + path, 2.0)
        if last == 200:
            return
        time.sleep(0.2)
    raise ServerFailed(f"{server.name} did not answer GET {path} with 200 within {timeout_s:g} s "
                       f"(last status {last or 'none'})\n{server.tail()}")


def settle(server: Server, path: str = READY_PATH, fast_s: float = 0.1, timeout_s: float = 60.0) -> bool:
    """Wait until the server has worked off what a load left queued: three quick answers in a row.

    A blocking server (or a Celery queue) still holds the requests of connections wrk has closed;
    the next run must not pay for them.  False when it did not settle within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    quick = 0
    while time.monotonic() < deadline:
        server.check_alive()
        status, took = get(server.url + path, max(2.0, fast_s * 10))
        quick = quick + 1 if status == 200 and took < fast_s else 0
        if quick >= 3:
            return True
        if status != 200 or took >= fast_s:
            time.sleep(0.05)
    return False
