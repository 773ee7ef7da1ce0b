"""Complex objects (103): layout, footers, registry, and the unknown-type signal."""

from __future__ import annotations

import dataclasses
import struct
from typing import Annotated, Any

import pytest

from drivers.ignite.codec import (
    BinaryField,
    BinaryObject,
    BinaryType,
    BinaryTypeRegistry,
    TypeCode,
    UnknownBinaryTypes,
    read_value,
    read_values,
    write_value,
)
from drivers.ignite.codec import hints as h
from drivers.ignite.codec.binary import (
    FLAG_COMPACT_FOOTER,
    FLAG_HAS_RAW,
    FLAG_HAS_SCHEMA,
    FLAG_OFFSET_ONE_BYTE,
    FLAG_OFFSET_TWO_BYTES,
    FLAG_USER_TYPE,
)
from drivers.ignite.codec.hashing import binary_object_hash, field_id, schema_id, type_id
from drivers.ignite.errors import RemoteProtocolError

HEADER = struct.Struct("<BBhiiiii")


@dataclasses.dataclass
class Person:
    name: str
    age: Annotated[int, h.Int]
    tags: list[str] | None = None


def _encode(value: Any, registry: BinaryTypeRegistry) -> bytes:
    buf = bytearray()
    write_value(buf, value, registry)
    return bytes(buf)


def test_person_layout_with_compact_footer() -> None:
    data = _encode(Person("bob", 42), BinaryTypeRegistry())
    code, ver, flags, tid, hsh, length, sid, soff = HEADER.unpack_from(data)
    assert (code, ver) == (103, 1)
    assert flags == FLAG_USER_TYPE | FLAG_HAS_SCHEMA | FLAG_COMPACT_FOOTER | FLAG_OFFSET_ONE_BYTE
    assert tid == type_id("Person")
    assert sid == schema_id([field_id("name"), field_id("age"), field_id("tags")])
    assert length == len(data)
    # fields: "bob" (8 bytes) at 24, Int(42) (5 bytes) at 32, null at 37; footer at 38.
    assert data[24:38] == bytes.fromhex("0903000000626f62 032a000000 65".replace(" ", ""))
    assert soff == 38
    assert data[38:] == bytes([24, 32, 37])
    assert hsh == binary_object_hash(data[24:38])


def test_full_footer_carries_field_ids() -> None:
    data = _encode(Person("bob", 42), BinaryTypeRegistry(compact_footer=False))
    flags = HEADER.unpack_from(data)[2]
    assert not flags & FLAG_COMPACT_FOOTER
    footer = struct.unpack_from("<iBiBiB", data, 38)
    assert footer == (field_id("name"), 24, field_id("age"), 32, field_id("tags"), 37)
    # A reader that never saw the class still decodes it, given the names (metadata).
    reader = BinaryTypeRegistry()
    reader.register_type(BinaryType(type_id("Person"), "Person", None, (
        BinaryField("name", 9, field_id("name")), BinaryField("age", 3, field_id("age")),
        BinaryField("tags", 24, field_id("tags")))))
    obj, _ = read_value(memoryview(data), 0, reader)
    assert obj == BinaryObject("Person", {"name": "bob", "age": 42, "tags": None})


@pytest.mark.parametrize(("size", "flag", "width"), [
    (200, FLAG_OFFSET_ONE_BYTE, 1),
    (300, FLAG_OFFSET_TWO_BYTES, 2),
    (70000, 0, 4),
])
def test_offset_width_follows_the_last_offset(size: int, flag: int, width: int) -> None:
    reg = BinaryTypeRegistry()
    obj = BinaryObject("Blob", {"a": b"x" * size, "b": 1})
    data = _encode(obj, reg)
    flags = HEADER.unpack_from(data)[2]
    assert flags & (FLAG_OFFSET_ONE_BYTE | FLAG_OFFSET_TWO_BYTES) == flag
    soff = HEADER.unpack_from(data)[7]
    assert len(data) - soff == 2 * width
    back, end = read_value(memoryview(data), 0, reg)
    assert back == obj and end == len(data)


def test_object_without_fields() -> None:
    @dataclasses.dataclass
    class Empty:
        pass
    reg = BinaryTypeRegistry()
    data = _encode(Empty(), reg)
    _, _, flags, _, hsh, length, sid, soff = HEADER.unpack_from(data)
    assert (length, sid, soff, hsh) == (24, 0, 0, 1)
    assert not flags & FLAG_HAS_SCHEMA
    assert read_value(memoryview(data), 0, reg)[0] == Empty()


