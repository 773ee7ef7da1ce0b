"""Command line: ``python -m app serve|seed|ws-token ...`` (the local stack of servers: ``python -m stack``)."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from app.settings import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m app", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--port", type=int, help="listen port (default from settings: 8888)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (0: one per CPU; default 1)")
    seed = sub.add_parser("seed", help="create the items every endpoint reads, in all four backends")
    seed.add_argument("--items", type=int, default=1000, help="how many items (default 1000)")
    token = sub.add_parser("ws-token", help="a token for a private:* WebSocket channel (needs the channel secret)")
    token.add_argument("channel", help="the channel, e.g. private:alice")
    token.add_argument("--ttl", type=int, default=3600, help="seconds the token stays valid (default 3600)")
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


def _ws_token(settings: Settings, channel: str, ttl: int) -> int:
    from app.ws.protocol import CHANNEL, PRIVATE_PREFIX
    from app.ws.tokens import make_token

    secret = settings.ws.channel_secret
    if secret is None:
        print("error: no channel secret: set ASYNCSTACK_WS__CHANNEL_SECRET (the server needs the same one)",
              file=sys.stderr)
        return 2
    if not channel.startswith(PRIVATE_PREFIX) or not CHANNEL.fullmatch(channel):
        print(f"error: {channel!r} is not a private channel: private:<name>, 1-128 of A-Z a-z 0-9 _ . : -",
              file=sys.stderr)
        return 2
    if ttl <= 0:
        print("error: --ttl must be a positive number of seconds", file=sys.stderr)
        return 2
    print(make_token(secret, channel, ttl))
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
        return _ws_token(settings, args.channel, args.ttl)
    except KeyboardInterrupt:
        return 130
