"""Fixtures of the load-test suite's own tests: wrk installed, and every server under test running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import servers, wrk
from bench.servers import DEFAULT_VARIANTS, HELLO, Server
from tests.conftest import run_app


@pytest.fixture(scope="package")
def wrk_ready() -> None:
    """wrk is installed (from Debian's packages if it was not), as ``make bench`` does."""
    try:
        wrk.ensure_installed()
    except wrk.WrkError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="package")
def bench_servers(seeded: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """The hello-world, the variants and this project, started as the suite starts them (not pinned).

    The variants of the default set: ``celery-rabbitmq`` needs RabbitMQ, which ``make test`` does not
    start; ``test_fairness`` checks its command lines instead.  Seeds first: Redis keeps nothing on
    disk, and other tests restart it.
    """
    done = run_app("seed", timeout=120)
    if done.returncode != 0:
        pytest.fail(f"seeding failed:\n{done.stdout}\n{done.stderr}")
    logs: Path = tmp_path_factory.mktemp("bench-logs")
    started = servers.start_all([HELLO, *DEFAULT_VARIANTS], logs, cpu=None, threads=8, mysql_pool=16)
    yield started
    for server in started.values():
        server.stop()
