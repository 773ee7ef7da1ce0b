"""Frames, request headers, response headers and the handshake, as byte tables."""

from __future__ import annotations

import struct
import uuid

import pytest

from drivers.ignite.errors import LocalProtocolError, RemoteProtocolError
from drivers.ignite.protocol.constants import (
    CLIENT_FEATURES,
    Feature,
    ProtocolVersion,
    ResponseFlag,
    features_intersection,
    features_mask,
    has_feature,
)
from drivers.ignite.protocol.framing import (
    FrameReader,
    begin_request,
    encode_request,
    finish_frame,
    parse_response,
)
from drivers.ignite.protocol.handshake import (
    HandshakeAccepted,
    HandshakeRejected,
    decode_handshake_reply,
    encode_handshake,
)

V14 = ProtocolVersion(1, 4, 0)
V17 = ProtocolVersion(1, 7, 0)
V13 = ProtocolVersion(1, 3, 0)


def frame(body: bytes) -> bytes:
    return struct.pack("<i", len(body)) + body


BODIES = [b"", b"a", b"hello world", bytes(range(256)) * 3, b"\x00\x00\x00\x00"]
STREAM = b"".join(frame(b) for b in BODIES)


def test_frames_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        r = FrameReader()
        got = [bytes(f) for f in r.feed(STREAM[:cut])] + [bytes(f) for f in r.feed(STREAM[cut:])]
        assert got == BODIES, cut
        assert r.pending_bytes == 0


def test_frames_fed_one_byte_at_a_time() -> None:
    r = FrameReader()
    got = []
    for i in range(len(STREAM)):
        got += [bytes(f) for f in r.feed(STREAM[i:i + 1])]
        if i < 3:
            assert r.pending_bytes == i + 1
    assert got == BODIES


def test_many_frames_in_one_feed_and_a_partial_tail() -> None:
    r = FrameReader()
    data = frame(b"x") * 1000 + frame(b"tail")[:6]
    frames = r.feed(data)
    assert len(frames) == 1000 and all(bytes(f) == b"x" for f in frames)
    assert r.pending_bytes == 6
    assert [bytes(f) for f in r.feed(b"il")] == [b"tail"]


def test_frames_stay_valid_after_more_feeding() -> None:
    r = FrameReader()
    first = r.feed(frame(b"one") + frame(b"two")[:-1])
    more = r.feed(b"o" + frame(b"three"))
    assert [bytes(f) for f in first + more] == [b"one", b"two", b"three"]


def test_large_frame_in_small_chunks_is_linear() -> None:
    body = b"z" * 2_000_000
    data = frame(body)
    r = FrameReader()
    out = []
    for i in range(0, len(data), 1000):
        out += r.feed(data[i:i + 1000])
    assert len(out) == 1 and bytes(out[0]) == body


@pytest.mark.parametrize("length", [-1, -(1 << 31), 1025])
def test_bad_lengths_raise_naming_the_length(length: int) -> None:
    r = FrameReader(max_frame=1024)
    with pytest.raises(RemoteProtocolError, match=str(length)):
        r.feed(struct.pack("<i", length) + b"abc")


def test_oversized_length_is_seen_before_the_body_arrives() -> None:
    r = FrameReader(max_frame=10)
    r.feed(frame(b"ok")[:3])
    with pytest.raises(RemoteProtocolError, match="1000"):
        r.feed(b"\x00" + frame(b"ok")[4:] + struct.pack("<i", 1000))


def test_request_buffer_is_one_contiguous_frame() -> None:
    buf = begin_request(1000, 7)
    buf += b"payload"
    assert finish_frame(buf) == bytearray(
        struct.pack("<ihq", 2 + 8 + 7, 1000, 7) + b"payload")
    assert encode_request(1, 2) == struct.pack("<ihq", 10, 1, 2)
    with pytest.raises(LocalProtocolError):
        begin_request(1 << 20, 1)


def test_response_ok_14() -> None:
    h = parse_response(memoryview(struct.pack("<qh", 9, 0) + b"PAY"), V14)
    assert h == (9, 0, 0, None, None, None, 10)


def test_response_error_14() -> None:
    body = struct.pack("<qhi", 9, 1, 1000) + b"\x09\x04\x00\x00\x00oops"
    h = parse_response(memoryview(body), V14)
    assert (h.request_id, h.status, h.error_message, h.payload_offset) == (9, 1000, "oops", len(body))


