"""pyignite 0.6.1 as an independent oracle: same bytes for the types it encodes correctly (so we
read what it writes: those are the bytes our own round trips decode), and it reads what we write.
(Its known defects — hashes, naive datetimes as local time — are avoided.)"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import uuid
from collections import OrderedDict
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pyignite = pytest.importorskip("pyignite")

from pyignite import GenericObjectMeta  # noqa: E402
from pyignite import datatypes as pt  # noqa: E402
from pyignite.datatypes.internal import AnyDataObject  # noqa: E402
from pyignite.stream.binary_stream import BinaryStream  # noqa: E402

from drivers.ignite.codec import BinaryTypeRegistry, read_value, write_value  # noqa: E402
from drivers.ignite.codec import hints as h  # noqa: E402
from drivers.ignite.codec.hashing import schema_id as our_schema_id  # noqa: E402
from drivers.ignite.codec.hashing import type_id as our_type_id  # noqa: E402

UTC = datetime.UTC


class _FakeClient:
    compact_footer = True
    protocol_context = None

    def register_binary_type(self, *args: Any, **kwargs: Any) -> None:
        return None


def py_encode(t: Any, value: Any) -> bytes:
    s = BinaryStream(_FakeClient())
    t.from_python(s, value)
    return bytes(s.getvalue())


def py_decode(data: bytes) -> Any:
    s = BinaryStream(_FakeClient(), data)
    cls = AnyDataObject.parse(s)
    return AnyDataObject.to_python(s.read_ctype(cls, position=0))


def ours(value: Any, registry: BinaryTypeRegistry | None = None) -> bytes:
    buf = bytearray()
    write_value(buf, value, registry or BinaryTypeRegistry())
    return bytes(buf)


def our_decode(data: bytes, registry: BinaryTypeRegistry | None = None) -> Any:
    return read_value(memoryview(data), 0, registry or BinaryTypeRegistry())[0]


CASES: list[tuple[str, Any, Any, Any]] = [
    # (name, pyignite type, pyignite value, our value)
    ("null", pt.Null, None, None),
    ("long", pt.LongObject, -5, -5),
    ("int", pt.IntObject, 7, h.Int(7)),
    ("short", pt.ShortObject, -3, h.Short(-3)),
    ("byte", pt.ByteObject, 9, h.Byte(9)),
    ("double", pt.DoubleObject, 2.5, 2.5),
    ("float", pt.FloatObject, 0.5, h.Float(0.5)),
    ("bool", pt.BoolObject, True, True),
    ("char", pt.CharObject, "z", h.Char("z")),
    ("string", pt.String, "привет 😀", "привет 😀"),
    ("uuid", pt.UUIDObject, uuid.UUID(int=12345678901234567890), uuid.UUID(int=12345678901234567890)),
    ("decimal", pt.DecimalObject, decimal.Decimal("-12345.678"), decimal.Decimal("-12345.678")),
    ("timestamp", pt.TimestampObject, (datetime.datetime(2021, 5, 6, 7, 8, 9, 123000, tzinfo=UTC), 0),
     datetime.datetime(2021, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)),
    ("byte[]", pt.ByteArrayObject, b"\x00\xff", b"\x00\xff"),
    ("int[]", pt.IntArrayObject, [1, -2], h.IntArray([1, -2])),
    ("long[]", pt.LongArrayObject, [1, -2], h.LongArray([1, -2])),
    ("double[]", pt.DoubleArrayObject, [0.5], h.DoubleArray([0.5])),
    ("bool[]", pt.BoolArrayObject, [True, False], h.BoolArray([True, False])),
    ("String[]", pt.StringArrayObject, ["a", None], h.StringArray(["a", None])),
    ("UUID[]", pt.UUIDArrayObject, [uuid.UUID(int=1)], h.UUIDArray([uuid.UUID(int=1)])),
    ("Collection", pt.CollectionObject, (1, [1, "a"]), [1, "a"]),
    ("HashSet", pt.CollectionObject, (3, [5]), {5}),
    ("Map", pt.MapObject, (1, {"k": 1}), {"k": 1}),
    ("LinkedHashMap", pt.MapObject, (2, {"k": 1}), h.Map(2, {"k": 1})),
    ("Object[]", pt.ObjectArrayObject, (-1, [1, "x"]), (1, "x")),
    ("enum", pt.EnumObject, (5, 2), h.Enum(5, 2)),
    ("binary enum", pt.BinaryEnumObject, (5, 2), h.BinaryEnum(5, 2)),
]


@pytest.mark.parametrize(("name", "ptype", "pvalue", "value"), CASES, ids=[c[0] for c in CASES])
def test_same_bytes_as_pyignite(name: str, ptype: Any, pvalue: Any, value: Any) -> None:
    assert ours(value) == py_encode(ptype, pvalue)


@pytest.mark.parametrize(("name", "value", "pvalue"), [
    ("long", 5, 5), ("string", "héllo", "héllo"), ("list", [1, 2], (1, [1, 2])),
    ("map", {"a": 1}, (1, {"a": 1})), ("decimal", decimal.Decimal("-0.5"), decimal.Decimal("-0.5")),
])
def test_pyignite_reads_what_we_write(name: str, value: Any, pvalue: Any) -> None:
    assert py_decode(ours(value)) == pvalue


PyPerson: Any = GenericObjectMeta("PyPerson", (), {}, type_name="Person", schema=OrderedDict(
    [("name", pt.String), ("age", pt.IntObject), ("score", pt.DoubleObject)]))


@dataclasses.dataclass
class Person:
    name: str
    age: Annotated[int, h.Int]
    score: float


@settings(max_examples=40, deadline=None)
# No NUL characters: pyignite 0.6.1 writes a String cut at its first NUL (a C-string
# copy), so its bytes differ there for its own bug; Java and this client keep the NUL.
@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300),
       st.integers(-(1 << 31), (1 << 31) - 1), st.floats(allow_nan=False))
def test_complex_objects_match_pyignite_byte_for_byte(name: str, age: int, score: float) -> None:
    reg = BinaryTypeRegistry()
    data = ours(Person(name, age, score), reg)
    theirs = py_encode(pt.BinaryObject, PyPerson(name=name, age=age, score=score))
    # pyignite switches offset width at 255/65535 where Java uses 256/65536; skip that one edge.
    if len(data) - 24 - 3 != 255:
        assert data == theirs
    assert our_decode(theirs, reg) == Person(name, age, score)


def test_ids_match_pyignite() -> None:
    from pyignite.utils import entity_id, schema_id
    assert our_type_id("Person") == entity_id("Person")
    assert our_schema_id([entity_id("name"), entity_id("age")]) == schema_id(
        OrderedDict([("name", pt.String), ("age", pt.IntObject)]))
