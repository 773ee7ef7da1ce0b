"""``serve --workers N``: N forked processes, each with its own loop and clients, sharing a port.

The parent forks before any event loop exists; every child binds the port with
``SO_REUSEPORT`` (the kernel spreads connections over them) and builds its
clients inside its own uvloop.  The parent only supervises: it forwards SIGTERM
and SIGINT to the children, restarts a child that dies unexpectedly (a few
times), and exits 0 when every child has shut down cleanly.  A child that
cannot start (exit 2: a backend unreachable, the port taken) stops them all.

Prometheus multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` is set here, before
``prometheus_client`` is first imported, so that ``/metrics`` in any worker
reports the samples of all of them.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from app.settings import Settings

MAX_RESTARTS = 5


def worker_count(requested: int) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


def _metrics_dir(settings: Settings) -> tuple[Path, bool]:
    """The multiprocess directory, emptied; and whether it is ours to remove at exit."""
    given = settings.server.metrics_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return path, False
    return Path(tempfile.mkdtemp(prefix="asyncstack-metrics-")), True


def supervise(settings: Settings, workers: int) -> int:
    if "prometheus_client" in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise RuntimeError("prometheus_client was imported before the multiprocess directory was set")
    directory, owned = _metrics_dir(settings)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    settings.server.workers = workers
    from prometheus_client import multiprocess

    from app.server import serve  # imports prometheus_client, now in multiprocess mode

    def spawn() -> int:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = serve(settings)
            finally:
                os._exit(code)
        return pid

    children: set[int] = set()
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for _ in range(workers):
        children.add(spawn())
    failed, restarts = 0, 0
    try:
        while children:
            pid, status = os.wait()
            if pid not in children:
                continue
            children.discard(pid)
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
            code = os.waitstatus_to_exitcode(status)
            if code == 0 and stopping:
                continue
            if code == 2 or stopping or restarts >= MAX_RESTARTS:
                failed = failed or code or 1
                forward(signal.SIGTERM, None)
                continue
            restarts += 1
            print(f"warning: worker {pid} exited with {code}; starting another", file=sys.stderr, flush=True)
            time.sleep(0.5)
            children.add(spawn())
    finally:
        if owned:
            shutil.rmtree(directory, ignore_errors=True)
    return failed
