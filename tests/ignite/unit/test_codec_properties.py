"""Round-trip properties: writing then reading gives the value back and consumes exactly its bytes."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import math
import struct
import uuid
from typing import Annotated, Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from drivers.ignite.codec import BinaryObject, BinaryTypeRegistry, read_value, write_value
from drivers.ignite.codec import hints as h
from drivers.ignite.codec.hashing import field_id
from drivers.ignite.errors import LocalProtocolError

UTC = datetime.UTC
SETTINGS = settings(max_examples=60, deadline=None)

i8 = st.integers(-(1 << 7), (1 << 7) - 1)
i16 = st.integers(-(1 << 15), (1 << 15) - 1)
i32 = st.integers(-(1 << 31), (1 << 31) - 1)
i64 = st.integers(-(1 << 63), (1 << 63) - 1)
f32 = st.floats(width=32, allow_nan=False)
f64 = st.floats(allow_nan=False)
bmp = st.characters(max_codepoint=0xFFFF)
text = st.text(st.characters(exclude_categories=["Cs"]))
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None)
aware = st.datetimes(timezones=st.just(UTC))
ms_times = st.times().map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
scalars = st.one_of(st.none(), st.booleans(), i64, f64, text, st.binary(), st.uuids(), decimals,
                    aware, ms_times)


def roundtrip(value: Any, registry: BinaryTypeRegistry | None = None) -> Any:
    reg = registry or BinaryTypeRegistry()
    buf = bytearray(b"\xaa\xbb")  # values never start at offset 0 on the wire
    write_value(buf, value, reg)
    data = bytes(buf) + b"\xcc"
    got, end = read_value(memoryview(data), 2, reg)
    assert end == len(data) - 1
    return got


@SETTINGS
@given(scalars)
def test_scalars(v: Any) -> None:
    assert roundtrip(v) == v


@SETTINGS
@given(st.floats(allow_nan=True))
def test_doubles_bit_exact(v: float) -> None:
    got = roundtrip(v)
    assert struct.pack("<d", got) == struct.pack("<d", v) or (math.isnan(v) and math.isnan(got))


@SETTINGS
@given(decimals)
def test_decimal_keeps_its_scale(v: decimal.Decimal) -> None:
    got = roundtrip(v)
    assert got == v and got.as_tuple().exponent == v.as_tuple().exponent


@SETTINGS
@given(st.dates())
def test_dates_come_back_as_utc_midnight(v: datetime.date) -> None:
    assert roundtrip(v) == datetime.datetime(v.year, v.month, v.day, tzinfo=UTC)


@SETTINGS
@given(i64, st.integers(0, 999_999))
def test_timestamp_hint_keeps_nanoseconds_on_the_wire(ms: int, nanos: int) -> None:
    got = roundtrip(h.Timestamp(ms, nanos))
    if isinstance(got, h.Timestamp):
        assert got == h.Timestamp(ms, nanos)
    else:
        assert got == h.Timestamp(ms, nanos).to_datetime()


@SETTINGS
@given(st.one_of(i8.map(h.Byte), i16.map(h.Short), i32.map(h.Int), i64.map(h.Long),
                 f32.map(h.Float), f64.map(h.Double), bmp.map(h.Char)))
def test_number_hints(v: Any) -> None:
    assert roundtrip(v) == v.value


ARRAYS = st.one_of(
    st.lists(i8).map(h.ByteArray), st.lists(i16).map(h.ShortArray), st.lists(i32).map(h.IntArray),
    st.lists(i64).map(h.LongArray), st.lists(f32).map(h.FloatArray), st.lists(f64).map(h.DoubleArray),
    st.lists(st.booleans()).map(h.BoolArray), st.lists(bmp).map(h.CharArray),
    st.lists(st.one_of(st.none(), text)).map(h.StringArray),
    st.lists(st.one_of(st.none(), st.uuids())).map(h.UUIDArray),
    st.lists(st.one_of(st.none(), decimals)).map(h.DecimalArray),
    st.lists(st.one_of(st.none(), aware)).map(h.TimestampArray),
    st.lists(st.one_of(st.none(), ms_times)).map(h.TimeArray),
)


@SETTINGS
@given(ARRAYS)
def test_arrays(v: Any) -> None:
    got = roundtrip(v)
    expected: Any = list(v.items)
    if isinstance(v, h.ByteArray):
        expected = bytes(x & 0xFF for x in v.items)  # byte[] reads back as bytes
    assert got == expected


@SETTINGS
@given(st.lists(st.one_of(st.none(), aware)))
def test_date_array_reads_as_datetimes(items: list[Any]) -> None:
    got = roundtrip(h.DateArray(items))
    assert got == [None if x is None else x.replace(microsecond=x.microsecond // 1000 * 1000)
                   for x in items]


@SETTINGS
@given(i32.filter(bool), st.lists(st.one_of(st.none(), st.builds(h.Enum, i32.filter(bool), i32))))
def test_enums(tid: int, items: list[Any]) -> None:
    assert roundtrip(h.EnumArray(tid, items)) == items
    assert roundtrip(h.BinaryEnum(tid, 3)) == h.BinaryEnum(tid, 3)


hashable = st.one_of(st.none(), st.booleans(), i64, text, st.uuids())
nested = st.recursive(
    scalars,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.tuples(kids, kids),
                           st.dictionaries(hashable, kids, max_size=4),
                           st.frozensets(hashable, max_size=4)),
    max_leaves=12)


def _normal(v: Any) -> Any:
    """What a nested value reads back as: tuples are Object[] -> lists; sets stay sets."""
    if isinstance(v, (list, tuple)):
        return [_normal(x) for x in v]
    if isinstance(v, dict):
        return {k: _normal(x) for k, x in v.items()}
    if isinstance(v, frozenset):
        return set(v)
    return v


@SETTINGS
@given(nested)
def test_nested_containers(v: Any) -> None:
    assert roundtrip(v) == _normal(v)


@SETTINGS
@given(st.lists(hashable, max_size=5), st.sampled_from([0, 1, 2, 5]))
def test_collection_kinds(items: list[Any], kind: int) -> None:
    assert roundtrip(h.Collection(kind, items)) == items


@SETTINGS
@given(st.dictionaries(hashable, scalars, max_size=5), st.sampled_from([1, 2]))
def test_map_kinds(d: dict[Any, Any], kind: int) -> None:
    assert roundtrip(h.Map(kind, d)) == d


@dataclasses.dataclass(frozen=True)
class Row:
    id: int
    label: str | None
    score: Annotated[float, h.Float]
    blob: bytes
    when: datetime.datetime | None
    inner: Any = None


rows = st.builds(Row, i64, st.one_of(st.none(), text), f32, st.binary(max_size=300),
                 st.one_of(st.none(), aware), st.one_of(st.none(), i64, text))


@SETTINGS
@given(rows, st.booleans())
def test_dataclass_objects(row: Row, compact: bool) -> None:
    reg = BinaryTypeRegistry(compact_footer=compact)
    nested_row = dataclasses.replace(row, inner=dataclasses.replace(row, inner=None))
    assert roundtrip(nested_row, reg) == nested_row


@SETTINGS
@given(st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), scalars, max_size=6),
       st.booleans())
def test_generic_binary_objects(fields: dict[str, Any], compact: bool) -> None:
    assume(len({field_id(name) for name in fields}) == len(fields))   # colliding names: the test below
    reg = BinaryTypeRegistry(compact_footer=compact)
    obj = BinaryObject("Generic", fields)
    assert roundtrip(obj, reg) == obj


@pytest.mark.parametrize("first, second", [("wq", "y3"), ("name", "NAME")])
def test_two_fields_with_one_field_id_are_refused_naming_both(first: str, second: str) -> None:
    # Field ids are Java's String.hashCode of the lower-cased name: "wq" and "y3" both hash to 3802.
    assert field_id(first) == field_id(second)
    with pytest.raises(LocalProtocolError, match=f"'{first}' and '{second}'"):
        roundtrip(BinaryObject("Generic", {first: 1, second: 2}), BinaryTypeRegistry())
    reg = BinaryTypeRegistry()
    roundtrip(BinaryObject("Later", {first: 1}), reg)
    if first.lower() != second.lower():          # a later object of the same type, with the other name
        with pytest.raises(LocalProtocolError, match=f"'{first}' and '{second}'"):
            roundtrip(BinaryObject("Later", {second: 2}), reg)


@SETTINGS
@given(st.binary(max_size=64).filter(bool), st.integers(0, 63))
def test_wrapped_object_reads_the_inner_value(prefix: bytes, _: int) -> None:
    inner = bytearray(prefix)
    off = len(inner)
    write_value(inner, "inside", BinaryTypeRegistry())
    assert roundtrip(h.WrappedObject(bytes(inner), off)) == "inside"


def test_uuid_bits() -> None:
    u = uuid.UUID(int=(1 << 127) | 1)
    assert roundtrip(u) == u
