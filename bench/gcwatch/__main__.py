"""``python -m bench.gcwatch DIR``: the collector passes each watched process made (see sitecustomize.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(directory: str) -> int:
    for path in sorted(Path(directory).glob("gc.*.json")):
        summary = json.loads(path.read_text())
        command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(summary["argv"]))[:60]
        parts = []
        for generation in (0, 1, 2):
            times = sorted(s for g, s in summary["passes"] if g == generation)
            if times:
                parts.append(f"gen{generation}: {len(times)} passes, median {times[len(times) // 2] * 1e3:.2f} ms, "
                             f"longest {times[-1] * 1e3:.2f} ms, total {sum(times) * 1e3:.0f} ms")
        print(f"pid {summary['pid']} threshold {summary['threshold'][0]} ({command}): {'; '.join(parts) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
