"""Byte tables: each value, the exact bytes Ignite uses for it, both ways.

Derived from ``BinaryWriterExImpl``: a type code byte, then little-endian data.
Notes on the less obvious rows:
* UUID: most significant 64 bits as a little-endian long, then the least significant.
* Decimal: int32 scale, int32 length, magnitude as ``BigInteger.toByteArray`` (big-endian,
  minimal, with a free top bit) and the sign ORed into that top bit.  -1.5 = -15e-1 ->
  scale 1, magnitude 0x0F -> 0x8F.  128 needs two bytes (0x00 0x80) because of the sign bit.
* Timestamp: int64 epoch ms, int32 nanoseconds within that millisecond.
* Collection/Map: int32 size, then the kind byte (ArrayList 1, HashSet 3, HashMap 1).
* Object[]: int32 component type id (-1 = java.lang.Object), int32 length, typed items.
"""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import pytest

from drivers.ignite.codec import BinaryTypeRegistry, read_value, write_value
from drivers.ignite.codec import hints as h
from drivers.ignite.errors import LocalProtocolError, RemoteProtocolError

UTC = datetime.UTC

VECTORS: list[tuple[str, Any, str, Any]] = [
    # (name, value written, hex bytes, value read back)
    ("null", None, "65", None),
    ("bool true", True, "0801", True),
    ("bool false", False, "0800", False),
    ("int is a Java long", 5, "04 0500000000000000", 5),
    ("negative long", -2, "04 feffffffffffffff", -2),
    ("byte", h.Byte(-1), "01 ff", -1),
    ("short", h.Short(0x1234), "02 3412", 0x1234),
    ("int", h.Int(-2), "03 feffffff", -2),
    ("long hint", h.Long(1), "04 0100000000000000", 1),
    ("float", h.Float(1.0), "05 0000803f", 1.0),
    ("double", 1.0, "06 000000000000f03f", 1.0),
    ("char", h.Char("A"), "07 4100", "A"),
    ("string", "héllo", "09 06000000 68c3a96c6c6f", "héllo"),
    ("empty string", "", "09 00000000", ""),
    ("uuid", uuid.UUID("00112233-4455-6677-8899-aabbccddeeff"),
     "0a 7766554433221100 ffeeddccbbaa9988", uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")),
    ("date", datetime.date(1970, 1, 2), "0b 005c260500000000",
     datetime.datetime(1970, 1, 2, tzinfo=UTC)),
    ("timestamp", datetime.datetime(1970, 1, 1, 0, 0, 0, 1500, tzinfo=UTC),
     "21 0100000000000000 20a10700", datetime.datetime(1970, 1, 1, 0, 0, 0, 1500, tzinfo=UTC)),
    ("timestamp hint keeps nanos", h.Timestamp(1, 123456), "21 0100000000000000 40e20100",
     datetime.datetime(1970, 1, 1, 0, 0, 0, 1123, tzinfo=UTC)),
    ("time", datetime.time(0, 0, 1, 5000), "24 ed03000000000000", datetime.time(0, 0, 1, 5000)),
    ("decimal", decimal.Decimal("-1.5"), "1e 01000000 01000000 8f", decimal.Decimal("-1.5")),
    ("decimal 128", decimal.Decimal(128), "1e 00000000 02000000 0080", decimal.Decimal(128)),
    ("decimal 0.00", decimal.Decimal("0.00"), "1e 02000000 01000000 00", decimal.Decimal("0.00")),
    ("decimal negative scale", decimal.Decimal("1E+3"), "1e fdffffff 01000000 01",
     decimal.Decimal("1E+3")),
    ("byte[]", b"\x01\x02", "0c 02000000 0102", b"\x01\x02"),
    ("short[]", h.ShortArray([1, -1]), "0d 02000000 0100ffff", [1, -1]),
    ("int[]", h.IntArray([1]), "0e 01000000 01000000", [1]),
    ("long[]", h.LongArray([2]), "0f 01000000 0200000000000000", [2]),
    ("float[]", h.FloatArray([1.0]), "10 01000000 0000803f", [1.0]),
    ("double[]", h.DoubleArray([1.0]), "11 01000000 000000000000f03f", [1.0]),
    ("char[]", h.CharArray("ab"), "12 02000000 61006200", ["a", "b"]),
    ("bool[]", h.BoolArray([True, False]), "13 02000000 0100", [True, False]),
    ("String[]", h.StringArray(["a", None]), "14 02000000 0901000000 61 65", ["a", None]),
    ("UUID[]", h.UUIDArray([uuid.UUID(int=1)]), "15 01000000 0a 0000000000000000 0100000000000000",
     [uuid.UUID(int=1)]),
    ("Date[]", h.DateArray([h.Date(0)]), "16 01000000 0b 0000000000000000",
     [datetime.datetime(1970, 1, 1, tzinfo=UTC)]),
    ("Object[] from tuple", (1,), "17 ffffffff 01000000 04 0100000000000000", [1]),
    ("Object[] with a type id", h.ObjectArray([None], 7), "17 07000000 01000000 65", [None]),
    ("list is an ArrayList", [1], "18 01000000 01 04 0100000000000000", [1]),
    ("set is a HashSet", {True}, "18 01000000 03 0801", {True}),
    ("linked list", h.Collection(2, ["a"]), "18 01000000 02 09 01000000 61", ["a"]),
    ("dict is a HashMap", {"k": None}, "19 01000000 01 09 01000000 6b 65", {"k": None}),
    ("linked hash map", h.Map(2, {1: 2}),
     "19 01000000 02 04 0100000000000000 04 0200000000000000", {1: 2}),
    ("wrapped object", h.WrappedObject(bytes.fromhex("0401000000 00000000"), 0),
     "1b 09000000 040100000000000000 00000000", 1),
    ("enum", h.Enum(5, 2), "1c 05000000 02000000", h.Enum(5, 2)),
    ("enum[]", h.EnumArray(5, [h.Enum(5, 1), None]), "1d 05000000 02000000 1c0500000001000000 65",
     [h.Enum(5, 1), None]),
    ("Decimal[]", h.DecimalArray([decimal.Decimal(1)]), "1f 01000000 1e 00000000 01000000 01",
     [decimal.Decimal(1)]),
    ("Timestamp[]", h.TimestampArray([h.Timestamp(0, 0)]), "22 01000000 21 0000000000000000 00000000",
     [datetime.datetime(1970, 1, 1, tzinfo=UTC)]),
    ("Time[]", h.TimeArray([datetime.time(0, 0, 0, 1000)]), "25 01000000 24 0100000000000000",
     [datetime.time(0, 0, 0, 1000)]),
    ("binary enum", h.BinaryEnum(-3, 0), "26 fdffffff 00000000", h.BinaryEnum(-3, 0)),
]


@pytest.mark.parametrize(("name", "value", "hexbytes", "back"), VECTORS, ids=[v[0] for v in VECTORS])
def test_writes_exact_bytes(name: str, value: Any, hexbytes: str, back: Any) -> None:
    buf = bytearray()
    write_value(buf, value, BinaryTypeRegistry())
    assert buf.hex() == hexbytes.replace(" ", "")


@pytest.mark.parametrize(("name", "value", "hexbytes", "back"), VECTORS, ids=[v[0] for v in VECTORS])
def test_reads_exact_bytes(name: str, value: Any, hexbytes: str, back: Any) -> None:
    data = bytes.fromhex(hexbytes.replace(" ", "")) + b"\xee"  # trailing byte must stay unread
    got, end = read_value(memoryview(data), 0, BinaryTypeRegistry())
    assert got == back
    assert type(got) is type(back)
    assert end == len(data) - 1


@pytest.mark.parametrize(("hexbytes", "back"), [
    ("03 2a000000", 42),                       # Java int -> int
    ("05 0000c03f", 1.5),                      # Java float -> float
    ("17 00000000 09 03000000 466f6f 00000000", []),   # Object[] of an unregistered class: name follows
    ("18 00000000 05", []),                    # SingletonList kind
    ("19 00000000 00", {}),                    # Map of kind USER_COL reads as a HashMap
    ("1c 00000000 09 01000000 45 03000000", h.Enum(0, 3)),  # enum of an unregistered class
    ("0b 0000000000000080", h.Date(-(1 << 63))),          # outside datetime's range: the hint
    ("24 0080ee3600000000", h.Time(0x36ee8000 + 0)),      # 24h: not a time of day
])
def test_reads_java_only_forms(hexbytes: str, back: Any) -> None:
    data = bytes.fromhex(hexbytes.replace(" ", ""))
    got, end = read_value(memoryview(data), 0, BinaryTypeRegistry())
    assert got == back
    assert end == len(data)


def test_reads_a_handle_as_the_earlier_value() -> None:
    # Collection [s, handle->s]: the handle at offset 15 points 9 bytes back to the String at 6.
    s = bytes.fromhex("09 01000000 61".replace(" ", ""))
    data = bytes.fromhex("18 02000000 01".replace(" ", "")) + s + bytes.fromhex("66 06000000")
    got, end = read_value(memoryview(data), 0, BinaryTypeRegistry())
    assert got == ["a", "a"]
    assert end == len(data)


@pytest.mark.parametrize(("value", "words"), [
    (1 << 63, "long"),
    (h.Int(1 << 31), "Int"),
    (h.Char("ab"), "char"),
    (datetime.timedelta(1), "timedelta"),
    (object(), "object"),
    (decimal.Decimal("NaN"), "NaN"),
    ("\ud800", "str"),
    (h.Timestamp(0, 1_000_000), "nanos"),
])
def test_unencodable_values_raise_local_protocol_error(value: Any, words: str) -> None:
    with pytest.raises(LocalProtocolError, match=words):
        write_value(bytearray(), value, BinaryTypeRegistry())


@pytest.mark.parametrize(("hexbytes", "words"), [
    ("", "ends"),
    ("63", "unknown type code 99"),
    ("04 0100", "offset 0"),
    ("09 ffffffff", "negative string length"),
    ("09 05000000 6162", "runs past the end"),
    ("09 02000000 c328", "UTF-8"),
    ("0e ffffff7f", "past the end"),
    ("18 01000000 09", "invalid collection kind 9"),
    ("1e 00000000 00000000", "empty magnitude"),
    ("66 00000000", "handle"),
    ("20 00000000", "Java-only"),
])
def test_bad_bytes_raise_remote_protocol_error(hexbytes: str, words: str) -> None:
    with pytest.raises(RemoteProtocolError, match=words):
        read_value(memoryview(bytes.fromhex(hexbytes.replace(" ", ""))), 0, BinaryTypeRegistry())


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    data = bytes.fromhex("18 01000000 01".replace(" ", "")) * 5000 + b"\x65"
    with pytest.raises(RemoteProtocolError, match="nested deeper"):
        read_value(memoryview(data), 0, BinaryTypeRegistry())
