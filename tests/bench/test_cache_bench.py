"""bench.cache end to end: a quick run against the real Redis completes, reports every section and cleans up."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.settings import Settings
from bench.cache import HOT_TTL, QUICK, TASKS
from drivers.redis import RedisClient
from tests.conftest import run_module

SECTIONS = ("## Hit path: local hits", "## Hit path: remote hits", "## Targets", "## Stampede: one cold key",
            "## Stampede: one hot key", "## Stampede across 2 processes")
OURS = "ours: get_or_load (defaults)"


@pytest.fixture(scope="module")
def quick_run(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], str]:
    """``python -m bench.cache --quick`` once: (what it printed, its cache.json, its cache.md)."""
    out = tmp_path_factory.mktemp("bench-cache")
    done = run_module("bench.cache", "--quick", "--address", f"{settings.redis.host}:{settings.redis.port}",
                      "--out", str(out), timeout=100)
    assert done.returncode == 0, f"bench.cache --quick failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout, json.loads((out / "cache.json").read_text()), (out / "cache.md").read_text()


@pytest.mark.timeout(150)
def test_it_prints_what_it_writes_with_every_section(quick_run: tuple[str, dict[str, Any], str]) -> None:
    printed, _, markdown = quick_run
    assert markdown in printed
    for section in SECTIONS:
        assert section in markdown, section
    assert "--quick" in markdown


@pytest.mark.timeout(150)
def test_hit_path_numbers_are_positive_and_local_hits_cost_less_than_remote_ones(
        quick_run: tuple[str, dict[str, Any], str]) -> None:
    _, result, _ = quick_run
    local = {r["contender"]: r for r in result["local"]}
    remote = {r["contender"]: r for r in result["remote"]}
    assert len(local) >= 5 and len(remote) >= 5
    for row in local.values():
        assert row["cpu_us_0"] > 0 and row["per_s_0"] > 0, row
    for row in remote.values():
        for mode in (1, TASKS):
            assert row[f"cpu_us_{mode}"] > 0 and row[f"per_s_{mode}"] > 0, row
    for row in [*local.values(), *remote.values()]:
        for key, value in row.items():
            if key.startswith("ratio_"):
                assert value > 0, (row["contender"], key)
    ours_local = local["ours: get_or_load (local hit)"]["cpu_us_0"]
    assert local["floor: await a coroutine that returns the value"]["cpu_us_0"] < ours_local
    assert ours_local < remote["ours: get_or_load (remote hit)"]["cpu_us_1"]
    assert remote["ours: get (remote hit)"]["connections"] == "1 pipelined"
    assert remote["cashews: redis (default)"]["connections"] <= TASKS


@pytest.mark.timeout(150)
def test_ours_loads_a_cold_key_once_per_process_and_a_hot_key_a_bounded_number_of_times(
        quick_run: tuple[str, dict[str, Any], str]) -> None:
    _, result, _ = quick_run
    cold = {r["contender"]: r for r in result["cold"]}
    hot = {r["contender"]: r for r in result["hot"]}
    assert cold[OURS]["loader_calls_max"] == 1
    assert cold[OURS]["errors_max"] == hot[OURS]["errors_max"] == 0
    bound = 2 * QUICK.hot_seconds / HOT_TTL + 2     # XFetch refreshes early, never once per request
    assert 1 <= hot[OURS]["loader_calls_max"] <= bound
    for rows in (cold, hot):
        for row in rows.values():
            assert row["requests"] >= 1000, row
            if row["errors"] < row["requests"]:     # another library failing under load is reported, not ours
                assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"], row
                assert row["cpu_us_per_request"] > 0, row
    two = {r["phase"]: r for r in result["two_processes"]}
    for per_process in two["cold"]["loader_calls_per_process"]:
        assert len(per_process) == 2 and max(per_process) <= 1 and sum(per_process) >= 1, per_process
    for per_process in two["hot"]["loader_calls_per_process"]:
        # In total, not each: with the lease one process may do every reload while the other reads them.
        assert 1 <= sum(per_process) <= bound, per_process


@pytest.mark.timeout(150)
async def test_every_key_the_run_wrote_is_gone(quick_run: tuple[str, dict[str, Any], str],
                                               settings: Settings) -> None:
    _, result, _ = quick_run
    assert result["keys_removed"] > 0
    client = RedisClient(settings.redis)
    await client.start()
    try:
        left: list[bytes] = []
        cursor: Any = b"0"
        while True:
            cursor, keys = await client.command("SCAN", cursor, "MATCH", f"*{result['run']}*", "COUNT", 1000)
            left += keys
            if cursor in (b"0", 0, "0"):
                break
    finally:
        await client.aclose()
    assert left == []