def test_dataclass_round_trip_and_pending_metadata() -> None:
    reg = BinaryTypeRegistry()
    p = Person("ann", 7, ["x", "y"])
    data = _encode(p, reg)
    assert read_value(memoryview(data), 0, reg)[0] == p
    (meta,) = reg.pending_types()
    assert meta.type_name == "Person"
    assert [(f.name, f.type_code) for f in meta.fields] == [
        ("name", TypeCode.STRING), ("age", TypeCode.INT), ("tags", TypeCode.COLLECTION)]
    assert meta.schemas == ((HEADER.unpack_from(data)[6], tuple(f.field_id for f in meta.fields)),)
    reg.mark_sent([meta.type_id])
    assert reg.pending_types() == []


def test_plain_int_in_an_int_field_is_written_as_java_int() -> None:
    data = _encode(Person("a", 5), BinaryTypeRegistry())
    assert data[24 + 6] == TypeCode.INT  # after String "a" (6 bytes)


def test_custom_type_name() -> None:
    reg = BinaryTypeRegistry()
    reg.register_class(Person, "com.example.Person")
    assert HEADER.unpack_from(_encode(Person("a", 1), reg))[3] == type_id("com.example.Person")


def test_raw_data_section_is_kept() -> None:
    # A Java-written object: field "a" = Int(1) at 24, raw bytes 'RAW', footer, raw offset.
    body = bytes.fromhex("0301000000") + b"RAW"
    flags = FLAG_USER_TYPE | FLAG_HAS_SCHEMA | FLAG_HAS_RAW | FLAG_OFFSET_ONE_BYTE
    footer = struct.pack("<iB", field_id("a"), 24) + struct.pack("<i", 29)
    tid = type_id("R")
    total = 24 + len(body) + len(footer)
    data = HEADER.pack(103, 1, flags, tid, binary_object_hash(body), total,
                       schema_id([field_id("a")]), 24 + len(body)) + body + footer
    reg = BinaryTypeRegistry()
    reg.register_type(BinaryType(tid, "R", None, (BinaryField("a", 3, field_id("a")),)))
    obj, end = read_value(memoryview(data), 0, reg)
    assert obj == BinaryObject("R", {"a": 1}, raw=b"RAW")
    assert end == total


def test_unknown_types_are_collected_across_a_payload_before_raising() -> None:
    writer = BinaryTypeRegistry()
    buf = bytearray()
    write_value(buf, BinaryObject("A", {"x": 1}), writer)
    write_value(buf, [BinaryObject("B", {"y": BinaryObject("C", {})})], writer)
    write_value(buf, "after", writer)
    reader = BinaryTypeRegistry()
    with pytest.raises(UnknownBinaryTypes) as info:
        read_values(memoryview(bytes(buf)), 0, 3, reader)
    assert info.value.type_ids == frozenset({type_id("A"), type_id("B")})
    # After registering what the server returns for them, the same bytes decode.
    for meta in writer.pending_types():
        reader.register_type(meta)
    values, end = read_values(memoryview(bytes(buf)), 0, 3, reader)
    assert values[0] == BinaryObject("A", {"x": 1})
    assert values[1][0].fields["y"] == BinaryObject("C", {})
    assert values[2] == "after" and end == len(buf)


def test_compact_footer_needs_the_schema() -> None:
    writer = BinaryTypeRegistry()
    data = _encode(BinaryObject("S", {"a": 1}), writer)
    reader = BinaryTypeRegistry()
    meta = writer.pending_types()[0]
    reader.register_type(dataclasses.replace(meta, schemas=()))
    with pytest.raises(UnknownBinaryTypes):
        read_value(memoryview(data), 0, reader)


def test_generic_object_hashes_by_its_java_hash() -> None:
    reg = BinaryTypeRegistry()
    data = _encode(BinaryObject("K", {"id": 1}), reg)
    obj = read_value(memoryview(data), 0, reg)[0]
    assert obj.java_hash_code == HEADER.unpack_from(data)[4]
    assert {obj: 1}[obj] == 1


@pytest.mark.parametrize(("patch", "words"), [
    ((20, "<i", 2), "schema offset"),
    ((12, "<i", 10), "length"),
    ((12, "<i", 1000), "past the end"),
    ((1, "<B", 2), "version"),
])
def test_corrupt_headers_raise_remote_protocol_error(patch: tuple[int, str, int], words: str) -> None:
    reg = BinaryTypeRegistry()
    data = bytearray(_encode(Person("bob", 1), reg))
    off, fmt, value = patch
    struct.pack_into(fmt, data, off, value)
    with pytest.raises(RemoteProtocolError, match=words):
        read_value(memoryview(bytes(data)), 0, reg)
