"""Shared fixtures: the real local stack, settings, and a running server process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from app.settings import Settings, load_settings
from tests.timeouts import bound_async_tests

ROOT = Path(__file__).resolve().parents[1]
# The test servers' logs, kept while the session runs (a failing test shows its server's), then removed.
SERVER_LOGS = Path(tempfile.mkdtemp(prefix="asyncstack-tests-"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(SERVER_LOGS, ignore_errors=True)


def run_module(module: str, *args: str, env: dict[str, str] | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` in a child process, output captured."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, check=False)


def run_app(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m app ARGS`` in a child process, output captured."""
    return run_module("app", *args, env=env, timeout=timeout)


def run_stack(*args: str, env: dict[str, str] | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """``python -m stack ARGS`` (the local stack of servers) in a child process, output captured."""
    return run_module("stack", *args, env=env, timeout=timeout)


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Tests run on uvloop, the loop the service runs on."""
    return {"uvloop": uvloop.new_event_loop}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used a server fixture shows the end of that server's stderr (its log)."""
    report: Any = yield
    if report.failed and isinstance(item, pytest.Function):
        for name, value in item.funcargs.items():
            if isinstance(value, ServerProcess):
                with contextlib.suppress(OSError):
                    report.sections.append((f"stderr of the server ({name})", value.stderr()[-6000:]))
    return report  # type: ignore[no-any-return]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Async tests are cancelled at their timeout (tests/timeouts.py: pytest-timeout cannot stop them on uvloop)."""
    bound_async_tests(items)


async def run_stack_async(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m stack ARGS`` without blocking the event loop of an async test."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "stack", *args, cwd=ROOT,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    return subprocess.CompletedProcess(list(args), proc.returncode or 0, out.decode(), err.decode())


@pytest.fixture(scope="session")
def stack() -> None:
    """The local stack is up (started here if `make test` did not already)."""
    done = run_stack("up")
    if done.returncode != 0:
        pytest.fail(f"the local stack did not come up:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="session")
def settings(stack: None) -> Settings:
    return load_settings()


class ServerProcess:
    """``python -m app serve`` as a child process on a free port."""

    def __init__(self, port: int, proc: subprocess.Popen[str], stdout: Path, stderr: Path) -> None:
        self.port = port
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.stdout_path = stdout
        self.stderr_path = stderr

    def stdout(self) -> str:
        """What the server wrote to stdout so far (the access log)."""
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        """What the server wrote to stderr so far (its JSON log lines and warnings)."""
        return self.stderr_path.read_text()

    def listening(self, workers: int, within_s: float = 30) -> set[int]:
        """Wait until ``workers`` processes said they listen ("serving on ... (pid N)"); their pids.

        ``start_server`` returns once one process answers: with ``--workers N`` the others may
        not listen yet.
        """
        deadline = time.monotonic() + within_s
        while True:
            pids = {int(pid) for pid in re.findall(r"serving on \S+ \(pid (\d+)\)", self.stdout())}
            if len(pids) >= workers or time.monotonic() > deadline:
                assert len(pids) == workers, f"{len(pids)} of {workers} workers listen: {self.stdout()[-2000:]}"
                return pids
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(*extra: str, env: dict[str, str] | None = None, wait: bool = True) -> ServerProcess:
    """The server's stdout (one access-log line per request) and stderr (its log) go to files.

    A pipe nobody reads would fill; a file can be read while the server runs, so a failing
    test can show what the server said.
    """
    port = free_port()
    fd, name = tempfile.mkstemp(prefix=f"serve-{port}-", suffix=".log", dir=SERVER_LOGS)
    efd, ename = tempfile.mkstemp(prefix=f"serve-{port}-", suffix=".err", dir=SERVER_LOGS)
    with os.fdopen(fd, "w") as out, os.fdopen(efd, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port), *extra], cwd=ROOT,
                                stdout=out, stderr=err, text=True,
                                env={**os.environ, **(env or {})})
    server = ServerProcess(port, proc, Path(name), Path(ename))
    if wait:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}: {server.stderr()}")
            try:
                with urllib.request.urlopen(server.url + "/healthz", timeout=1):
                    return server
            except OSError:
                time.sleep(0.1)
        server.stop()
        raise RuntimeError("server did not answer /healthz within 30 s")
    return server


@pytest.fixture
def server(stack: None) -> Iterator[ServerProcess]:
    srv = start_server()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def seeded(stack: None) -> None:
    """The items every data endpoint reads exist in all four backends (``python -m app seed``)."""
    done = run_app("seed", timeout=120)
    if done.returncode != 0:
        pytest.fail(f"seeding failed:\n{done.stdout}\n{done.stderr}")


@pytest.fixture(scope="module")
def service(seeded: None) -> Iterator[ServerProcess]:
    """One server for a whole test module, over seeded data, with the default settings.

    Seeds again: Redis keeps nothing on disk, and other tests restart it (pytest-asyncio runs
    async tests in an order of its own, so "seeded once, before the restarts" does not hold).
    """
    done = run_app("seed", timeout=120)
    if done.returncode != 0:
        pytest.fail(f"seeding failed:\n{done.stdout}\n{done.stderr}")
    srv = start_server()
    yield srv
    srv.stop()