def test_response_topology_changed_and_notification() -> None:
    body = struct.pack("<qhqih", 3, 6, 12, 1, 2007) + b"EV"
    h = parse_response(memoryview(body), V17)
    assert h.flags == ResponseFlag.AFFINITY_TOPOLOGY_CHANGED | ResponseFlag.NOTIFICATION
    assert h.topology == (12, 1) and h.notification_op == 2007 and h.payload_offset == 24


def test_response_pre_14_layout() -> None:
    ok = parse_response(memoryview(struct.pack("<qi", 5, 0) + b"P"), V13)
    assert (ok.status, ok.flags, ok.payload_offset) == (0, 0, 12)
    bad = parse_response(memoryview(struct.pack("<qi", 5, 1001) + b"\x09\x01\x00\x00\x00x"), V13)
    assert (bad.status, bad.flags, bad.error_message) == (1001, ResponseFlag.ERROR, "x")


@pytest.mark.parametrize("body", [b"", b"\x01" * 9, struct.pack("<qh", 1, 2) + b"\x00" * 5,
                                  struct.pack("<qhi", 1, 1, 5) + b"\x09\x09\x00\x00\x00ab"])
def test_truncated_response_headers(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_response(memoryview(body), V17)


def test_feature_masks() -> None:
    assert features_mask(Feature.CLUSTER_STATES, Feature.HEARTBEAT) == bytes([0b100, 0b1000])
    assert has_feature(CLIENT_FEATURES, Feature.HEARTBEAT)
    assert has_feature(CLIENT_FEATURES, Feature.CLUSTER_STATES)
    assert not has_feature(CLIENT_FEATURES, Feature.USER_ATTRIBUTES)
    assert not has_feature(CLIENT_FEATURES, Feature.SERVICE_MAPPINGS)
    assert features_intersection(b"\xff\x0f", b"\x05") == b"\x05"


def test_handshake_17_with_features_and_utf8_credentials() -> None:
    got = encode_handshake(V17, b"\x04\x08", "jörg", "pw")
    body = (b"\x01" + struct.pack("<hhh", 1, 7, 0) + b"\x02" + b"\x0c\x02\x00\x00\x00\x04\x08"
            + b"\x09\x05\x00\x00\x00j\xc3\xb6rg" + b"\x09\x02\x00\x00\x00pw")
    assert got == frame(body)


def test_handshake_10_is_bare() -> None:
    assert encode_handshake(ProtocolVersion(1, 0, 0), None, None, None) == frame(
        b"\x01\x01\x00\x00\x00\x00\x00\x02")
    with pytest.raises(LocalProtocolError):
        encode_handshake(ProtocolVersion(1, 0, 0), None, "u", "p")


def test_handshake_with_user_attributes_bit_sends_an_empty_map() -> None:
    got = encode_handshake(V17, b"\x01", None, None)
    assert got.endswith(b"\x0c\x01\x00\x00\x00\x01" + b"\x19\x00\x00\x00\x00\x01")


def test_handshake_accepted_17() -> None:
    node = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")
    body = (b"\x01\x0c\x02\x00\x00\x00\xff\x01" + b"\x0a"
            + bytes.fromhex("7766554433221100ffeeddccbbaa9988"))
    assert decode_handshake_reply(memoryview(body), V17) == HandshakeAccepted(b"\xff\x01", node)
    assert decode_handshake_reply(memoryview(b"\x01"), ProtocolVersion(1, 2, 0)) == \
        HandshakeAccepted(b"", None)


def test_handshake_rejected() -> None:
    body = b"\x00" + struct.pack("<hhh", 1, 6, 0) + b"\x09\x03\x00\x00\x00bad" + struct.pack("<i", 1)
    assert decode_handshake_reply(memoryview(body), V17) == HandshakeRejected(
        ProtocolVersion(1, 6, 0), "bad", 1)
    # Before 1.1 the server sends no code.
    old = decode_handshake_reply(memoryview(body[:-4]), ProtocolVersion(1, 0, 0))
    assert isinstance(old, HandshakeRejected) and old.code is None


@pytest.mark.parametrize("body", [b"", b"\x02", b"\x00\x01", b"\x01\x0c\x05\x00\x00\x00ab",
                                  b"\x01\x0c\x00\x00\x00\x00\x0a\x01"])
def test_bad_handshake_replies(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_handshake_reply(memoryview(body), V17)
