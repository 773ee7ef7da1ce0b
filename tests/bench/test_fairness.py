"""Every variant gets the backend connections ``--connections`` asks for; the Celery variants differ only in the broker.

These read the command lines and Celery apps the suite starts, without starting them (the
RabbitMQ variant needs a broker that ``make test`` does not run).
"""

from __future__ import annotations

import fnmatch
import importlib

import pytest
from celery import Celery

from app.settings import load_settings
from bench import servers, suite
from bench.variants import celery_tasks
from stack import rabbitmq

N = 37  # an unusual size, so that no default can pass for it
CELERY = ["celery", "celery-rabbitmq"]


def _worker_and_web(variant: str) -> tuple[list[str], list[str]]:
    (worker, web), env = servers.commands(variant, 8000, threads=N, mysql_pool=N)
    assert env == {}
    return worker, web


def _app_of(worker: list[str]) -> Celery:
    module, name = worker[worker.index("-A") + 1].split(":")
    app: Celery = getattr(importlib.import_module(module), name)
    return app


@pytest.mark.parametrize("variant", CELERY)
def test_a_celery_worker_runs_as_many_threads_as_there_are_connections(variant: str) -> None:
    worker, _ = _worker_and_web(variant)
    assert "--pool=threads" in worker and f"--concurrency={N}" in worker


def test_the_thread_pool_has_as_many_threads_and_this_project_as_large_a_pool() -> None:
    [argv], _ = servers.commands("threadpool", 8000, threads=N, mysql_pool=N)
    assert argv[argv.index("--threads") + 1] == str(N)
    _, env = servers.commands("project", 8000, threads=N, mysql_pool=N)
    assert env["ASYNCSTACK_MYSQL__POOL_MAX"] == str(N)


def test_the_two_celery_variants_differ_only_in_the_broker() -> None:
    (redis_worker, redis_web), (amqp_worker, amqp_web) = (_worker_and_web(v) for v in CELERY)
    differing = [(a, b) for a, b in zip(redis_worker, amqp_worker, strict=True) if a != b]
    assert differing == [("bench.variants.celery_tasks:worker_app", "bench.variants.celery_tasks:rabbitmq_worker_app")]
    assert redis_web[-2:] == ["--broker", "redis"] and amqp_web[-2:] == ["--broker", "rabbitmq"]
    assert redis_web[:-2] == amqp_web[:-2]


@pytest.mark.parametrize(("variant", "scheme", "address"), [
    ("celery", "redis", f"{load_settings().redis.host}:{load_settings().redis.port}"),
    ("celery-rabbitmq", "amqp", f"{rabbitmq.HOST}:{rabbitmq.PORT}"),
])
def test_each_worker_takes_tasks_from_its_broker_and_stores_results_in_redis(variant: str, scheme: str,
                                                                           address: str) -> None:
    worker, web = _worker_and_web(variant)
    app = _app_of(worker)
    broker = celery_tasks.brokers(load_settings())[web[-1]]
    assert app.conf.broker_url == broker.url
    assert broker.url.startswith(f"{scheme}://") and address in broker.url
    assert app.conf.result_backend == celery_tasks.redis_url(load_settings())
    assert celery_tasks.TASK in app.tasks


def test_each_web_process_hears_only_its_own_variants_results() -> None:
    settings = load_settings()
    prefixes = {}
    for variant in CELERY:
        worker, web = _worker_and_web(variant)
        broker = celery_tasks.brokers(settings)[web[-1]]
        key = _app_of(worker).backend.get_key_for_task("some-task-id")  # where the worker stores and publishes it
        assert key == (broker.result_prefix + "some-task-id").encode()
        prefixes[variant] = broker.result_prefix
    for mine in CELERY:
        for theirs in CELERY:
            heard = fnmatch.fnmatchcase(prefixes[theirs] + "some-task-id", prefixes[mine] + "*")
            assert heard == (mine == theirs), (mine, theirs)


def test_the_rabbitmq_variant_is_asked_for_by_name_and_brings_up_its_broker() -> None:
    assert "celery-rabbitmq" in servers.VARIANTS and "celery-rabbitmq" not in servers.DEFAULT_VARIANTS
    assert suite.stack_commands(suite.Config()) == [["up"]]
    assert suite.stack_commands(suite.Config(variants=["project", "celery-rabbitmq"])) == [["up"], ["up", "rabbitmq"]]
