"""``python -m bench``: the load-test suite (``make bench``).

    .venv/bin/python -m bench [--quick] [--seconds 8] [--warmup 2] [--concurrency 16,64,256]
                              [--variants project,threadpool,celery,blocking,celery-rabbitmq]
                              [--routes now,redis,mysql,slow,fanout]
                              [--connections 32] [--probe-rate 100] [--locust] [--out bench/results]

Starts the local stack if needed (and RabbitMQ, an on-demand service of the stack, when the
``celery-rabbitmq`` variant is asked for), seeds it, starts this project's server, the variants
(``bench/variants``) and a bare hello-world, runs wrk against every route, variant and concurrency
with a fixed-rate ``/now`` probe during each run, optionally locust's mix, and writes
``bench.json``, ``bench.md``, ``routes.png`` and ``probe.png`` into ``--out``.  The default matrix
takes about 13 minutes on 2 cores; ``--quick`` about 4.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from bench import report
from bench.servers import DEFAULT_VARIANTS, NEEDS_SERVICE, VARIANTS
from bench.suite import ROUTES, BenchError, Config, run

QUICK: dict[str, object] = {"seconds": 3.0, "warmup": 1.0, "concurrency": [64, 256],
                             "locust_seconds": 8.0}


def _names(known: list[str], what: str) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown) or '(none)'}; "
                                             f"choose from {', '.join(known)}")
        return names
    return parse


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(n) for n in text.split(",") if n.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"concurrency must be numbers separated by commas, not {text!r}") from None
    if not levels or levels[0] < 1 or levels[-1] > 1000:
        raise argparse.ArgumentTypeError("concurrency must be from 1 to 1000")
    return levels


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="3 s runs after 1 s warm-ups, concurrency 64 and 256 (explicit options still win)")
    p.add_argument("--seconds", type=float, help="length of each measured run (default 8)")
    p.add_argument("--warmup", type=float, help="length of the warm-up run before each (default 2; 0: none)")
    p.add_argument("--concurrency", type=_levels, help="connections, e.g. 16,64,256 (the default)")
    p.add_argument("--variants", type=_names(list(VARIANTS), "variant"),
                   help=f"which servers (default: {','.join(DEFAULT_VARIANTS)}; also "
                        f"{', '.join(f'{v} (starts the stack service {s})' for v, s in NEEDS_SERVICE.items())})")
    p.add_argument("--routes", type=_names(list(ROUTES), "route"),
                   help=f"which routes (default all: {','.join(ROUTES)})")
    p.add_argument("--connections", type=int, default=32,
                   help="backend connections of every variant: the thread pool's threads, Celery's worker "
                        "concurrency and this project's MySQL pool, all the same (32; also try 256)")
    p.add_argument("--probe-rate", type=float, default=100.0, help="/now probe requests per second (100)")
    p.add_argument("--no-hello", action="store_true", help="skip the bare Tornado hello-world baseline")
    p.add_argument("--locust", action="store_true", help="also run locust's mix against this project, headless")
    p.add_argument("--locust-seconds", type=float, help="locust run length (default 20)")
    p.add_argument("--locust-users", type=int, default=64, help="locust users (64)")
    p.add_argument("--no-stack", action="store_true", help="do not start the local stack (it must be up)")
    p.add_argument("--out", type=Path, default=report.RESULTS, help="results folder (default bench/results)")
    return p


def config_from(args: argparse.Namespace, argv: list[str]) -> Config:
    """The run's settings: the defaults, then ``--quick``'s, then whatever was given explicitly."""
    if args.connections < 1 or args.probe_rate <= 0 or args.locust_users < 1:
        raise BenchError("--connections, --probe-rate and --locust-users must be positive")
    config = Config(variants=args.variants or list(DEFAULT_VARIANTS), routes=args.routes or list(ROUTES),
                    probe_rate=args.probe_rate, connections=args.connections, hello=not args.no_hello,
                    locust=args.locust,
                    locust_users=args.locust_users, out=args.out.resolve(), stack=not args.no_stack,
                    command=shlex.join(["python", "-m", "bench", *argv]))
    if args.quick:
        for name, value in QUICK.items():
            setattr(config, name, value)
    given = {"seconds": args.seconds, "warmup": args.warmup, "concurrency": args.concurrency,
             "locust_seconds": args.locust_seconds}
    for name, value in given.items():
        if value is not None:
            setattr(config, name, value)
    if not 1 <= config.seconds <= 600:
        raise BenchError("--seconds must be from 1 to 600")
    if not 0 <= config.warmup <= 600:
        raise BenchError("--warmup must be from 0 to 600")
    return config


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    try:
        config = config_from(args, argv)
        run(config)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
