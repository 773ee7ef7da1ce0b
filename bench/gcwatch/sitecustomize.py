"""Garbage-collector pauses of every Python process started with this directory on ``PYTHONPATH``.

    GCWATCH_DIR=/tmp/gc PYTHONPATH=bench/gcwatch .venv/bin/python -m bench --routes slow ...
    .venv/bin/python -m bench.gcwatch /tmp/gc        # one line per process: passes per generation

Python imports ``sitecustomize`` at start-up, so the servers a benchmark starts are watched without
any code of theirs knowing: each process times every collector pass (``gc.callbacks``) and writes
a summary to ``$GCWATCH_DIR/gc.<pid>.json`` when it exits.  Without ``GCWATCH_DIR``, nothing.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import sys
import time

_DIR = os.environ.get("GCWATCH_DIR")


def _watch(directory: str) -> None:
    passes: list[tuple[int, float]] = []
    began = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            passes.append((info["generation"], time.perf_counter() - began[0]))

    def write() -> None:
        summary = {"pid": os.getpid(), "argv": sys.argv, "threshold": gc.get_threshold(),
                   "passes": [[generation, round(seconds, 6)] for generation, seconds in passes]}
        with open(os.path.join(directory, f"gc.{os.getpid()}.json"), "w") as out:
            json.dump(summary, out)

    gc.callbacks.append(timed)
    atexit.register(write)


if _DIR:
    _watch(_DIR)
