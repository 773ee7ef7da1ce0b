"""bench.transport moves the stack's processes off the measured server's core for the run, and back after."""

from __future__ import annotations

import os
import subprocess

from bench.transport import ROOT, _stack_on


def test_the_stacks_processes_run_on_the_load_cpu_meanwhile_and_go_back_after() -> None:
    cwd = ROOT / ".stack" / "pinning-test"
    cwd.mkdir(parents=True, exist_ok=True)
    everywhere = os.sched_getaffinity(0)
    stack_proc = subprocess.Popen(["sleep", "30"], cwd=cwd)            # works in .stack/: moved
    other = subprocess.Popen(["sleep", "30"], cwd=ROOT)                # does not: left alone
    try:
        with _stack_on(0) as moved:
            assert moved >= 1
            assert os.sched_getaffinity(stack_proc.pid) == {0}
            assert os.sched_getaffinity(other.pid) == everywhere
        assert os.sched_getaffinity(stack_proc.pid) == everywhere
    finally:
        for proc in (stack_proc, other):
            proc.kill()
            proc.wait()
        cwd.rmdir()
