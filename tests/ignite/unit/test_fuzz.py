"""Garbage in, ``RemoteProtocolError`` out: random, truncated and bit-flipped frames never leak
IndexError, struct.error, UnicodeDecodeError, RecursionError or anything else."""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.ignite.codec import BinaryObject, BinaryTypeRegistry, UnknownBinaryTypes, write_value
from drivers.ignite.codec import hints as h
from drivers.ignite.codec.reader import read_value
from drivers.ignite.errors import RemoteProtocolError
from drivers.ignite.protocol import messages as m
from drivers.ignite.protocol.constants import Feature, ProtocolVersion, features_mask
from drivers.ignite.protocol.framing import FrameReader, parse_response
from drivers.ignite.protocol.handshake import decode_handshake_reply

V17 = ProtocolVersion(1, 7, 0)
V12 = ProtocolVersion(1, 2, 0)
ALLOWED = (RemoteProtocolError, UnknownBinaryTypes)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclasses.dataclass
class Item:
    id: int
    name: str
    tags: list[Any]


def _registry() -> BinaryTypeRegistry:
    reg = BinaryTypeRegistry()
    reg.register_class(Item)
    return reg


leaf = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1), st.floats(),
                 st.text(max_size=20), st.binary(max_size=20), st.uuids(), st.decimals(
                     allow_nan=False, allow_infinity=False), st.datetimes(),
                 st.builds(h.Int, st.integers(-(1 << 31), (1 << 31) - 1)),
                 st.builds(h.Enum, st.integers(1, 99), st.integers(0, 9)))
values = st.recursive(leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=3), st.tuples(kids), st.dictionaries(st.text(max_size=5), kids, max_size=3),
    st.builds(Item, st.integers(0, 99), st.text(max_size=8), st.lists(kids, max_size=2)),
    st.builds(lambda d: BinaryObject("Gen", d), st.dictionaries(
        st.sampled_from(["a", "b", "c"]), kids, max_size=3))), max_leaves=10)


def _response(reg: BinaryTypeRegistry, payload_values: list[Any], flags: int) -> bytes:
    body = bytearray(struct.pack("<qh", 1, flags))
    if flags & 2:
        body += struct.pack("<qi", 5, 0)
    if flags & 4:
        body += struct.pack("<h", 2007)
    if flags & 1:
        body += struct.pack("<i", 1) + b"\x09\x03\x00\x00\x00err"
    for v in payload_values:
        write_value(body, v, reg)
    return struct.pack("<i", len(body)) + bytes(body)


@st.composite
def mangled_streams(draw: st.DrawFn) -> bytes:
    reg = _registry()
    frames = b"".join(_response(reg, draw(st.lists(values, max_size=3)), draw(st.integers(0, 7)))
                      for _ in range(draw(st.integers(1, 3))))
    data = bytearray(frames)
    how = draw(st.sampled_from(["flip", "truncate", "splice", "random", "flip-many"]))
    if how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "flip-many" and data:
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
    elif how == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif how == "splice" and data:
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(max_size=16))
    elif how == "random":
        data = bytearray(draw(st.binary(max_size=200)))
    return bytes(data)


def _drain(frame: memoryview, pos: int, reg: BinaryTypeRegistry) -> None:
    while pos < len(frame):
        _, pos = read_value(frame, pos, reg)


def _only_allowed(fn: Callable[[], object]) -> None:
    try:
        fn()
    except ALLOWED:
        pass


@FUZZ
@given(mangled_streams(), st.integers(1, 64))
def test_mangled_streams_only_raise_protocol_errors(stream: bytes, chunk: int) -> None:
    reg = _registry()
    reader = FrameReader(max_frame=1 << 16)
    try:
        for i in range(0, len(stream), chunk):
            for frame in reader.feed(stream[i:i + chunk]):
                for version in (V17, V12):
                    try:
                        header = parse_response(frame, version)
                    except RemoteProtocolError:
                        continue
                    try:
                        _drain(frame, header.payload_offset, reg)
                    except ALLOWED:
                        pass
    except RemoteProtocolError:
        pass


DECODERS: list[Callable[[memoryview, BinaryTypeRegistry], object]] = [
    lambda f, r: m.decode_get_all(f, 0, r),
    lambda f, r: m.decode_sql_fields(f, 0, r, True),
    lambda f, r: m.decode_sql_fields_page(f, 0, r, 3),
    lambda f, r: m.decode_scan(f, 0, r),
    lambda f, r: m.decode_scan_page(f, 0, r),
    lambda f, r: m.decode_binary_type_reply(f, 0),
    lambda f, r: m.decode_cache_partitions(f, 0, features_mask(Feature.ALL_AFFINITY_MAPPINGS)),
    lambda f, r: m.decode_cache_partitions(f, 0),
    lambda f, r: m.decode_cache_config(f, 0, V17, r),
    lambda f, r: m.decode_cluster_state(f, 0),
    lambda f, r: decode_handshake_reply(f, V17),
    lambda f, r: decode_handshake_reply(f, ProtocolVersion(1, 0, 0)),
]


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(range(len(DECODERS))))
def test_payload_decoders_on_random_bytes(data: bytes, which: int) -> None:
    _only_allowed(lambda: DECODERS[which](memoryview(data), _registry()))


@FUZZ
@given(st.lists(values, min_size=1, max_size=4), st.data())
def test_payload_decoders_on_flipped_valid_pages(rows: list[Any], data: st.DataObject) -> None:
    reg = _registry()
    body = bytearray(struct.pack("<qi", 9, len(rows)))
    for v in rows:
        write_value(body, v, reg)
        write_value(body, v, reg)
    body += b"\x01"
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] ^= 1 << data.draw(st.integers(0, 7))
    frame = memoryview(bytes(body))
    _only_allowed(lambda: m.decode_scan(frame, 0, reg))
    _only_allowed(lambda: m.decode_get_all(frame, 8, reg))
