"""What the machine did during a run: the share of its CPU time the hypervisor took (steal).

    before = machine.cpu_times()
    ...a run...
    machine.steal_percent(before, machine.cpu_times())   # None where /proc/stat has no steal column

Rules of this file:
- A virtual machine's CPUs are sometimes given to someone else; the time they were
  ready to run and did not is the ``steal`` column of ``/proc/stat``.  Runs on such a
  machine differ by tens of percent, so each run reports it beside its numbers: a run
  whose probe p99 is high in a minute the hypervisor took 30% is told apart from one
  where the service was slow.
- Reads only ``/proc/stat``; elsewhere (no such file) it says nothing rather than guess.
"""

from __future__ import annotations

from pathlib import Path

_STAT = Path("/proc/stat")


def cpu_times() -> tuple[int, int] | None:
    """(steal, total) in clock ticks, summed over the machine's CPUs; None where unknown."""
    try:
        first = _STAT.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(first) < 9 or first[0] != "cpu":
        return None
    ticks = [int(value) for value in first[1:9]]    # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of CPU time stolen between the two readings, in percent."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100.0 * (after[0] - before[0]) / (after[1] - before[1]), 1)
