"""The /ws protocol without I/O: client messages to commands or errors, frames a standard parser reads back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from app.ws import protocol
from app.ws.peer import payloads_of
from app.ws.protocol import ClientError, StreamId, Subscribe, Unsubscribe


def parse_frame(data: bytes) -> Frame:
    """A server frame decoded by the websockets library's own parser."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        assert reader.at_eof(), "bytes left after the frame"
        return frame
    raise AssertionError("the parser wanted more bytes than the frame has")


@pytest.mark.parametrize(("text", "command"), [
    ('{"op":"subscribe","channel":"news"}', Subscribe("news")),
    ('{"op":"subscribe","channel":"a.b:c-d_9","since":"17-3"}', Subscribe("a.b:c-d_9", StreamId(17, 3))),
    ('{"op":"subscribe","channel":"private:x","token":"1.ab"}', Subscribe("private:x", None, "1.ab")),
    ('{"op":"unsubscribe","channel":"news"}', Unsubscribe("news")),
])
def test_valid_messages_become_commands(text: str, command: object) -> None:
    assert protocol.parse(text) == command


@pytest.mark.parametrize(("message", "code", "says"), [
    ("not json", "bad_json", "not JSON"),
    ('["subscribe"]', "bad_request", "JSON object"),
    ('{"channel":"news"}', "unknown_op", "\"op\" is missing"),
    ('{"op":"publish","channel":"news"}', "unknown_op", "unknown op 'publish'"),
    ('{"op":"subscribe"}', "bad_request", "\"channel\" is missing"),
    ('{"op":"subscribe","channel":""}', "bad_channel", "bad channel"),
    ('{"op":"subscribe","channel":"a b"}', "bad_channel", "bad channel"),
    ('{"op":"subscribe","channel":"' + "x" * 129 + '"}', "bad_channel", "1 to 128"),
    ('{"op":"subscribe","channel":7}', "bad_channel", "int"),
    ('{"op":"subscribe","channel":"n","since":"yesterday"}', "bad_since", "not a message id"),
    ('{"op":"subscribe","channel":"n","since":17}', "bad_since", "must be a message id string"),
    ('{"op":"subscribe","channel":"n","token":5}', "bad_request", "\"token\" must be a string"),
    ('{"op":"subscribe","channel":"n","extra":1}', "bad_request", "unknown fields for subscribe: extra"),
    ('{"op":"unsubscribe","channel":"n","since":"1-0"}', "bad_request", "unknown fields for unsubscribe"),
    (b'{"op":"subscribe","channel":"n"}', "bad_request", "binary frames are not supported"),
])
def test_wrong_messages_say_what_is_wrong(message: str | bytes, code: str, says: str) -> None:
    with pytest.raises(ClientError) as caught:
        protocol.parse(message)
    assert caught.value.code == code
    assert says in caught.value.message


def test_error_frames_carry_code_message_and_channel() -> None:
    payload = protocol.error(ClientError("forbidden", "token expired", "private:a"))
    assert payload == b'{"type":"error","code":"forbidden","message":"token expired","channel":"private:a"}'


def test_stream_ids_order_like_redis() -> None:
    ids = ["1-10", "2-0", "1-9", "10-0", "2-1"]
    assert [str(i) for i in sorted(StreamId.parse(t) for t in ids)] == ["1-9", "1-10", "2-0", "2-1", "10-0"]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_frames_parse_back_with_every_length_encoding(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    frame = parse_frame(protocol.frame(payload))
    assert (frame.opcode, frame.fin, frame.rsv1, frame.data) == (Opcode.TEXT, True, False, payload)
    assert payloads_of(protocol.frame(payload)) == [payload]
    assert payloads_of(protocol.frame(payload) + protocol.frame(b"next")) == [payload, b"next"]


@given(st.text(max_size=300), st.integers(0, 2**48), st.integers(0, 2**20))
def test_message_payload_is_the_json_a_client_reads(text: str, ms: int, seq: int) -> None:
    import json
    data = json.dumps({"text": text}).encode()
    raw_id = f"{ms}-{seq}".encode()
    frame = parse_frame(protocol.frame(protocol.message_payload("news", raw_id, data)))
    assert json.loads(frame.data) == {"type": "message", "channel": "news", "id": f"{ms}-{seq}",
                                      "data": {"text": text}}
