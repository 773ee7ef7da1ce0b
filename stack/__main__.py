"""``python -m stack up|down|status [SERVICE ...] [--ignite-nodes N]``; ``python -m stack hosts ...`` (hosts.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError

from app.settings import load_settings
from stack import cli, hosts
from stack.process import SetupFailed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["hosts"]:          # the service on simulated hosts behind nginx (stack/hosts.py)
        return hosts.main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m stack", description=cli.__doc__.splitlines()[0] if cli.__doc__ else "")
    p.add_argument("action", choices=["up", "down", "status"], help="(`hosts ...`: see stack/hosts.py)")
    p.add_argument("services", nargs="*", help="mysql, redis, redis-shard, redis-cluster, mongo, ignite, ignite-secure "
                                                "(default: these; a name covers its numbered nodes), "
                                                "rabbitmq (only when named; `down` stops it too)")
    p.add_argument("--ignite-nodes", type=int, default=1, help="Ignite nodes to run (up only)")
    args = p.parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as exc:
        print(f"error: bad settings:\n{exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "up":
            return asyncio.run(cli.up(settings, args.services, args.ignite_nodes))
        if args.action == "down":
            return cli.down(settings, args.services)
        return asyncio.run(cli.status(settings, args.services))
    except SetupFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
