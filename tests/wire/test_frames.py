"""Frames: 3-byte length framing, the two intro forms, incremental reassembly and limits."""

from __future__ import annotations

import random

import pytest

from evolink.wire.errors import FrameError, WireError
from evolink.wire.frames import (
    INTRO_HEADER,
    MAX_FRAME_SIZE,
    FrameReader,
    ServerFrameReader,
    client_intro,
    encode_frame,
)


def chunks(data: bytes, rng: random.Random) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 1, 2, 3, 5, 64, 1000, len(data)])
        out.append(data[pos : pos + step])
        pos += step
    return out


def test_constants() -> None:
    assert INTRO_HEADER == bytes([0x57, 0x41, 0x06, 0x03])
    assert MAX_FRAME_SIZE == (1 << 24) - 1


def test_encode_frame() -> None:
    assert encode_frame(b"") == b"\x00\x00\x00"
    assert encode_frame(b"abc") == b"\x00\x00\x03abc"
    assert encode_frame(bytes(0x010203)) [:3] == b"\x01\x02\x03"  # fmt: skip
    assert len(encode_frame(bytes(MAX_FRAME_SIZE))) == MAX_FRAME_SIZE + 3
    with pytest.raises(FrameError):
        encode_frame(bytes(MAX_FRAME_SIZE + 1))


def test_client_intro_forms() -> None:
    assert client_intro() == INTRO_HEADER
    assert client_intro(b"") == INTRO_HEADER  # Baileys only uses the ED form with routing info
    routing = bytes(range(10))
    # Same layout Baileys' makeNoiseHandler writes: "ED", 0, 1, len>>16, len&0xffff BE, info, header
    assert client_intro(routing) == b"ED\x00\x01\x00\x00\x0a" + routing + INTRO_HEADER
    assert client_intro(bytes(70000))[4:7] == b"\x01\x11\x70"


def test_reader_returns_frames_in_order_for_any_chunking() -> None:
    rng = random.Random(99)
    payloads = [rng.randbytes(rng.choice([0, 1, 2, 3, 100, 4000])) for _ in range(60)]
    stream = b"".join(encode_frame(p) for p in payloads)
    for _ in range(50):
        reader = FrameReader()
        got: list[bytes] = []
        for piece in chunks(stream, rng):
            got.extend(reader.feed(piece))
        assert got == payloads
        assert reader.buffered == 0


def test_reader_byte_by_byte_and_partial_header() -> None:
    reader = FrameReader()
    data = encode_frame(b"hello") + encode_frame(b"")
    got: list[bytes] = []
    for i in range(len(data)):
        got.extend(reader.feed(data[i : i + 1]))
        if i < 7:
            assert got == []
    assert got == [b"hello", b""]
    reader.feed(b"\x00\x00")
    assert reader.buffered == 2
    assert reader.feed(b"") == []
    assert reader.feed(b"\x01z") == [b"z"]


def test_reader_enforces_max_size_and_stays_poisoned() -> None:
    reader = FrameReader(max_size=100)
    assert reader.feed(encode_frame(bytes(100))) == [bytes(100)]
    with pytest.raises(FrameError, match="exceeds"):
        reader.feed(b"\x00\x00\x65")  # 101, refused as soon as the header is complete
    with pytest.raises(FrameError):
        reader.feed(encode_frame(b"ok"))
    with pytest.raises(ValueError):
        FrameReader(max_size=MAX_FRAME_SIZE + 1)


def test_reader_oversize_header_split() -> None:
    reader = FrameReader(max_size=10)
    assert reader.feed(b"\xff") == []
    with pytest.raises(WireError):
        reader.feed(b"\xff\xff")


def _server_read(stream: bytes, rng: random.Random, **kwargs: int) -> tuple[ServerFrameReader, list[bytes]]:
    reader = ServerFrameReader(**kwargs)
    got: list[bytes] = []
    for piece in chunks(stream, rng):
        got.extend(reader.feed(piece))
    return reader, got


@pytest.mark.parametrize("routing", [None, b"\x08\x02\x08\x05", bytes(range(200))])
def test_server_reader_both_intro_forms_any_split(routing: bytes | None) -> None:
    frames = [b"hello-frame", b"", b"x" * 300]
    stream = client_intro(routing) + b"".join(encode_frame(f) for f in frames)
    for split in range(1, len(stream)):  # every two-piece split
        reader = ServerFrameReader()
        got = reader.feed(stream[:split]) + reader.feed(stream[split:])
        assert got == frames
        assert reader.routing_info == routing
        assert reader.intro_done
    rng = random.Random(5)
    for _ in range(30):
        reader, got = _server_read(stream, rng)
        assert got == frames and reader.routing_info == routing


def test_server_reader_intro_only_then_frames() -> None:
    reader = ServerFrameReader()
    assert reader.feed(INTRO_HEADER) == []
    assert reader.intro_done and reader.routing_info is None
    assert reader.feed(encode_frame(b"a") + encode_frame(b"b")) == [b"a", b"b"]
    reader = ServerFrameReader()
    assert reader.feed(b"") == [] and not reader.intro_done


@pytest.mark.parametrize(
    "intro",
    [
        b"XA\x06\x03",
        b"WB\x06\x03",
        b"WA\x05\x03",  # wrong magic
        b"WA\x06\x02",  # dictionary version 2
        b"EE\x00\x01",
        b"ED\x00\x02\x00\x00\x01x" + INTRO_HEADER,
        b"ED\x00\x01\x00\x00\x01x" + b"WA\x06\x04",  # bad header after routing info
        b"ED\x00\x01\x00\x00\x00" + INTRO_HEADER,  # empty routing info
        b"ED\x00\x01\x01\x00\x00",  # 64 KiB of routing info: above the limit
        b"\x00\x00\x05hello",  # a frame without intro
        b"GET / HTTP/1.1\r\n",
    ],
)
def test_server_reader_rejects_bad_intros(intro: bytes) -> None:
    for split in range(1, len(intro) + 1):
        reader = ServerFrameReader()
        with pytest.raises(FrameError):
            reader.feed(intro[:split])
            reader.feed(intro[split:] + encode_frame(b"x"))
        with pytest.raises(FrameError):  # stays poisoned
            reader.feed(INTRO_HEADER)


def test_server_reader_rejects_early() -> None:
    # A wrong first byte is refused immediately, without waiting for more data.
    with pytest.raises(FrameError):
        ServerFrameReader().feed(b"Q")
    with pytest.raises(FrameError):
        ServerFrameReader().feed(b"E\x00")


def test_server_reader_max_sizes() -> None:
    reader = ServerFrameReader(max_size=10, max_routing_size=4)
    assert reader.feed(client_intro(b"abcd") + encode_frame(bytes(10))) == [bytes(10)]
    with pytest.raises(FrameError):
        reader.feed(encode_frame(bytes(11)))
    with pytest.raises(FrameError):
        ServerFrameReader(max_routing_size=4).feed(client_intro(b"abcde"))
    reader = ServerFrameReader(max_size=10)
    with pytest.raises(FrameError):  # oversized first frame in the same chunk as the intro
        reader.feed(INTRO_HEADER + encode_frame(bytes(11)))
