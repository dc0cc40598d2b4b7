"""Hypothesis properties: WABinary round trips, decoder robustness and frame reassembly."""

from __future__ import annotations

import re
import zlib
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evolink.wire.binary import Jid, Node, decode, encode
from evolink.wire.errors import DecodeError, FrameError
from evolink.wire.frames import FrameReader, ServerFrameReader, client_intro, encode_frame
from evolink.wire.tokens import DOUBLE_BYTE, SINGLE_BYTE, TOKEN_BYTES

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = sorted(set(SINGLE_BYTE[1:]) | {t for table in DOUBLE_BYTE for t in table})
PACKABLE = re.compile(r"[0-9.\-]{1,127}|[0-9A-F]{1,127}")

tokens = st.sampled_from(TOKENS)
nibbles = st.text(alphabet="0123456789-.", min_size=1, max_size=127)
hexes = st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=127)
# Any text without '@' and surrogates decodes back to itself (token, packed or raw UTF-8).
plain = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="@"), max_size=300)
users = st.text(alphabet="0123456789", max_size=20)
ad_servers = st.sampled_from(["s.whatsapp.net", "lid", "hosted", "hosted.lid"])
pair_servers = st.sampled_from(
    ["s.whatsapp.net", "lid", "g.us", "broadcast", "c.us", "newsletter", "call", "bot"]
)
jids = st.one_of(
    st.builds(lambda u, d, s: f"{u}:{d}@{s}", users, st.integers(1, 255), ad_servers),
    st.builds(lambda u, s: f"{u}@{s}", users, pair_servers),
)
strings = st.one_of(tokens, nibbles, hexes, plain, jids)
tags = st.one_of(tokens, st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_:", min_size=1, max_size=20))
payloads = st.one_of(st.binary(max_size=300), st.binary(min_size=250, max_size=260), st.just(b""))


def leaf(content: st.SearchStrategy[object]) -> st.SearchStrategy[Node]:
    return st.builds(Node, tags, st.dictionaries(strings, strings, max_size=5), content)


nodes = st.recursive(
    leaf(st.one_of(st.none(), payloads, strings)),
    lambda children: leaf(st.lists(children, max_size=4)),
    max_leaves=12,
)


def expected(node: Node) -> Node:
    """What decode(encode(node)) must give: raw string content comes back as bytes (as in Baileys)."""
    content = node.content
    if isinstance(content, list):
        content = [expected(c) for c in content]
    elif isinstance(content, str) and not (
        content in TOKEN_BYTES or PACKABLE.fullmatch(content) or "@" in content
    ):
        content = content.encode()
    return Node(node.tag, dict(node.attrs), content)


@SETTINGS
@given(nodes)
def test_round_trip(node: Node) -> None:
    data = encode(node)
    assert data[0] == 0
    back = decode(data)
    assert back == expected(node)
    assert encode(back) == data  # re-encoding what we decoded is byte-identical


@SETTINGS
@given(nodes)
def test_compressed_round_trip(node: Node) -> None:
    data = encode(node)
    assert decode(b"\x02" + zlib.compress(data[1:])) == decode(data)


@SETTINGS
@given(nodes, st.data())
def test_truncations_and_mutations_only_raise_decode_error(node: Node, data: st.DataObject) -> None:
    enc = bytearray(encode(node))
    cut = data.draw(st.integers(0, len(enc) - 1))
    try:
        decode(bytes(enc[:cut]))
        raise AssertionError("a strict prefix of an encoding must not decode")
    except DecodeError:
        pass
    for _ in range(data.draw(st.integers(1, 4))):
        enc[data.draw(st.integers(0, len(enc) - 1))] = data.draw(st.integers(0, 255))
    try:
        decode(bytes(enc), max_depth=8)
    except DecodeError:
        pass


@SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_decode_error(raw: bytes) -> None:
    for flags in (b"\x00", b"\x02"):
        try:
            decode(flags + raw)
        except DecodeError:
            pass


@SETTINGS
@given(st.builds(Jid, users, ad_servers, st.integers(1, 255)))
def test_jid_text_round_trip(jid: Jid) -> None:
    assert Jid.parse(str(jid)) == jid
    node = decode(encode(Node("x", {"jid": str(jid)})))
    assert node.attrs["jid"] == str(jid)


def _cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(edges)]


@SETTINGS
@given(st.lists(st.binary(max_size=600), max_size=12), st.lists(st.integers(0, 10_000), max_size=30))
def test_frame_reassembly(frames: list[bytes], points: list[int]) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    reader = FrameReader()
    got: list[bytes] = []
    for piece in _cut(stream, points):
        got.extend(reader.feed(piece))
    assert got == frames and reader.buffered == 0


@SETTINGS
@given(
    st.one_of(st.none(), st.binary(min_size=1, max_size=64)),
    st.lists(st.binary(max_size=300), max_size=6),
    st.lists(st.integers(0, 5_000), max_size=20),
)
def test_server_intro_and_frames(routing: bytes | None, frames: list[bytes], points: list[int]) -> None:
    stream = client_intro(routing) + b"".join(encode_frame(f) for f in frames)
    reader = ServerFrameReader()
    got: list[bytes] = []
    for piece in _cut(stream, points):
        got.extend(reader.feed(piece))
    assert got == frames
    assert reader.routing_info == routing


@SETTINGS
@given(st.binary(max_size=64), st.lists(st.integers(0, 100), max_size=8))
def test_server_reader_garbage_only_raises_frame_error(raw: bytes, points: list[int]) -> None:
    reader = ServerFrameReader(max_size=1 << 16)
    try:
        for piece in _cut(raw, points):
            reader.feed(piece)
    except FrameError:
        pass
