"""A tiny run of every scenario against every variant, and of the whole suite end to end."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench import servers, suite
from bench.servers import DEFAULT_VARIANTS, HELLO, Server


@pytest.mark.parametrize("variant", DEFAULT_VARIANTS)
def test_each_route_runs_under_wrk_with_the_probe(wrk_ready: None, bench_servers: dict[str, Server], variant: str,
                                                  tmp_path: Path) -> None:
    config = suite.Config(seconds=1, warmup=0, concurrency=[2], probe_rate=40, probe_timeout=2, out=tmp_path)
    for route, path in suite.ROUTES.items():
        outcome = suite.measure(bench_servers[variant], path, 2, config, probe=True)
        w, probe = outcome["wrk"], outcome["probe"]
        # at least one answer on each of the two connections, and no error (the thread-pool variant's
        # first fan-outs, its pool still cold, took 0.5 s each on a machine at a third of its speed)
        assert w["requests"] >= 2 and w["error_count"] == 0, (route, w)
        assert 0 < w["p50_ms"] <= w["p99_ms"] <= w["max_ms"], (route, w)
        assert probe is not None and probe["ok"] > 10 and probe["failed"] == probe["unanswered"] == 0, (route, probe)
        assert outcome["settled_after"]


def test_the_suite_writes_json_markdown_and_plots(wrk_ready: None, seeded: None, tmp_path: Path) -> None:
    config = suite.Config(variants=["project"], routes=["redis"], concurrency=[2], seconds=1, warmup=1,
                          idle_probe_seconds=0.5, probe_rate=40, probe_timeout=2, stack=False, server_cpu=None,
                          load_cpu=None, out=tmp_path, quiet=True)
    results = suite.run(config)
    assert [(r["variant"], r["route"]) for r in results["runs"]] == [(HELLO, "hello"), ("project", "redis")]
    assert results["idle_probes"]["project"]["ok"] == 20
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["runs"] == results["runs"]
    redis_vs_hello = next(t for t in written["targets"] if t["target"].startswith("Redis read"))
    assert redis_vs_hello["measured"] is not None and redis_vs_hello["measured"] > 0
    markdown = (tmp_path / "bench.md").read_text()
    assert "### Redis read: `/redis/kv/items:1`" in markdown and "| project |" in markdown
    for png in ("routes.png", "probe.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("argv", "message"), [
    (["--seconds", "0"], "error: --seconds must be from 1 to 600\n"),
    (["--connections", "0"], "error: --connections, --probe-rate and --locust-users must be positive\n"),
])
def test_bad_options_are_one_line_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    assert main(argv) == 2
    assert capsys.readouterr().err == message


def test_an_unknown_variant_is_refused_with_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["--variants", "project,gevent"])
    assert exited.value.code == 2
    known = "blocking, threadpool, celery, celery-rabbitmq, project"
    assert f"unknown variant gevent; choose from {known}" in capsys.readouterr().err


def test_the_before_variant_serves_from_its_own_commit(wrk_ready: None, seeded: None, tmp_path: Path) -> None:
    """``before`` runs the files of the commit before the overload work, beside this tree, on the same stack."""
    tree = servers.source_dir("before")
    assert tree != servers.ROOT and (tree / "app" / "__main__.py").exists()
    assert not (tree / "drivers" / "limits.py").exists() and (servers.ROOT / "drivers" / "limits.py").exists()
    assert "before" not in DEFAULT_VARIANTS     # asked for by name: it needs the commit in the clone
    before = servers.start("before", tmp_path, cpu=None, threads=8, mysql_pool=8)
    try:
        config = suite.Config(seconds=1, warmup=0, concurrency=[4], probe_rate=40, probe_timeout=2, out=tmp_path)
        outcome = suite.measure(before, suite.ROUTES["slow"], 4, config, probe=True)
        assert outcome["wrk"]["requests"] > 10 and outcome["wrk"]["error_count"] == 0, outcome["wrk"]
        with urllib.request.urlopen(before.url + "/now", timeout=5) as answer:
            assert answer.status == 200
        with pytest.raises(urllib.error.HTTPError) as missing:    # the document came with the overload work
            urllib.request.urlopen(before.url + "/openapi.json", timeout=5)
        assert missing.value.code == 404
    finally:
        before.stop()


def test_the_idle_probe_counts_as_many_samples_as_a_measured_runs() -> None:
    """The probe's p99 under load is compared with its idle p99: both over the same schedule length."""
    for seconds, schedule in ((3.0, 1.6), (8.0, 6.5), (20.0, 18.5)):   # from 1 s (or 0.3 of it) to 0.5 s before the end
        config = suite.Config(seconds=seconds)
        assert suite.idle_probe_seconds(config) == suite.loaded_probe_seconds(config) == pytest.approx(schedule)
    assert suite.idle_probe_seconds(suite.Config(seconds=8.0, idle_probe_seconds=2.0)) == 2.0
