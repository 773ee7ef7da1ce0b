"""The cluster's key space with no server (``drivers.redis.slots``), and once against the real CLUSTER KEYSLOT."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.settings import REDIS_CLUSTER_PORTS, STACK_HOST, Settings
from drivers.errors import InterfaceError, ProtocolError
from drivers.redis import PipelinedRedis, RedisConfig
from drivers.redis.slots import (
    SLOTS,
    Address,
    Redirect,
    RedirectKind,
    Shard,
    SlotTable,
    first_key,
    key_slot,
    parse_redirect,
    parse_shards,
    parse_slots,
)

HERE = Address("127.0.0.9", 7000)   # the node that "answered" in the parsing tests (on this machine)


def test_the_checksum_is_crc16_xmodem() -> None:
    # CRC-16/XMODEM's check value: CRC("123456789") = 0x31C3; the slot is it modulo 16384.
    assert key_slot("123456789") == 0x31C3 % SLOTS == 12739


@pytest.mark.parametrize(("key", "slot"), [
    ("foo", 12182), ("bar", 5061), ("hello", 866), ("somekey", 11058), ("", 0), ("a", 15495),
    ("ключ", 10303), (b"foo", 12182), (1000, key_slot("1000")),
])
def test_slots_are_those_the_server_computes(key: str | bytes | int, slot: int) -> None:
    assert key_slot(key) == slot


# (key, the bytes Redis hashes, the slot CLUSTER KEYSLOT gives)
@pytest.mark.parametrize(("key", "hashed_as", "slot"), [
    ("{user1000}.following", "user1000", 3443),   # the tag alone is hashed
    ("foo{bar}{zap}", "bar", 5061),               # the first tag counts
    ("foo{{bar}}zap", "{bar", 4015),              # from the first "{" to the first "}" after it
    ("}{a}", "a", 15495),                         # a "}" before the first "{" closes nothing
    ("foo{}{bar}", "foo{}{bar}", 8363),           # an empty first tag: the whole key
    ("{}", "{}", 15257),
    ("{", "{", 4092),                             # no "}" after the "{": the whole key
    ("abc{def", "abc{def", 2899),
    ("}", "}", 12090),
])
def test_hash_tags_follow_the_rules_redis_specifies(key: str, hashed_as: str, slot: int) -> None:
    assert key_slot(key) == key_slot(hashed_as) == slot


# Keys are text Redis can be sent: no lone surrogates (those are refused, below).
_TEXT = st.characters(blacklist_categories=("Cs",))


@given(prefix=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="{")),
       tag=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="}"), min_size=1),
       suffix=st.text(alphabet=_TEXT))
def test_keys_sharing_a_non_empty_tag_share_a_slot(prefix: str, tag: str, suffix: str) -> None:
    assert key_slot(f"{prefix}{{{tag}}}{suffix}") == key_slot(tag)


def test_a_key_of_another_type_is_a_misuse() -> None:
    with pytest.raises(InterfaceError, match="a key must be str, bytes or int"):
        key_slot(1.5)  # type: ignore[arg-type]


def test_a_key_that_cannot_be_encoded_is_a_misuse_named_as_such() -> None:
    with pytest.raises(InterfaceError, match=r"redis-cluster: an argument must be valid Unicode text "
                                             r"\(surrogates not allowed at position 1: '\\ud800'\)"):
        key_slot("a\ud800{b}")


def _random_key(rng: random.Random) -> bytes:
    alphabet = b"ab{}:x\x00\xff"
    return bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))


async def test_key_slot_agrees_with_cluster_keyslot_for_hundreds_of_keys(settings: Settings) -> None:
    rng = random.Random(12739)
    keys = [_random_key(rng) for _ in range(300)] + [f"user:{i}".encode() for i in range(100)]
    pipe = PipelinedRedis(RedisConfig(host=STACK_HOST, port=REDIS_CLUSTER_PORTS[0]))
    try:
        slots = await asyncio.gather(*(pipe.execute("CLUSTER", "KEYSLOT", key) for key in keys))
    finally:
        await pipe.aclose()
    assert [key_slot(k) for k in keys] == slots


@pytest.mark.parametrize(("args", "key"), [
    (["GET", "k"], "k"),
    (["MSET", "{t}a", "1", "{t}b", "2"], "{t}a"),
    (["EVAL", "return 1", 2, "k1", "k2", "arg"], "k1"),
    ([b"evalsha", b"abc", b"1", b"k"], b"k"),
    (["EVAL", "return 1", 0], None),
    (["FCALL", "f", "x"], None),        # numkeys that is not a number: no key
    (["PING"], None),
    (["INFO", "server"], None),
    (["SCAN", "0", "MATCH", "k*"], None),
])
def test_the_first_key_of_a_command(args: list[Any], key: Any) -> None:
    assert first_key(args) == key


@pytest.mark.parametrize(("message", "redirect"), [
    ("MOVED 3999 127.0.0.1:6381", Redirect(RedirectKind.MOVED, 3999, Address("127.0.0.1", 6381))),
    ("ASK 3999 127.0.0.1:6381", Redirect(RedirectKind.ASK, 3999, Address("127.0.0.1", 6381))),
    ("MOVED 0 :7001", Redirect(RedirectKind.MOVED, 0, Address("127.0.0.9", 7001))),   # endpoint unknown
    ("MOVED 16383 ::1:7002", Redirect(RedirectKind.MOVED, 16383, Address("::1", 7002))),
    ("MOVED 16384 127.0.0.1:7000", None),
    ("MOVED x 127.0.0.1:7000", None),
    ("ERR unknown command 'FOO'", None),
    ("TRYAGAIN Multiple keys request during rehashing of slot", None),
    ("CLUSTERDOWN The cluster is down", None),
])
def test_redirects_are_read_from_error_messages(message: str, redirect: Redirect | None) -> None:
    assert parse_redirect(message, HERE) == redirect


def _node(port: int, role: str, health: str = "online", endpoint: bytes = b"127.0.0.1") -> list[Any]:
    return [b"id", b"%040d" % port, b"port", port, b"ip", b"127.0.0.1", b"endpoint", endpoint,
            b"role", role.encode(), b"replication-offset", 100, b"health", health.encode()]


SHARDS_REPLY = [
    [b"slots", [0, 5460], b"nodes", [_node(7000, "master"), _node(7005, "replica")]],
    [b"slots", [5461, 10922], b"nodes", [_node(7001, "replica", "loading"), _node(7003, "master")]],
    [b"slots", [10923, 12000, 12002, 16383], b"nodes", [_node(7002, "master", endpoint=b""),
                                                        _node(7004, "replica", endpoint=b"?"),
                                                        _node(7007, "replica", endpoint=b"db7")]],
    [b"slots", [], b"nodes", [_node(7006, "master", "fail")]],   # a failed primary that owns nothing
]


def test_cluster_shards_becomes_a_slot_table() -> None:
    table = parse_shards(SHARDS_REPLY, HERE)
    first, second, third = (table.shard(s) for s in (0, 5461, 16383))
    assert first == Shard(Address("127.0.0.1", 7000), (Address("127.0.0.1", 7005),))
    assert second == Shard(Address("127.0.0.1", 7003))                 # its replica is still loading
    assert third == Shard(Address("127.0.0.1", 7002),                  # no endpoint: the node's ip
                          (Address("127.0.0.1", 7004), Address("db7", 7007)))
    assert table.shard(5460) is first and table.shard(10922) is second and table.shard(10923) is third
    assert table.shard(12001) is None and table.covered == SLOTS - 1
    assert table.primaries == (Address("127.0.0.1", 7000), Address("127.0.0.1", 7003), Address("127.0.0.1", 7002))
    assert set(table.nodes) == {*table.primaries, *first.replicas, *third.replicas}


def test_loopback_addresses_from_a_node_reached_elsewhere_are_that_nodes_host() -> None:
    """Nodes announcing 127.0.0.1, reached from another namespace or machine at 10.77.0.1."""
    far = Address("10.77.0.1", 17000)
    table = parse_shards(SHARDS_REPLY, far)
    assert table.shard(0) == Shard(Address("10.77.0.1", 7000), (Address("10.77.0.1", 7005),))
    assert table.shard(16383) == Shard(Address("10.77.0.1", 7002),
                                       (Address("10.77.0.1", 7004), Address("db7", 7007)))   # a name: kept
    slots = parse_slots([[0, 16383, [b"127.0.0.1", 7000, b"id0", []], [b"::1", 7005, b"id5", []]]], far)
    assert slots.shard(0) == Shard(Address("10.77.0.1", 7000), (Address("10.77.0.1", 7005),))
    for message, address in (("MOVED 5 127.0.0.1:17001", Address("10.77.0.1", 17001)),
                             ("ASK 5 localhost:17001", Address("10.77.0.1", 17001)),
                             ("MOVED 5 10.0.0.3:17001", Address("10.0.0.3", 17001))):
        redirect = parse_redirect(message, far)
        assert redirect is not None and redirect.address == address, message


def test_cluster_shards_as_resp3_maps_reads_the_same() -> None:
    def as_map(flat: list[Any]) -> dict[Any, Any]:
        return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}

    resp3 = [{b"slots": shard[1], b"nodes": [as_map(n) for n in shard[3]]} for shard in SHARDS_REPLY]
    assert parse_shards(resp3, HERE).owners == parse_shards(SHARDS_REPLY, HERE).owners


def test_cluster_slots_becomes_a_slot_table_with_a_primarys_ranges_together() -> None:
    reply = [
        [0, 5460, [b"127.0.0.1", 7000, b"id0", []], [b"127.0.0.1", 7005, b"id5", []]],
        [5461, 10922, [b"", 7001, b"id1", []]],
        [10923, 16383, [b"127.0.0.1", 7000, b"id0", []], [b"?", 7006, b"id6", []]],
    ]
    table = parse_slots(reply, HERE)
    assert table.shard(0) is table.shard(16383)
    assert table.shard(0) == Shard(Address("127.0.0.1", 7000), (Address("127.0.0.1", 7005),))
    assert table.shard(5461) == Shard(Address("127.0.0.9", 7001))
    assert table.covered == SLOTS


@pytest.mark.parametrize("reply", [
    b"not a list",
    [[b"slots", [0], b"nodes", []]],                  # an odd number of bounds
    [[b"slots", [0, 20000], b"nodes", [_node(7000, "master")]]],
    [[b"slots", [b"0", b"1"], b"nodes", [_node(7000, "master")]]],
    [[b"slots"]],
])
def test_a_cluster_shards_reply_of_another_shape_is_a_protocol_error(reply: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_shards(reply, HERE)


@pytest.mark.parametrize("reply", [b"oops", [[0, 10]], [[0, 10, b"127.0.0.1"]], [[0, 10, [b"h"]]],
                                   [[b"0", 10, [b"h", 1]]]])
def test_a_cluster_slots_reply_of_another_shape_is_a_protocol_error(reply: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_slots(reply, HERE)


def test_a_move_changes_only_that_slot_and_reuses_the_known_shard() -> None:
    table = parse_shards(SHARDS_REPLY, HERE)
    before = list(table.owners)
    moved_to_known = table.move(42, Address("127.0.0.1", 7003))
    assert moved_to_known is table.shard(5461)
    new = table.move(43, Address("127.0.0.1", 7777))
    assert new == Shard(Address("127.0.0.1", 7777)) and table.shard(43) is new
    assert [s for i, (s, b) in enumerate(zip(table.owners, before, strict=True)) if s is not b] == [moved_to_known, new]
    assert Address("127.0.0.1", 7777) in table.primaries


def test_an_empty_table_serves_no_slot() -> None:
    table = SlotTable([])
    assert table.covered == 0 and table.primaries == () and table.shard(0) is None
