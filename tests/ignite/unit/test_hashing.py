"""Java-exact hashes: vectors computed by hand from the Java definitions.

``String.hashCode`` is ``s[0]*31^(n-1) + ... + s[n-1]`` over UTF-16 units, wrapped to int32;
``Long.hashCode`` is ``(int)(v ^ (v >>> 32))``; partitions follow ``RendezvousAffinityFunction``.
"""

from __future__ import annotations

import datetime
import decimal
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ignite.codec import hints
from drivers.ignite.codec.hashing import (
    binary_object_hash,
    cache_id,
    double_hash,
    field_id,
    float_hash,
    java_hash,
    long_hash,
    partition_for,
    schema_id,
    string_hash,
    type_id,
)
from drivers.ignite.errors import LocalProtocolError


def _java_string_hash(s: str) -> int:
    """The textbook loop, kept slow and obvious as an oracle."""
    h = 0
    units = s.encode("utf-16-le", "surrogatepass")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "little")) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


@pytest.mark.parametrize(("s", "expected"), [
    ("", 0),
    ("a", 97),
    ("abc", 96354),
    ("😀", 1772899),            # surrogates 0xD83D, 0xDE00: 0xD83D*31 + 0xDE00
    ("Hello, World", -505841268),
    ("polygenelubricants", -2147483648),  # the classic MIN_VALUE String hash
])
def test_string_hash_vectors(s: str, expected: int) -> None:
    assert string_hash(s) == expected


def test_string_hash_of_a_long_string_wraps_like_java() -> None:
    s = "ключ-" * 2000 + "x" * 5000
    assert string_hash(s) == _java_string_hash(s)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_string_hash_matches_the_java_loop(s: str) -> None:
    assert string_hash(s) == _java_string_hash(s)


@pytest.mark.parametrize(("v", "expected"), [
    (0, 0), (1, 1), (-1, 0), (1 << 32, 1), (-(1 << 63), -(1 << 31)), ((1 << 63) - 1, -(1 << 31)),
    (-2, 1), (123456789012, -1097262584),
])
def test_long_hash_vectors(v: int, expected: int) -> None:
    # Long.hashCode(-2) = (int)(0xFFFFFFFFFFFFFFFE ^ 0x00000000FFFFFFFF) = (int)0xFFFFFFFF00000001 = 1
    assert long_hash(v) == expected
    assert java_hash(v) == expected


def test_bool_hashes() -> None:
    assert java_hash(True) == 1231
    assert java_hash(False) == 1237


def test_number_hints_hash_as_their_java_types() -> None:
    assert java_hash(5, hints.Int) == 5
    assert java_hash(hints.Int(-7)) == -7
    assert java_hash(hints.Short(-1)) == -1
    assert java_hash(hints.Byte(200)) == -56          # (byte)200
    assert java_hash(hints.Char("A")) == 65
    assert java_hash(hints.Float(1.0)) == 0x3F800000   # floatToIntBits(1.0f)
    assert java_hash(1.0) == 1072693248                # (int)(0x3FF0000000000000 >>> 32)
    assert double_hash(float("nan")) == long_hash(0x7FF8000000000000)
    assert float_hash(float("nan")) == 0x7FC00000


def test_uuid_hash() -> None:
    u = uuid.UUID("00000001-0000-0002-0000-000300000004")
    # msb = 0x0000000100000002, lsb = 0x0000000300000004; hilo = 0x0000000200000006 -> 2 ^ 6 = 4
    assert java_hash(u) == 4
    assert java_hash(uuid.UUID(int=(1 << 128) - 1)) == 0


def test_date_and_timestamp_hash_over_epoch_millis() -> None:
    dt = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    ms = 1577836800000
    assert java_hash(dt) == long_hash(ms)
    assert java_hash(datetime.date(2020, 1, 1)) == long_hash(ms)
    assert java_hash(hints.Timestamp(ms, 999)) == long_hash(ms)


def test_decimal_hash_follows_bigdecimal() -> None:
    # BigDecimal("1.5"): unscaled 15, scale 1 -> 31*15 + 1
    assert java_hash(decimal.Decimal("1.5")) == 466
    assert java_hash(decimal.Decimal("-1.5")) == -31 * 15 + 1
    # 2**32: magnitude words [1, 0] -> 31*1 + 0 = 31; scale 0
    assert java_hash(decimal.Decimal(1 << 32)) == 31 * 31


def test_unhashable_keys_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        java_hash([1, 2])
    with pytest.raises(LocalProtocolError):
        java_hash(1 << 70)


def test_type_and_field_ids_hash_the_lower_cased_name() -> None:
    assert type_id("Person") == string_hash("person") == -991716523
    assert field_id("NAME") == string_hash("name")
    assert type_id("İ") == string_hash("i")  # Java simple case mapping, not Python's "i̇"
    assert cache_id("MyCache") == string_hash("MyCache")


def test_schema_id() -> None:
    assert schema_id([]) == 0
    # FNV-1a over the 4 bytes of field id 97 ('a'), low byte first.
    h = 0x811C9DC5
    for b in (97, 0, 0, 0):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    signed = h - (1 << 32) if h & 0x80000000 else h   # Java's int
    assert schema_id([97]) == signed
    assert schema_id([field_id("a"), field_id("b")]) == 571803110  # same as pyignite


def test_binary_object_hash_uses_signed_bytes() -> None:
    assert binary_object_hash(b"") == 1
    assert binary_object_hash(b"\x01") == 31 + 1
    assert binary_object_hash(b"\xff") == 31 - 1
    data = bytes(range(256)) * 40
    h = 1
    for b in data:
        h = (31 * h + (b - 256 if b > 127 else b)) & 0xFFFFFFFF
    assert binary_object_hash(data) == (h - (1 << 32) if h & 0x80000000 else h)


@pytest.mark.parametrize(("h", "parts", "expected"), [
    (96354, 1024, (96354 ^ (96354 >> 16)) & 1023),
    (-1, 1024, (0xFFFFFFFF ^ 0xFFFF) & 1023),       # unsigned shift: 0xFFFF0000 & 1023 = 0
    (-(1 << 31), 1024, ((1 << 31) ^ (1 << 15)) & 1023),
    (96354, 1000, 354),
    (-96354, 1000, 354),                              # Java: -96354 % 1000 = -354 -> 354
    (-(1 << 31), 1000, 648),                          # MIN % 1000 = -648
    ((1 << 31) - 1, 1023, ((1 << 31) - 1) % 1023),
    (-7, 1023, 7),
    (0, 1, 0),
])
def test_partition_for(h: int, parts: int, expected: int) -> None:
    assert partition_for(h, parts) == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(1, 70000))
def test_partition_is_in_range(h: int, parts: int) -> None:
    assert 0 <= partition_for(h, parts) < parts
