"""The in-process structures a local cache tier could be built on, measured: an LRU bounded by entries, per-entry TTL.

    .venv/bin/python -m bench.cache_local [--ops 1000000] [--rounds 5] [--entries 100000]

Rules of this file:
- Each candidate is reduced to the two calls a local tier would make: ``get(key) -> value
  or None`` (an expired entry is a miss) and ``set(key, value, ttl_s)``.  Where the
  library does not check expiry itself, the value is stored as ``(value, expires_at)``
  and the check is ours, on ``time.monotonic()``: that cost is part of its numbers.
- Before anything is timed, each candidate's behaviour is checked, and the table says
  what it really does: whether a get refreshes recency (LRU) and whether each entry
  has its own TTL (a global-TTL structure is listed as a reference, not a fit).
- Timed, with ``time.perf_counter``, ``--ops`` calls per measurement on a cache full at
  ``--entries``: a get that hits (keys in a shuffled order), a set of a new key (each
  one evicts), a set of a key present (an overwrite).  Rounds alternate over the
  candidates (the order rotates), the median round is reported.  The garbage collector
  runs as it would in the service.  The same loops' ``time.process_time`` is reported
  too: on a shared machine it leaves out the time other processes took the core.
- Memory per entry for ``--entries`` entries with 100-byte values, each candidate in a
  fresh child process: bytes traced by ``tracemalloc`` (it sees only Python's
  allocator: cachebox's Rust tables are invisible to it) and the resident-set growth
  (``/proc/self/statm``), which sees everything.  Keys and values are made before the
  measurement: the numbers are the structure's own cost per entry.

Measured on the development machine (2 cores shared with other work, load 2.4-3; CPython
3.11.7, cachetools 8.0.2, cachebox 6.2.10, lru-dict 1.4.1), ``--rounds 7``, 1M ops, 100k
entries; µs per call, wall (CPU), median; bytes per entry by RSS growth:

    bounded LRU, per-entry TTL       get hit        set new (evicts)  set present    bytes/entry
    cachebox.LRUCache + our expiry   0.85 (0.85)    0.52 (0.52)       0.71 (0.71)    170
    lru.LRU + our expiry             1.10 (1.10)    1.03 (1.02)       1.13 (1.03)    183
    OrderedDict + our expiry         1.82 (1.47)    1.46 (1.10)       1.80 (1.69)    188
    cachetools.TLRUCache             6.57 (4.74)   11.17 (9.63)       9.02 (7.81)    297
    references: cachebox.VTTLCache (per-entry TTL, evicts the soonest to expire, not LRU)
    0.54 / 0.97 / 1.34 µs, 99 B; cachebox.TTLCache (one TTL, FIFO) 0.51 / 0.56 / 0.69 µs,
    61 B; cachetools.TTLCache (one TTL, LRU) 4.85 / 6.10 / 3.69 µs, 227 B; dict.get/set
    with no bound or TTL 0.36 / 0.29 / 0.52 µs, 39 B.

cachebox.LRUCache with the expiry in a ``(value, expires_at)`` tuple was the fastest fit in
every column of three runs but one tie (run 1's get: OrderedDict 2.100, cachebox 2.102 µs).
In this, the quietest run, its gets are 1.3x faster than lru-dict's and 1.7-2.1x than
OrderedDict's, its sets 1.5-2x and 2.1-2.8x; in the two runs under load 3-4, gets were
within 1.0-1.3x of each other and sets 1.2-1.5x and 1.3-2.3x apart: most of a get is
the Python call around it and the cache misses of 100k shuffled keys.
cachetools.TLRUCache is 3.4-7.7x slower on gets and 9-21x on sets.  Of cachebox's
170 B, 80 are our tuple and float.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cachebox
import cachetools
import lru

Get = Callable[[str], Any]
Set = Callable[[str, bytes, float], Any]
LONG_TTL_S = 3600.0
VALUE_SIZE = 100


def ordered_dict(maxsize: int, ttl_s: float) -> tuple[Get, Set]:
    d: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
    lookup, move, pop, now = d.get, d.move_to_end, d.popitem, time.monotonic

    def get(key: str) -> bytes | None:
        entry = lookup(key)
        if entry is None:
            return None
        if entry[1] <= now():
            del d[key]
            return None
        move(key)
        return entry[0]

    def set_(key: str, value: bytes, ttl_s: float) -> None:
        d[key] = (value, now() + ttl_s)
        move(key)
        if len(d) > maxsize:
            pop(last=False)

    return get, set_


def cachetools_tlru(maxsize: int, ttl_s: float) -> tuple[Get, Set]:
    """TLRUCache's time-to-use function reads each entry's TTL from its value tuple."""
    c: cachetools.TLRUCache[str, tuple[bytes, float]] = cachetools.TLRUCache(
        maxsize, ttu=lambda _key, entry, now: now + entry[1])
    lookup = c.get

    def get(key: str) -> bytes | None:
        entry = lookup(key)
        return None if entry is None else entry[0]

    def set_(key: str, value: bytes, ttl_s: float) -> None:
        c[key] = (value, ttl_s)

    return get, set_


def cachetools_ttl(maxsize: int, ttl_s: float) -> tuple[Get, Set]:
    """One TTL for every entry (given when the cache is made)."""
    c: cachetools.TTLCache[str, bytes] = cachetools.TTLCache(maxsize, ttl=ttl_s)

    def set_(key: str, value: bytes, ttl_s: float) -> None:
        c[key] = value

    return c.get, set_


def cachebox_vttl(maxsize: int, ttl_s: float) -> tuple[Get, Set]:
    """Per-entry TTL; evicts the entry that expires soonest."""
    c: cachebox.VTTLCache[str, bytes] = cachebox.VTTLCache(maxsize)
    return c.get, c.insert


def cachebox_ttl(maxsize: int, ttl_s: float) -> tuple[Get, Set]:
    """One TTL for every entry; evicts in insertion order."""
    c: cachebox.TTLCache[str, bytes] = cachebox.TTLCache(maxsize, global_ttl=ttl_s)
    insert = c.insert

    def set_(key: str, value: bytes, ttl_s: float) -> None:
        insert(key, value)

    return c.get, set_


def _lru_with_our_expiry(c: Any) -> tuple[Get, Set]:
    """An LRU mapping whose values are ``(value, expires_at)``, checked here."""
    lookup, now = c.get, time.monotonic

    def get(key: str) -> bytes | None:
        entry = lookup(key)
        if entry is None:
            return None
        if entry[1] <= now():
            del c[key]
            return None
        value: bytes = entry[0]
        return value

    def set_(key: str, value: bytes, ttl_s: float) -> None:
        c[key] = (value, now() + ttl_s)

    return get, set_


def cachebox_lru(maxsize: int, ttl_s: float) -> tuple[Get, Set]:
    return _lru_with_our_expiry(cachebox.LRUCache(maxsize))


def lru_dict(maxsize: int, ttl_s: float) -> tuple[Get, Set]:
    return _lru_with_our_expiry(lru.LRU(maxsize))


def plain_dict(maxsize: int, ttl_s: float) -> tuple[Get, Set]:
    """A dict: no bound, no expiry.  The floor a call costs, not a candidate."""
    d: dict[str, bytes] = {}

    def set_(key: str, value: bytes, ttl_s: float) -> None:
        d[key] = value

    return d.get, set_


@dataclass(frozen=True)
class Candidate:
    name: str
    make: Callable[[int, float], tuple[Get, Set]]
    floor: bool = False      # a reference row, not checked for LRU or TTL


CANDIDATES = [
    Candidate("OrderedDict + our expiry", ordered_dict),
    Candidate("cachetools.TLRUCache", cachetools_tlru),
    Candidate("cachetools.TTLCache", cachetools_ttl),
    Candidate("cachebox.VTTLCache", cachebox_vttl),
    Candidate("cachebox.TTLCache", cachebox_ttl),
    Candidate("cachebox.LRUCache + our expiry", cachebox_lru),
    Candidate("lru.LRU + our expiry", lru_dict),
    Candidate("dict (floor: no bound, no TTL)", plain_dict, floor=True),
]
BY_NAME = {c.name: c for c in CANDIDATES}


# -- behaviour -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Behaviour:
    bounded: bool        # never holds more than maxsize entries
    lru: bool            # a get makes an entry the last to be evicted
    expires: bool        # an entry past its TTL reads as a miss
    per_entry_ttl: bool  # two entries set with different TTLs expire at different times


def behaviour(candidate: Candidate) -> Behaviour:
    get, set_ = candidate.make(3, 60.0)
    for key in "abcdef":
        set_(key, b"v", 60.0)
    bounded = sum(get(k) is not None for k in "abcdef") == 3

    get, set_ = candidate.make(3, 60.0)
    for key in "abc":
        set_(key, b"v", 60.0)
    get("a")
    set_("d", b"v", 60.0)       # evicts b under LRU, a under insertion order
    lru_order = get("a") is not None and get("b") is None

    get, set_ = candidate.make(10, 0.05)   # a global-TTL structure gets 50 ms for every entry
    set_("short", b"v", 0.05)
    set_("long", b"v", 60.0)
    time.sleep(0.08)
    return Behaviour(bounded=bounded, lru=lru_order, expires=get("short") is None,
                     per_entry_ttl=get("short") is None and get("long") is not None)


# -- timing ----------------------------------------------------------------------------------------

OPS = ("get hit", "set new (evicts)", "set present")


def _keys(n: int, start: int = 0) -> list[str]:
    return [f"item:{i:08d}" for i in range(start, start + n)]


def _value(i: int) -> bytes:
    return i.to_bytes(4, "big") * (VALUE_SIZE // 4)


class Stopwatch:
    """Wall time (``perf_counter``) and this process's CPU time (``process_time``) of one timed loop."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def start(self) -> None:
        gc.collect()
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def us_per_op(self, ops: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return wall / ops * 1e6, cpu / ops * 1e6


def measure(candidate: Candidate, entries: int, ops: int, seed: int) -> dict[str, tuple[float, float]]:
    """Microseconds per call (wall, CPU) for each of ``OPS``, on a cache filled to ``entries``."""
    keys = _keys(entries)
    value = _value(0)
    rng = random.Random(seed)
    shuffled = keys[:]
    rng.shuffle(shuffled)
    hits = (shuffled * (ops // entries + 1))[:ops]
    fresh = _keys(entries, start=entries)
    ring = keys + fresh          # cycled in order: each key is set ``entries`` sets after its eviction
    new_keys = (ring * (ops // len(ring) + 1))[:ops]
    result: dict[str, tuple[float, float]] = {}
    clock = Stopwatch()

    get, set_ = candidate.make(entries, LONG_TTL_S)
    for key in keys:
        set_(key, value, LONG_TTL_S)
    clock.start()
    for key in hits:
        get(key)
    result["get hit"] = clock.us_per_op(ops)
    clock.start()
    for key in hits:
        set_(key, value, LONG_TTL_S)
    result["set present"] = clock.us_per_op(ops)

    get, set_ = candidate.make(entries, LONG_TTL_S)
    for key in keys:
        set_(key, value, LONG_TTL_S)
    clock.start()
    for key in new_keys:
        set_(key, value, LONG_TTL_S)
    result["set new (evicts)"] = clock.us_per_op(ops)
    return result


# -- memory ----------------------------------------------------------------------------------------

def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(name: str, entries: int, mode: str) -> float:
    """Bytes per entry of the structure (keys and values made beforehand), in this process."""
    candidate = BY_NAME[name]
    keys = _keys(entries)
    values = [_value(i) for i in range(entries)]
    get, set_ = candidate.make(entries, LONG_TTL_S)
    gc.collect()
    if mode == "trace":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    else:
        before = _rss()
    for key, value in zip(keys, values, strict=True):
        set_(key, value, LONG_TTL_S)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if mode == "trace" else _rss()
    assert get(keys[-1]) is not None
    return (after - before) / entries


def memory(name: str, entries: int, mode: str) -> float:
    done = subprocess.run([sys.executable, "-m", "bench.cache_local", "--memory-child", name, "--mode", mode,
                           "--entries", str(entries)], capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout))


# -- report ----------------------------------------------------------------------------------------

def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def report(title: str, runs: dict[str, dict[str, list[float]]], behaviours: dict[str, Behaviour],
           fits: list[str]) -> None:
    """The table of medians, the ranking of the structures that fit, and the spread of the rounds."""
    median = {name: {op: statistics.median(v) for op, v in ops.items()} for name, ops in runs.items()}
    best = {op: min(median[n][op] for n in fits) for op in OPS}
    print(f"\n{title}: µs per call, median of the rounds; xN = times the fastest bounded LRU with per-entry TTL")
    head = f"{'structure':<32} {'bounded':>7} {'LRU':>4} {'own TTL':>8} " + " ".join(f"{op:>22}" for op in OPS)
    print(head)
    print("-" * len(head))
    for c in CANDIDATES:
        b = behaviours.get(c.name)
        cells = " ".join(f"{median[c.name][op]:>9.3f} µs {median[c.name][op] / best[op]:>6.2f}x  " for op in OPS)
        flags = ("-", "-", "-") if b is None else (_yes(b.bounded), _yes(b.lru), _yes(b.per_entry_ttl))
        print(f"{c.name:<32} {flags[0]:>7} {flags[1]:>4} {flags[2]:>8} {cells}")
    print("ranking of the bounded LRUs with per-entry TTL (xN: times the first):")
    for op in OPS:
        ranked = sorted(fits, key=lambda n: median[n][op])
        first = median[ranked[0]][op]
        print(f"  {op:<17} " + "  <  ".join(f"{n} {median[n][op]:.3f} ({median[n][op] / first:.2f}x)"
                                            for n in ranked))
    print("range over the rounds (min-max µs):")
    for c in CANDIDATES:
        print(f"  {c.name:<32} " + "  ".join(f"{op}: {min(v):.3f}-{max(v):.3f}" for op, v in runs[c.name].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("trace", "rss"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.entries, args.mode)))
        return

    print(f"python {sys.version.split()[0]}, cachetools {cachetools.__version__}, "
          f"cachebox {cachebox.__version__}, lru-dict {_version('lru-dict')}; {args.ops:,} ops per measurement, "
          f"{args.rounds} rounds, {args.entries:,} entries, {VALUE_SIZE}-byte values", flush=True)
    behaviours = {c.name: behaviour(c) for c in CANDIDATES if not c.floor}

    walls: dict[str, dict[str, list[float]]] = {c.name: {op: [] for op in OPS} for c in CANDIDATES}
    cpus: dict[str, dict[str, list[float]]] = {c.name: {op: [] for op in OPS} for c in CANDIDATES}
    for r in range(args.rounds):
        order = CANDIDATES[r % len(CANDIDATES):] + CANDIDATES[:r % len(CANDIDATES)]
        for candidate in order:
            for op, (wall, cpu) in measure(candidate, args.entries, args.ops, seed=r).items():
                walls[candidate.name][op].append(wall)
                cpus[candidate.name][op].append(cpu)
        print(f"  round {r + 1}/{args.rounds} done", flush=True)

    fits = [c.name for c in CANDIDATES if not c.floor and all(vars(behaviours[c.name]).values())]
    report("wall time (perf_counter)", walls, behaviours, fits)
    report("CPU time of this process (process_time: what a busy machine's other work does not add)",
           cpus, behaviours, fits)

    print(f"\nmemory per entry, {args.entries:,} entries of {VALUE_SIZE}-byte values "
          "(the structure's own bytes; each key+value object adds "
          f"{sys.getsizeof(_keys(1)[0]) + sys.getsizeof(_value(0))} B)")
    print(f"{'structure':<32} {'tracemalloc':>12} {'RSS growth':>12}")
    for c in CANDIDATES:
        traced = memory(c.name, args.entries, "trace")
        rss = memory(c.name, args.entries, "rss")
        print(f"{c.name:<32} {traced:>10.0f} B {rss:>10.0f} B", flush=True)
    print("(tracemalloc sees Python's allocator only: cachebox's own tables live on the Rust heap, "
          "so for it only the RSS growth counts)")


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
