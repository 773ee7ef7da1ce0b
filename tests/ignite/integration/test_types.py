"""Every Ignite type round-trips through the real node: put with this client, get it back."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import uuid
from typing import Annotated, Any

import pytest

from drivers.ignite import Client
from drivers.ignite.cache import Cache
from drivers.ignite.codec import BinaryObject, BinaryTypeRegistry, write_value
from drivers.ignite.codec import hints as h
from drivers.ignite.codec.hashing import type_id
from drivers.ignite.codec.typecodes import CollectionKind, MapKind
from drivers.ignite.errors import LocalProtocolError

UTC = datetime.UTC
NOW = datetime.datetime(2026, 11, 22, 15, 30, 45, 123000, tzinfo=UTC)


@dataclasses.dataclass
class Address:
    street: str
    zip: Annotated[int, h.Int]


@dataclasses.dataclass
class Person:
    name: str
    age: Annotated[int, h.Int]
    height: float
    tags: list[str]
    address: Address | None = None


def _encoded(value: Any) -> bytes:
    buf = bytearray()
    write_value(buf, value, BinaryTypeRegistry())
    return bytes(buf)


# (value written, value expected back)
CASES: list[tuple[str, Any, Any]] = [
    ("bool", True, True),
    ("long", -(2**63), -(2**63)),
    ("long max", 2**63 - 1, 2**63 - 1),
    ("int hint", h.Int(-5), -5),
    ("short hint", h.Short(-300), -300),
    ("byte hint", h.Byte(-7), -7),
    ("char hint", h.Char("Ж"), "Ж"),
    ("float hint", h.Float(1.5), 1.5),
    ("double", 3.141592653589793, 3.141592653589793),
    ("string", "hello", "hello"),
    ("string non-BMP", "emoji 😀 and 𝄞", "emoji 😀 and 𝄞"),
    ("empty string", "", ""),
    ("bytes", b"\x00\x01\xfe\xff", b"\x00\x01\xfe\xff"),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678"), uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("decimal", decimal.Decimal("-12345678901234567890.0012345"), decimal.Decimal("-12345678901234567890.0012345")),
    ("decimal zero scale", decimal.Decimal("42"), decimal.Decimal("42")),
    ("timestamp", NOW, NOW),
    ("date", datetime.date(2020, 2, 29), datetime.datetime(2020, 2, 29, tzinfo=UTC)),
    ("time", datetime.time(13, 14, 15, 16000), datetime.time(13, 14, 15, 16000)),
    ("list", [1, "two", 3.0, None], [1, "two", 3.0, None]),
    ("set", {1, 2, 3}, {1, 2, 3}),
    ("tuple as Object[]", (1, "a"), [1, "a"]),
    ("map", {"a": 1, 2: [3, 4], "nested": {"x": {"y": "z"}}}, {"a": 1, 2: [3, 4], "nested": {"x": {"y": "z"}}}),
    ("linked map", h.Map(MapKind.LINKED_HASH_MAP, {"b": 1, "a": 2}), {"b": 1, "a": 2}),
    ("linked list", h.Collection(CollectionKind.LINKED_LIST, [3, 2, 1]), [3, 2, 1]),
    ("byte[]", h.ByteArray([1, -2, 3]), b"\x01\xfe\x03"),
    ("short[]", h.ShortArray([1, -2, 3]), [1, -2, 3]),
    ("int[]", h.IntArray([1, -2, 2**31 - 1]), [1, -2, 2**31 - 1]),
    ("long[]", h.LongArray([2**40, -1]), [2**40, -1]),
    ("float[]", h.FloatArray([0.5, -1.25]), [0.5, -1.25]),
    ("double[]", h.DoubleArray([0.1, 1e300]), [0.1, 1e300]),
    ("char[]", h.CharArray(["a", "я"]), ["a", "я"]),
    ("bool[]", h.BoolArray([True, False]), [True, False]),
    ("String[]", h.StringArray(["a", None, "c"]), ["a", None, "c"]),
    ("UUID[]", h.UUIDArray([uuid.UUID(int=1), None]), [uuid.UUID(int=1), None]),
    ("Timestamp[]", h.TimestampArray([NOW]), [NOW]),
    ("Date[]", h.DateArray([datetime.date(2001, 1, 1)]), [datetime.datetime(2001, 1, 1, tzinfo=UTC)]),
    ("Time[]", h.TimeArray([datetime.time(1, 2, 3)]), [datetime.time(1, 2, 3)]),
    ("Decimal[]", h.DecimalArray([decimal.Decimal("1.5"), decimal.Decimal("-0.001")]),
     [decimal.Decimal("1.5"), decimal.Decimal("-0.001")]),
    ("Object[] of mixed", h.ObjectArray([1, "x", None, [2]]), [1, "x", None, [2]]),
    ("nested collections", [[1, [2, [3, {"k": (4, 5)}]]]], [[1, [2, [3, {"k": [4, 5]}]]]]),
    ("complex object", Person("Ada", 36, 1.7, ["math"], Address("Main St", 12345)),
     Person("Ada", 36, 1.7, ["math"], Address("Main St", 12345))),
    ("complex objects in a list", [Person("A", 1, 1.0, []), Person("B", 2, 2.0, ["x"])],
     [Person("A", 1, 1.0, []), Person("B", 2, 2.0, ["x"])]),
    ("generic binary object", BinaryObject("GenericThing", {"a": 1, "b": "two"}),
     BinaryObject("GenericThing", {"a": 1, "b": "two"})),
    # The node keeps enums as binary enums: an enum (28) comes back as a binary enum (38).
    ("enum", h.Enum(type_id("com.example.Color"), 2), h.BinaryEnum(type_id("com.example.Color"), 2)),
    ("binary enum", h.BinaryEnum(type_id("com.example.Size"), 1), h.BinaryEnum(type_id("com.example.Size"), 1)),
    ("enum[]", h.EnumArray(type_id("com.example.Color"), [h.Enum(type_id("com.example.Color"), 0), None]),
     [h.BinaryEnum(type_id("com.example.Color"), 0), None]),
]


@pytest.mark.parametrize(("label", "value", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_value_round_trips_through_the_node(cache: Cache, label: str, value: Any, expected: Any) -> None:
    await cache.put(label, value)
    assert await cache.get(label) == expected


async def test_wrapped_object_round_trips(cache: Cache) -> None:
    await cache.put("plain", Address("Plain St", 1))  # registers the type with the node
    await cache.put("wrapped", h.WrappedObject(_encoded(Address("Wrapped St", 7))))
    assert await cache.get("wrapped") == Address("Wrapped St", 7)


@pytest.mark.parametrize(("label", "key"), [
    ("long", 12), ("int", h.Int(12)), ("string", "key-😀"), ("uuid", uuid.UUID(int=99)),
    ("timestamp", NOW), ("decimal", decimal.Decimal("1.50")), ("complex", Address("k", 1)),
])
async def test_value_is_found_under_a_key_of_each_type(cache: Cache, label: str, key: Any) -> None:
    await cache.put(key, label)
    assert await cache.get(key) == label
    assert await cache.contains_key(key)


async def test_int_and_long_keys_are_different_keys(cache: Cache) -> None:
    await cache.put(h.Int(1), "int")
    await cache.put(1, "long")
    assert await cache.get(h.Int(1)) == "int"
    assert await cache.get(1) == "long"
    assert await cache.get_size() == 2


async def test_types_written_by_another_client_are_fetched_before_decoding(
        client: Client, cache: Cache, settings: Any) -> None:
    await cache.put("p", Person("Lin", 50, 1.6, ["a"], Address("x", 9)))
    async with Client(settings.ignite.nodes) as fresh:  # knows no types yet
        got = await fresh.cache(cache.name).get("p")
    assert isinstance(got, BinaryObject)
    assert got.type_name == "Person"
    assert got.fields["name"] == "Lin"
    assert got.fields["address"].fields == {"street": "x", "zip": 9}


async def test_null_keys_and_values_are_refused_before_anything_is_sent(client: Client, cache: Cache) -> None:
    def sent() -> int:
        return sum(n["requests"] for n in client.stats()["detail"]["nodes"])

    before = sent()
    with pytest.raises(LocalProtocolError, match="cache_put: a cache value cannot be None"):
        await cache.put("k", None)
    with pytest.raises(LocalProtocolError, match="cache_get: a cache key cannot be None"):
        await cache.get(None)
    with pytest.raises(LocalProtocolError, match="cache_put_all: a cache value cannot be None"):
        await cache.put_all({"a": 1, "b": None})
    assert sent() == before          # the node, which would answer "Argument cannot be null", never heard
    assert await cache.get("a") is None
