"""bench.machine: the share of CPU time the hypervisor took during a run, from /proc/stat."""

from __future__ import annotations

import time

from bench import machine


def test_steal_is_read_from_this_machines_cpu_times() -> None:
    before = machine.cpu_times()
    assert before is not None, "this suite runs on Linux: /proc/stat has a cpu line"
    steal, total = before
    assert 0 <= steal < total
    time.sleep(0.05)
    after = machine.cpu_times()
    assert after is not None and after[1] > total
    percent = machine.steal_percent(before, after)
    assert percent is not None and 0.0 <= percent <= 100.0


def test_steal_percent_is_the_stolen_share_of_the_ticks_between_two_readings() -> None:
    assert machine.steal_percent((10, 1000), (40, 1300)) == 10.0
    assert machine.steal_percent((10, 1000), (10, 1000)) is None     # no time passed: nothing to say
    assert machine.steal_percent(None, (40, 1300)) is None
