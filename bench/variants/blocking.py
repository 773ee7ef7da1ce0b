"""Variant (a): blocking drivers called in the handler, one thread, one connection per backend.

    .venv/bin/python -m bench.variants.blocking --port 8891

While a handler waits on MySQL, the whole process waits: nothing else (not even ``/now``) runs.
"""

from __future__ import annotations

from typing import Any

from app.settings import load_settings
from bench.variants.common import OPS, Backends, Reply
from bench.variants.web import port_arguments, serve, serve_until_signal


def main() -> None:
    args = port_arguments(__doc__.splitlines()[0]).parse_args()
    backends = Backends(load_settings())

    async def run(op: str, op_args: tuple[Any, ...]) -> Reply:
        return OPS[op](backends, *op_args)  # blocks the event loop for the whole call

    async def listen() -> None:
        try:
            await serve_until_signal(run, args.host, args.port)
        finally:
            backends.close()

    serve(listen)


if __name__ == "__main__":
    main()
