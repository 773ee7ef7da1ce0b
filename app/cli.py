"""Command line: ``python -m app serve|stack ...``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError

from app.settings import Settings, load_settings
from app.stack.process import SetupFailed


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--port", type=int, help="listen port (default from settings: 8888)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (0: one per CPU; default 1)")
    seed = sub.add_parser("seed", help="create the items every endpoint reads, in all four backends")
    seed.add_argument("--items", type=int, default=1000, help="how many items (default 1000)")
    stack = sub.add_parser("stack", help="the local stack of real backend servers")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("services", nargs="*", help="mysql, redis, mongo, ignite (default: all)")
    stack.add_argument("--ignite-nodes", type=int, default=1, help="Ignite nodes to run (up only)")
    return p


def _seed(settings: Settings, count: int) -> int:
    import uvloop

    from app import seed
    from app.context import Context, StartupFailed
    from drivers.errors import DriverError

    async def run() -> None:
        await seed.run(Context.build(settings), count)

    try:
        uvloop.run(run())
    except (StartupFailed, DriverError) as exc:
        print(f"error: cannot seed: {exc}", file=sys.stderr)
        return 2
    print(f"seeded {count} items in mysql, redis, mongo and ignite")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as exc:
        print(f"error: bad settings:\n{exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            if args.port is not None:
                settings.server.port = args.port
            if args.host is not None:
                settings.server.host = args.host
            if args.workers is not None:
                settings.server.workers = args.workers
            from app.workers import supervise, worker_count
            workers = worker_count(settings.server.workers)
            if workers > 1:
                return supervise(settings, workers)
            from app.server import serve
            return serve(settings)
        if args.command == "seed":
            return _seed(settings, args.items)
        from app.stack import cli as stack
        if args.action == "up":
            return asyncio.run(stack.up(settings, args.services, args.ignite_nodes))
        if args.action == "down":
            return stack.down(settings, args.services)
        return asyncio.run(stack.status(settings, args.services))
    except SetupFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
