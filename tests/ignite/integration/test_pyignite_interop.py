"""Interop with pyignite 0.6.1 through the real node, in both directions.

pyignite is an independent oracle here (it is never imported by the project's
code).  Each case says what pyignite writes/reads and what this client
writes/reads; where pyignite is wrong against Java, this client follows Java
and the case is not listed (see the README's pyignite differences).
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import pytest
from pyignite import Client as PyClient
from pyignite import GenericObjectMeta
from pyignite import datatypes as pt

from app.settings import Settings
from drivers.ignite.cache import Cache
from drivers.ignite.codec import BinaryObject
from drivers.ignite.codec import hints as h

UTC = datetime.UTC
TS = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


class InteropPerson(
    metaclass=GenericObjectMeta,
    type_name="InteropPerson",
    schema=OrderedDict([("name", pt.String), ("age", pt.IntObject), ("score", pt.DoubleObject)]),
):
    pass


@pytest.fixture
def py(settings: Settings) -> Iterator[PyClient]:
    c = PyClient()
    host, port = settings.ignite.nodes[0]
    c.connect(host, port)
    yield c
    c.close()


# (label, ours to write, ours expected on read, pyignite value, pyignite hint, pyignite expected on read)
CASES: list[tuple[str, Any, Any, Any, Any, Any]] = [
    ("long", 2**40, 2**40, 2**40, pt.LongObject, 2**40),
    ("int", h.Int(-7), -7, -7, pt.IntObject, -7),
    ("short", h.Short(300), 300, 300, pt.ShortObject, 300),
    ("byte", h.Byte(-3), -3, -3, pt.ByteObject, -3),
    ("char", h.Char("z"), "z", "z", pt.CharObject, "z"),
    ("bool", True, True, True, pt.BoolObject, True),
    ("double", 2.5, 2.5, 2.5, pt.DoubleObject, 2.5),
    ("float", h.Float(0.25), 0.25, 0.25, pt.FloatObject, 0.25),
    ("string", "héllo 😀", "héllo 😀", "héllo 😀", pt.String, "héllo 😀"),
    ("uuid", uuid.UUID(int=12345), uuid.UUID(int=12345), uuid.UUID(int=12345), pt.UUIDObject,
     uuid.UUID(int=12345)),
    ("decimal", decimal.Decimal("-123.4500"), decimal.Decimal("-123.4500"), decimal.Decimal("-123.4500"),
     pt.DecimalObject, decimal.Decimal("-123.4500")),
    ("bytes", b"\x01\x02\xff", b"\x01\x02\xff", bytearray(b"\x01\x02\xff"), pt.ByteArrayObject,
     b"\x01\x02\xff"),
    ("int[]", h.IntArray([1, 2, 3]), [1, 2, 3], [1, 2, 3], pt.IntArrayObject, [1, 2, 3]),
    ("long[]", h.LongArray([1, -2]), [1, -2], [1, -2], pt.LongArrayObject, [1, -2]),
    ("String[]", h.StringArray(["a", "b"]), ["a", "b"], ["a", "b"], pt.StringArrayObject, ["a", "b"]),
    ("double[]", h.DoubleArray([0.5]), [0.5], [0.5], pt.DoubleArrayObject, [0.5]),
    ("timestamp", TS, TS, (TS, 0), pt.TimestampObject, (TS, 0)),
    ("collection", [1, "a"], [1, "a"], (pt.CollectionObject.ARR_LIST, [1, "a"]), pt.CollectionObject,
     (pt.CollectionObject.ARR_LIST, [1, "a"])),
    ("map", {"k": 1}, {"k": 1}, (pt.MapObject.HASH_MAP, {"k": 1}), pt.MapObject, (pt.MapObject.HASH_MAP, {"k": 1})),
]


def _py_normal(value: Any) -> Any:
    """pyignite returns aware/naive datetimes depending on the path; compare as UTC instants."""
    if isinstance(value, tuple) and value and isinstance(value[0], datetime.datetime):
        dt = value[0]
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC), value[1]
    return value


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_pyignite_reads_what_this_client_writes(cache: Cache, py: PyClient, case: tuple[Any, ...]) -> None:
    label, ours, _ours_back, _py_value, _py_hint, py_back = case
    await cache.put(label, ours)
    got = py.get_cache(cache.name).get(label)
    assert _py_normal(got) == _py_normal(py_back)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_this_client_reads_what_pyignite_writes(cache: Cache, py: PyClient, case: tuple[Any, ...]) -> None:
    label, _ours, ours_back, py_value, py_hint, _py_back = case
    py.get_cache(cache.name).put(label, py_value, value_hint=py_hint)
    assert await cache.get(label) == ours_back


async def test_complex_objects_cross_both_ways(cache: Cache, py: PyClient) -> None:
    py.get_cache(cache.name).put("from-py", InteropPerson(name="Py", age=7, score=1.5))
    got = await cache.get("from-py")
    assert isinstance(got, BinaryObject)
    assert (got.type_name, got.fields) == ("InteropPerson", {"name": "Py", "age": 7, "score": 1.5})

    await cache.put("from-us", BinaryObject("InteropPerson", {"name": "Us", "age": h.Int(9), "score": 2.5}))
    back = py.get_cache(cache.name).get("from-us")
    assert (back.name, back.age, back.score) == ("Us", 9, 2.5)


async def test_keys_written_by_pyignite_are_found_by_this_client(cache: Cache, py: PyClient) -> None:
    pc = py.get_cache(cache.name)
    pc.put(42, "long key")
    pc.put("s", "string key")
    pc.put(7, "int key", key_hint=pt.IntObject)
    assert await cache.get(42) == "long key"
    assert await cache.get("s") == "string key"
    assert await cache.get(h.Int(7)) == "int key"
    assert await cache.get(7) is None  # a Long 7 is another key
