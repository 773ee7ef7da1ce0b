"""CPU instructions per client operation, counted by callgrind: repeatable, whatever else the machine does.

    .venv/bin/python -m bench.instructions                     # this tree
    .venv/bin/python -m bench.instructions --before 867da3c    # and an earlier commit, side by side

Each scenario runs a client's hot path against a fake transport that answers
every request at once (no server, no network: what is counted is the client's
own work, the event loop's included) with 1 and with 64 concurrent callers, under
``valgrind --tool=callgrind``, twice: with ``small`` and with ``large``
operations per caller.  The difference of the two totals divided by the
difference of the operation counts is the cost of one operation, start-up and
imports cancelled out.  Timings on this machine drift by up to 40% between
runs; instruction counts do not, which makes them the right yardstick for
"did this change make the hot path cheaper or dearer" (not for how fast it is).

Scenarios (``bench/fake_backends.py``): ``redis_get`` (``RedisClient.get`` on the
pipelined connection) and ``ignite_get`` (``Cache.get`` of a 32-byte string).
Results: ``bench/results/instructions.json``.  Needs valgrind (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from bench.ab import worktree

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCENARIOS = ("redis_get", "ignite_get")


def count(tree: Path, scenario: str, per_caller: int, callers: int) -> int:
    """Instructions callgrind counts for one run of ``scenario`` with ``per_caller`` operations per caller."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         str(ROOT / "bench" / "fake_backends.py"), scenario, str(per_caller), str(callers)],
        cwd=tree, capture_output=True, text=True, timeout=1800, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{scenario} failed under callgrind in {tree}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_operation(tree: Path, scenario: str, callers: int, small: int, large: int) -> float:
    # One caller makes its operations one after the other: give it as many as the 64 make together.
    scale = 64 // callers
    small, large = small * scale, large * scale
    return (count(tree, scenario, large, callers) - count(tree, scenario, small, callers)) / ((large - small) * callers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="an earlier commit to count too (checked out in a temporary worktree)")
    parser.add_argument("--small", type=int, default=20, help="operations per caller, short run")
    parser.add_argument("--large", type=int, default=120, help="operations per caller, long run")
    parser.add_argument("--callers", type=int, nargs="+", default=[1, 64], help="concurrent callers (1 and 64)")
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    trees = {"this tree": ROOT}
    with worktree(args.before) if args.before else contextlib.nullcontext(None) as before_tree:
        if before_tree is not None:
            trees = {args.before: before_tree, **trees}
        rows = [{"scenario": s, "callers": n, "tree": label,
                 "instructions_per_op": round(per_operation(t, s, n, args.small, args.large))}
                for s in args.scenarios for n in args.callers for label, t in trees.items()]
    for row in rows:
        base = next(r for r in rows if (r["scenario"], r["callers"]) == (row["scenario"], row["callers"]))
        ratio = row["instructions_per_op"] / base["instructions_per_op"]
        print(f"{row['scenario']:12} {row['callers']:>3} callers  {row['tree']:12} "
              f"{row['instructions_per_op']:>9,} instructions/op {ratio:>6.3f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "instructions.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
