"""The cache's sans-I/O parts: keys, the envelope codec, the local LRU, the breaker, TTL jitter."""

from __future__ import annotations

import pickle
import statistics

import pytest

from drivers.cache import Breaker, BreakerConfig, BreakerState, Cache, CacheConfig, Codec, LocalTier
from drivers.cache.codec import Corrupt
from drivers.cache.keys import Layout, check_key
from drivers.cache.local import Entry
from drivers.errors import InterfaceError


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- keys -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("key", "why"), [
    ("", "empty"), ("a b", "' '"), ("a\nb", "'\\n'"), ("tab\there", "'\\t'"), ("del\x7f", "'\\x7f'"),
    (b"bytes", "a str, not bytes"), (42, "a str, not int"), (None, "a str, not NoneType"),
    ("é" * 300, "over the limit of 512"),
])
def test_an_unusable_key_is_refused_with_what_is_wrong(key: object, why: str) -> None:
    with pytest.raises(InterfaceError) as raised:
        check_key(key, 512)
    assert why in str(raised.value)
    assert raised.value.backend == "cache"


def test_usable_keys_pass_and_the_layout_keeps_values_and_leases_apart() -> None:
    for key in ("item:1", "{user42}:cart", "ключ", "a" * 512):
        assert check_key(key, 512) == key
    layout = Layout("ns")
    assert layout.value("lease:x") != layout.lease("x")
    assert layout.value("{u}:1").endswith("{u}:1")


async def test_the_cache_checks_keys_before_any_io() -> None:
    cache = Cache(None)       # no remote tier: nothing could be sent anyway; the check is what answers

    async def loader() -> int:
        raise AssertionError("the loader ran for a bad key")

    for call in (cache.get_or_load("bad key", loader), cache.get("bad\nkey"), cache.set("", 1),
                 cache.delete("x y"), cache.invalidate_prefix("a\tb")):
        with pytest.raises(InterfaceError):
            await call


# -- the envelope -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_envelopes_round_trip_values_and_metadata(name: str) -> None:
    codec = Codec(name)  # type: ignore[arg-type]
    for value in ({"id": 1, "tags": ["a", "b"]}, "text", 12, 1.5, [1, [2]], True):
        env = codec.decode(codec.encode("k", value, 123.5, 0.25))
        assert (env.value, env.fresh_until, env.negative) == (value, 123.5, False)
        assert env.delta == pytest.approx(0.25)
    negative = codec.decode(codec.encode("k", None, 9.0))
    assert negative.negative and negative.value is None


def test_a_value_that_cannot_be_encoded_is_refused_before_io() -> None:
    with pytest.raises(InterfaceError, match="key 'k' cannot be encoded as json"):
        Codec().encode("k", object(), 1.0)
    with pytest.raises(InterfaceError, match="over the limit of 100"):
        Codec(max_bytes=100).encode("k", "x" * 200, 1.0)


def test_a_poisoned_store_yields_no_value_let_alone_code() -> None:
    codec = Codec()
    for blob in (pickle.dumps({"x": 1}), b"", b"\xc5", b"\xc5\x00" + b"\x00" * 12 + b"{not json"):
        with pytest.raises(Corrupt):
            codec.decode(blob)


def test_with_an_hmac_key_forged_and_unsigned_values_are_refused() -> None:
    signed = Codec(hmac_key="secret")
    blob = signed.encode("k", {"admin": False}, 5.0)
    assert signed.decode(blob).value == {"admin": False}
    forged = blob.replace(b"false", b"true ")
    with pytest.raises(Corrupt, match="HMAC"):
        signed.decode(forged)
    with pytest.raises(Corrupt, match="HMAC"):
        Codec(hmac_key="other").decode(blob)
    with pytest.raises(Corrupt, match="unsigned"):
        signed.decode(Codec().encode("k", {"admin": True}, 5.0))


# -- the local tier ---------------------------------------------------------------------------------

