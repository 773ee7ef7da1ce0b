"""Settings: each knob written once (in its driver's config type), and every one settable from the environment."""

from __future__ import annotations

import dataclasses
import json
import types
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import ValidationError

from app.settings import MYSQL_PORT, REDIS_PORT, Settings, load_settings
from drivers.ignite import IgniteConfig
from drivers.mongo import MongoConfig
from drivers.mysql import MySQLConfig
from drivers.redis import RedisConfig
from drivers.retry import Backoff, RetryPolicy
from tests.support.settings_tree import setting_leaves

LEAVES = [(path, kind) for path, _, kind in setting_leaves()]


def _sample(path: tuple[str, ...], kind: Any) -> tuple[str, Any]:
    """A valid value for a leaf, different from its default: (text for the environment, the value expected)."""
    args = set(get_args(kind))
    if get_origin(kind) in (Union, types.UnionType):
        kind = next(a for a in args if a is not type(None))
    if path[-1] == "nodes":
        return json.dumps([["10.0.0.8", 10800], ["10.0.0.9", 10801]]), (("10.0.0.8", 10800), ("10.0.0.9", 10801))
    if path[-1] == "shards":
        return json.dumps(["10.0.0.8:6379", "10.0.0.9:6379@2"]), ("10.0.0.8:6379", "10.0.0.9:6379@2")
    if path[-1] == "trusted_proxies":
        return json.dumps(["10.0.0.2", "10.0.0.3"]), ("10.0.0.2", "10.0.0.3")
    if path[-1] == "protocol_version":
        return "[1, 6, 0]", (1, 6, 0)
    if get_origin(kind) is Literal:
        value = next(v for v in get_args(kind) if v != _get(Settings(), path))
        return str(value), value
    if kind is bool:
        default = _get(Settings(), path)
        return ("false", False) if default else ("true", True)
    if kind is int:
        return "7", 7
    if kind is float:
        return "7.25", 7.25
    if kind is str:
        return "10.0.0.7", "10.0.0.7"
    raise AssertionError(f"no sample value for {'.'.join(path)}: {kind}")


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        obj = getattr(obj, name)
    return obj


def test_every_setting_was_found() -> None:
    names = {".".join(p) for p, _ in LEAVES}
    assert {"redis.retry.backoff.cap_s", "redis.subscription.health_interval_s", "ignite.heartbeat_interval_s",
            "ignite.partition_aware", "ignite.reconnect.base_s", "mysql.pool_max", "server.port"} <= names
    assert len(names) > 50


@pytest.mark.parametrize(("path", "kind"), LEAVES, ids=[".".join(p) for p, _ in LEAVES])
def test_every_setting_can_be_set_from_the_environment(monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...],
                                                       kind: Any) -> None:
    text, expected = _sample(path, kind)
    monkeypatch.setenv("ASYNCSTACK_" + "__".join(p.upper() for p in path), text)
    assert _get(load_settings(), path) == expected


# The floats that are factors or counts, not durations.
RATIOS = {"backoff", "latency_tolerance", "increase", "jitter", "early_refresh_beta"}


def test_every_duration_ends_in_s() -> None:
    durations = [".".join(p) for p, kind in LEAVES if kind in (float, float | None)
                 and not p[-1].endswith("_s") and p[-1] not in RATIOS]
    assert not durations, f"durations without the _s suffix: {durations}"


def test_the_sections_are_the_drivers_own_config_types() -> None:
    settings = Settings()
    assert isinstance(settings.mysql, MySQLConfig)
    assert isinstance(settings.redis, RedisConfig)
    assert isinstance(settings.mongo, MongoConfig)
    assert isinstance(settings.ignite, IgniteConfig)
    # The driver's defaults, untouched, except the addresses of the local stack.
    assert dataclasses.replace(settings.redis, port=6379) == RedisConfig()
    assert dataclasses.replace(settings.mysql, port=3306) == MySQLConfig()


def test_part_of_a_nested_setting_changes_only_that_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCSTACK_REDIS__RETRY__ATTEMPTS", "1")
    monkeypatch.setenv("ASYNCSTACK_MYSQL__POOL_MAX", "5")
    settings = load_settings()
    assert settings.redis.retry == RetryPolicy(1, RedisConfig().retry.backoff)   # the backoff kept its default
    assert settings.redis.port == REDIS_PORT and settings.mysql.port == MYSQL_PORT  # the stack's ports kept
    assert settings.mysql.pool_max == 5


def test_a_drivers_config_given_whole_is_used_as_it_is() -> None:
    given = RedisConfig(host="10.0.0.6", port=6380, retry=RetryPolicy(2, Backoff(0.1, 1.0)))
    assert Settings(redis=given).redis == given


def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCSTACK_IGNITE__RETRY__ATTEMPTS", "many")
    with pytest.raises(ValidationError, match=r"ignite\.retry\.attempts"):
        load_settings()
