"""Codec micro-benchmark for the Ignite client: encode/decode cost with no I/O at all.

    .venv/bin/python bench/ignite_codec.py [--seconds 0.5]

Prints nanoseconds per operation for: building a put request (cache header + key + small
value, one contiguous frame), parsing a put reply, and encoding/decoding a 100-entry
get_all reply.  End-to-end benchmarks live elsewhere; this one isolates the codec.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.ignite.codec import BinaryTypeRegistry, write_value
from drivers.ignite.codec.hashing import cache_id
from drivers.ignite.protocol import messages
from drivers.ignite.protocol.constants import OpCode, ProtocolVersion
from drivers.ignite.protocol.framing import FrameReader, begin_request, finish_frame, parse_response

V17 = ProtocolVersion(1, 7, 0)


def bench(name: str, fn: Callable[[], object], seconds: float) -> None:
    n = 1
    while True:  # calibrate to ~seconds
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        dt = time.perf_counter_ns() - t0
        if dt > seconds * 1e9 / 4:
            break
        n *= 2
    best = min(_run(fn, n) for _ in range(3))
    print(f"{name:<44} {best / n:>10.0f} ns/op   ({n} ops/run)")


def _run(fn: Callable[[], object], n: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return time.perf_counter_ns() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=0.5)
    seconds = ap.parse_args().seconds
    reg = BinaryTypeRegistry()
    cid = cache_id("bench")
    value = "v" * 100

    def encode_put() -> bytearray:
        buf = begin_request(OpCode.CACHE_PUT, 12345)
        messages.cache_header(buf, cid)
        write_value(buf, 42, reg)
        write_value(buf, value, reg)
        return finish_frame(buf)

    reply = b"\x0a\x00\x00\x00" + (12345).to_bytes(8, "little") + b"\x00\x00"
    reader = FrameReader()

    def decode_put_reply() -> object:
        (frame,) = reader.feed(reply)
        return parse_response(frame, V17)

    entries = {i: f"value-{i:04d}-" + "x" * 20 for i in range(100)}

    def encode_get_all_reply() -> bytes:
        buf = bytearray(b"\x00" * 14)
        buf += len(entries).to_bytes(4, "little")
        for k, v in entries.items():
            write_value(buf, k, reg)
            write_value(buf, v, reg)
        return bytes(buf)

    body = encode_get_all_reply()
    frame_bytes = (len(body) - 4).to_bytes(4, "little") + body[4:]

    def decode_get_all_reply() -> object:
        (frame,) = reader.feed(frame_bytes)
        header = parse_response(frame, V17)
        return messages.decode_get_all(frame, header.payload_offset, reg)

    print(f"ignite codec micro-benchmark (Python {sys.version.split()[0]})")
    bench("put request: encode (int key, 100-char str)", encode_put, seconds)
    bench("put reply: frame + parse header", decode_put_reply, seconds)
    bench("get_all reply, 100 entries: encode", encode_get_all_reply, seconds)
    bench("get_all reply, 100 entries: frame + decode", decode_get_all_reply, seconds)


if __name__ == "__main__":
    main()
