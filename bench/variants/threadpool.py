"""Variant (b): the same blocking calls through ``loop.run_in_executor`` on a pool of threads.

    .venv/bin/python -m bench.variants.threadpool --port 8892 [--threads 32]

The loop stays free while a call waits, but at most ``--threads`` calls are in progress at once
(the rest queue for a thread), each thread holds its own MySQL and Ignite connection, and every
call crosses threads twice and takes the GIL.  32 threads is the upper bound of Python's own
default (``min(32, cpus + 4)``); the fan-out's four reads go to the pool concurrently.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from app.settings import load_settings
from bench.variants.common import FANOUT_PARTS, OPS, Backends, Reply, fanout_body
from bench.variants.web import port_arguments, serve, serve_until_signal

DEFAULT_THREADS = 32


def main() -> None:
    parser = port_arguments(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    args = parser.parse_args()
    backends = Backends(load_settings(), pool_size=args.threads)
    pool = ThreadPoolExecutor(args.threads, thread_name_prefix="blocking-call")

    async def run(op: str, op_args: tuple[Any, ...]) -> Reply:
        loop = asyncio.get_running_loop()
        if op == "fanout":
            item_id = op_args[0]
            parts = await asyncio.gather(*(loop.run_in_executor(pool, read, backends, item_id)
                                           for read in FANOUT_PARTS.values()))
            return fanout_body(item_id, list(parts))
        return await loop.run_in_executor(pool, OPS[op], backends, *op_args)

    async def listen() -> None:
        try:
            await serve_until_signal(run, args.host, args.port)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            backends.close()

    serve(listen)


if __name__ == "__main__":
    main()
