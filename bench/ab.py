"""Before and after, in one run: a benchmark module run alternately from an earlier commit and from this tree.

    .venv/bin/python -m bench.ab --before 867da3c --rounds 3 bench.redis_client --seconds 2
    .venv/bin/python -m bench.ab --before 867da3c --rounds 3 bench.ignite_client --seconds 1

The earlier commit is checked out into a temporary git worktree; both trees run
with this interpreter and the same servers, one after the other, ``--rounds``
times (alternating, so a machine that drifts drifts for both).  The module must
write ``bench/results/<name>.json`` as a list of rows with ``cpu_us_per_op``
(``bench.redis_client`` and ``bench.ignite_client`` do); rows are matched by
their other text and integer fields.  Printed: per row, the median CPU µs/op
before and after and their ratio.  Written: ``bench/results/ab_<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

Key = tuple[tuple[str, Any], ...]


_MEASURED = {"ops", "ops_per_s"}  # integers that are results, not names


def _key(row: dict[str, Any]) -> Key:
    """What names a row: its text fields and its integer fields that are not results."""
    return tuple(sorted((k, v) for k, v in row.items()
                        if isinstance(v, str) or (type(v) is int and k not in _MEASURED)))


def _run(tree: Path, module: str, args: list[str]) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=tree, capture_output=True, text=True,
                          timeout=1800, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{module} failed in {tree}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    name = module.rsplit(".", 1)[-1]
    rows: list[dict[str, Any]] = json.loads((tree / "bench" / "results" / f"{name}.json").read_text())
    return rows


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A temporary git worktree of ``rev`` (detached), removed on the way out: an earlier commit's files."""
    with tempfile.TemporaryDirectory(prefix="before-") as scratch:
        tree = Path(scratch) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(tree), rev], cwd=ROOT, check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)


def compare(before_rev: str, rounds: int, module: str, args: list[str]) -> list[dict[str, Any]]:
    samples: dict[str, dict[Key, list[float]]] = {"before": {}, "after": {}}
    with worktree(before_rev) as before_tree:
        for i in range(rounds):
            for label, tree in (("before", before_tree), ("after", ROOT)):
                print(f"round {i + 1}/{rounds}: {label}", file=sys.stderr, flush=True)
                for row in _run(tree, module, args):
                    samples[label].setdefault(_key(row), []).append(float(row["cpu_us_per_op"]))
    out = []
    for key, before in samples["before"].items():
        after = samples["after"].get(key)
        if not after:
            continue
        b, a = statistics.median(before), statistics.median(after)
        out.append({**dict(key), "before_cpu_us": round(b, 2), "after_cpu_us": round(a, 2),
                    "ratio": round(a / b, 3), "before_runs": before, "after_runs": after})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare with (a hash or a ref)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("module", help="e.g. bench.redis_client")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the module")
    opts = parser.parse_args()
    rows = compare(opts.before, opts.rounds, opts.module, opts.args)
    print(f"{'row':58} {'before µs':>10} {'after µs':>9} {'after/before':>12}")
    for row in rows:
        label = " ".join(str(v) for k, v in row.items() if k not in ("before_cpu_us", "after_cpu_us", "ratio",
                                                                    "before_runs", "after_runs"))
        print(f"{label[:58]:58} {row['before_cpu_us']:>10.2f} {row['after_cpu_us']:>9.2f} {row['ratio']:>12.3f}")
    RESULTS.mkdir(exist_ok=True)
    name = opts.module.rsplit(".", 1)[-1]
    (RESULTS / f"ab_{name}.json").write_text(json.dumps({"before": opts.before, "rounds": opts.rounds,
                                                         "args": opts.args, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
