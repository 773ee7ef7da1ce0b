"""tests/timeouts.py: an async test that waits forever fails at its timeout on uvloop, and the run goes on.

A pytest run in a child process on two tests (one that waits forever, under a 3 s timeout marker,
and one that passes), once with this suite's bound and once with pytest-timeout alone: with the bound
the first fails at about its timeout and the second still runs; without it, the run is still waiting
STALLED_S after the hung test began.  The time counts from the moment the hung test begins (it
leaves a file then), not from the child's start: starting pytest and its plugins took over 7 s on a
machine running at a third of its speed, and a run that is only slow to start is not a hung one.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STALLED_S = 10.0     # from the hung test's start: its timeout is 3 s
STARTUP_S = 120.0    # for the child to reach it

TESTS = '''
import asyncio
import pytest

STARTED = {started!r}

@pytest.mark.timeout(3)
async def test_waits_forever() -> None:
    open(STARTED, "w").close()
    await asyncio.Event().wait()

async def test_after_it() -> None:
    assert True
'''

CONFTEST = '''
import uvloop
from tests.timeouts import bound_async_tests

def pytest_asyncio_loop_factories(config, item):
    return {"uvloop": uvloop.new_event_loop}

def pytest_collection_modifyitems(config, items):
    if BOUND:
        bound_async_tests(items)
'''


def _run(tmp_path: Path, bound: bool) -> tuple[subprocess.CompletedProcess[str] | None, float]:
    """The child run, or None if it was still running STALLED_S after the hung test began; and how
    long after that it ended (or was stopped)."""
    started = tmp_path / "started"
    (tmp_path / "test_hangs.py").write_text(TESTS.format(started=str(started)))
    (tmp_path / "conftest.py").write_text(f"BOUND = {bound}\n" + CONFTEST)
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
         "-o", "asyncio_mode=auto", "-o", "asyncio_default_test_loop_scope=session",
         "--rootdir", str(tmp_path), "-c", "/dev/null", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        deadline = time.monotonic() + STARTUP_S
        while not started.exists():
            assert child.poll() is None, f"the child run ended before the hung test began:\n{child.communicate()[0]}"
            assert time.monotonic() < deadline, f"the hung test did not begin within {STARTUP_S} s"
            time.sleep(0.02)
        began = time.monotonic()
        try:
            out, _ = child.communicate(timeout=STALLED_S)
        except subprocess.TimeoutExpired:
            return None, time.monotonic() - began
        return subprocess.CompletedProcess(child.args, child.returncode, out, ""), time.monotonic() - began
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


def test_a_hung_async_test_fails_at_its_timeout_and_the_run_goes_on(tmp_path: Path) -> None:
    done, took = _run(tmp_path, bound=True)
    assert done is not None, f"the run did not end within {STALLED_S} s of the hung test's start"
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-2000:]
    assert "did not end within 2 s and was cancelled" in done.stdout, done.stdout[-2000:]
    assert took < STALLED_S


def test_without_the_bound_pytest_timeout_does_not_stop_it_on_uvloop(tmp_path: Path) -> None:
    done, _ = _run(tmp_path, bound=False)
    assert done is None, done.stdout[-2000:]