def _entry(value: object, size: int = 10, fresh_until: float = 2e9, drop_at: float = 3e9) -> Entry:
    return Entry(value, fresh_until, drop_at, 0.0, False, size)


def test_the_local_tier_evicts_the_least_recently_used_by_entries() -> None:
    tier = LocalTier(3, 10_000, Clock())
    for key in "abc":
        tier.put(key, _entry(key))
    assert tier.get("a") is not None            # a is now the most recent
    tier.put("d", _entry("d"))
    assert "b" not in tier and {"a", "c", "d"} == set(tier.keys())
    assert tier.evictions == 1


def test_the_local_tier_evicts_by_bytes_and_keeps_its_byte_count() -> None:
    tier = LocalTier(100, 100, Clock())
    for i in range(5):
        tier.put(str(i), _entry(i, size=30))
    assert len(tier) == 3 and tier.bytes == 90
    tier.put("3", _entry("new", size=5))          # replacing an entry counts the difference
    assert tier.bytes == 65
    tier.put("huge", _entry("x", size=101))       # never fits: not stored, nothing evicted for it
    assert "huge" not in tier and tier.bytes == 65
    tier.discard_prefix("")
    assert tier.bytes == 0 and len(tier) == 0


def test_a_stale_entry_is_kept_until_its_stale_window_ends() -> None:
    clock = Clock(100.0)
    tier = LocalTier(10, 1000, clock)
    tier.put("k", _entry("v", fresh_until=110.0, drop_at=130.0))
    clock.now = 120.0
    entry = tier.get("k")
    assert entry is not None and entry.fresh_until < clock.now      # stale, still there
    clock.now = 130.0
    assert tier.get("k") is None and "k" not in tier and tier.bytes == 0


# -- the breaker ------------------------------------------------------------------------------------

def test_the_breaker_opens_probes_once_and_closes() -> None:
    clock = Clock(0.0)
    breaker = Breaker(BreakerConfig(failures=3, open_s=1.0, max_open_s=4.0), clock=clock)
    for _ in range(2):
        breaker.failure()
    assert breaker.allow() and breaker.state is BreakerState.CLOSED
    breaker.failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    clock.now = 1.0
    assert breaker.allow() and breaker.state is BreakerState.HALF_OPEN     # the probe
    assert not breaker.allow()                                            # only one
    breaker.failure()                                                     # probe failed: open for 2 s
    clock.now = 2.5
    assert not breaker.allow()
    clock.now = 3.0
    assert breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.opened == 2


def test_a_probe_that_never_reports_does_not_wedge_the_breaker() -> None:
    clock = Clock(0.0)
    breaker = Breaker(BreakerConfig(failures=1, open_s=1.0), clock=clock)
    breaker.failure()
    clock.now = 1.0
    assert breaker.allow()          # the probe's caller is cancelled and never reports
    clock.now = 1.5
    assert not breaker.allow()
    clock.now = 2.0
    assert breaker.allow()


def test_a_success_resets_the_count_of_failures() -> None:
    breaker = Breaker(BreakerConfig(failures=2))
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state is BreakerState.CLOSED


# -- TTL jitter -------------------------------------------------------------------------------------

def test_ttls_are_spread_over_the_jitter_window() -> None:
    cache = Cache(None, CacheConfig(jitter=0.1))
    ttls = [cache._ttl(100.0) for _ in range(20_000)]
    assert 90.0 <= min(ttls) < 90.5 and 109.5 < max(ttls) <= 110.0
    buckets = [0] * 10
    for t in ttls:
        buckets[min(9, int((t - 90.0) / 2.0))] += 1
    assert statistics.pstdev(buckets) < 0.1 * statistics.mean(buckets), buckets    # about uniform
    assert Cache(None, CacheConfig(jitter=0.0))._ttl(100.0) == 100.0
    with pytest.raises(InterfaceError, match="TTL"):
        cache._ttl(0)
