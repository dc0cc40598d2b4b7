"""WABinary encode/decode: worked examples, every tag, Baileys' string rules, limits and bad input.

The last test is differential: it runs Baileys' own encoder/decoder (pinned 7.0.0-rc14, through
``bench/baileys_wire.mjs``) on a seeded corpus full of edge cases and requires identical bytes and
identical decoded values.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from evolink.wire.binary import (
    DEFAULT_MAX_DEPTH,
    S_WHATSAPP_NET,
    SERVER_JID,
    Jid,
    Node,
    decode,
    encode,
)
from evolink.wire.errors import DecodeError, EncodeError, WireError
from evolink.wire.tokens import DOUBLE_BYTE, SINGLE_BYTE

ROOT = Path(__file__).resolve().parents[2]
BAILEYS_SCRIPT = ROOT / "bench" / "baileys_wire.mjs"
BAILEYS_LIB = ROOT / "tests" / "interop" / "node_modules" / "baileys" / "lib" / "WABinary" / "encode.js"


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# --- §5.6 worked examples ------------------------------------------------------------------------

PING = Node("iq", {"id": "1.2-3", "to": SERVER_JID, "type": "get", "xmlns": "w:p"}, [Node("ping")])
PING_BYTES = h("00 f8 0a 19 08 ff 83 1b 2a 3f 11 fa 00 03 04 29 16 57 f8 01 f8 01 56")
DEVICE = Node("device", {"jid": "15550001111:7@s.whatsapp.net", "lid": "987654321:7@lid"})
DEVICE_BYTES = h("00 f8 05 3b 0c f7 00 07 ff 86 15 55 00 01 11 1f 76 f7 01 07 ff 85 98 76 54 32 1f")


def test_worked_example_ping() -> None:
    assert encode(PING) == PING_BYTES
    assert decode(PING_BYTES) == PING


def test_worked_example_device() -> None:
    assert encode(DEVICE) == DEVICE_BYTES
    assert decode(DEVICE_BYTES) == DEVICE


# --- string choice order -------------------------------------------------------------------------


def enc_attr(value: str) -> bytes:
    """Bytes written for one attribute value (node <iq id=value/>: f8 03 19 08 <value>)."""
    out = encode(Node("iq", {"id": value}))
    assert out[:4] == h("00 f8 03 19") and out[4] == 0x08
    return out[5:]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("s.whatsapp.net", "03"),  # single-byte token
        ("7", "e3"),  # numeric strings that are tokens stay tokens
        ("active", "ec 01"),  # DICTIONARY_0
        ("ref", "ed 50"),  # DICTIONARY_1
        ("failure", "ee 3c"),  # DICTIONARY_2
        ("1724", "ef 00"),  # DICTIONARY_3
        ("98", "ff 01 98"),  # nibble, even
        ("1-.", "ff 82 1a bf"),  # nibble, odd, pad 15
        ("ABC", "fb 82 ab cf"),  # hex (uppercase only)
        ("0A", "fb 01 0a"),
        ("abc", "fc 03 61 62 63"),  # lowercase hex is raw
        ("", "fc 00"),  # empty string → empty BINARY_8, never a token
        ("héllo", "fc 06 68 c3 a9 6c 6c 6f"),
        ("@s.whatsapp.net", "fa 00 03"),  # server JID
        ("123@g.us", "fa ff 82 12 3f 1c"),
        ("123:0@s.whatsapp.net", "f7 00 00 ff 82 12 3f"),  # ":0" still makes an AD_JID
        ("123:@s.whatsapp.net", "fa ff 82 12 3f 03"),  # empty device → JID_PAIR
        ("98:2@lid", "f7 01 02 ff 01 98"),
        ("98:2@hosted", "f7 80 02 ff 01 98"),
        ("98:2@hosted.lid", "f7 81 02 ff 01 98"),
        ("98_1:2@s.whatsapp.net", "f7 01 02 ff 01 98"),  # agent becomes the domain byte
        ("98_1@s.whatsapp.net", "fa ff 01 98 03"),  # agent dropped from a JID pair (Baileys)
        ("98:300@s.whatsapp.net", "f7 00 2c ff 01 98"),  # device byte is (device & 0xff)
        ("98:x@s.whatsapp.net", "f7 00 00 ff 01 98"),  # NaN device → 0
        ("98:0x10@s.whatsapp.net", "f7 00 10 ff 01 98"),  # JS +"0x10" == 16
        ("98:-1@s.whatsapp.net", "f7 00 ff ff 01 98"),
        ("98_7z:1@x", "f7 07 01 ff 01 98"),  # parseInt("7z") == 7
        ("a@b@x", "fa fc 01 61 fa fc 01 62 fc 01 78"),  # server containing '@' is a JID again
        ("abc@", "fa fc 03 61 62 63 fc 00"),
        ("x" * 256, "fd 00 01 00" + "78" * 256),  # BINARY_20
    ],
)
def test_string_choice(value: str, expected: str) -> None:
    assert enc_attr(value) == h(expected)


def test_packed_max_boundary() -> None:
    assert enc_attr("1" * 127)[:2] == h("ff c0")  # 64 bytes, odd flag
    assert enc_attr("1" * 126)[:2] == h("ff 3f")
    assert enc_attr("1" * 128)[:2] == h("fc 80")  # too long to pack → raw
    assert enc_attr("A" * 127)[:2] == h("fb c0")


def test_every_token_encodes_to_its_index() -> None:
    for i, tok in enumerate(SINGLE_BYTE[1:], start=1):
        assert enc_attr(tok) == bytes([i])
    for d, table in enumerate(DOUBLE_BYTE):
        for i, tok in enumerate(table):
            assert enc_attr(tok) == bytes([236 + d, i])


# --- node structure --------------------------------------------------------------------------------


def test_none_attributes_are_skipped() -> None:
    with_none = Node("iq", {"id": "1", "to": None, "type": "get"})  # type: ignore[dict-item]
    assert encode(with_none) == encode(Node("iq", {"id": "1", "type": "get"}))


def test_numeric_attribute_names_come_first_like_javascript() -> None:
    node = Node("x", {"b": "1", "10": "2", "2": "3", "01": "4"})
    expected = Node("x", {"2": "3", "10": "2", "b": "1", "01": "4"})
    out = encode(node)
    assert out == encode(expected)
    assert decode(out) == node  # dict equality ignores order


def test_content_kinds() -> None:
    assert encode(Node("a", content=[])) == h("00 f8 02 fc 01 61 00")
    assert decode(h("00 f8 02 fc 01 61 00")).content == []
    assert decode(h("00 f8 02 fc 01 61 f8 00")).content == []
    assert encode(Node("a", content=b"")) == h("00 f8 02 fc 01 61 fc 00")
    assert decode(h("00 f8 02 fc 01 61 fc 00")).content == b""
    # string content that is not a token/packed is written raw and decodes as bytes (as in Baileys)
    assert decode(encode(Node("body", content="hi"))).content == b"hi"
    assert decode(encode(Node("body", content="true"))).content == "true"
    assert decode(encode(Node("body", content="123"))).content == "123"
    assert encode(Node("a", content=bytearray(b"xy"))) == encode(Node("a", content=b"xy"))
    assert encode(Node("a", content=memoryview(b"xy"))) == encode(Node("a", content=b"xy"))


@pytest.mark.parametrize(("size", "prefix"), [(0, "fc 00"), (255, "fc ff"), (256, "fd 00 01 00"),
                                              ((1 << 20) - 1, "fd 0f ff ff"), (1 << 20, "fe 00 10 00 00")])  # fmt: skip
def test_binary_length_tags(size: int, prefix: str) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    out = encode(Node("enc", content=payload))
    assert out[:4] == h("00 f8 02 1d")
    assert out[4 : 4 + len(h(prefix))] == h(prefix)
    assert decode(out).content == payload


def test_list_16_children_and_attrs() -> None:
    many = Node("zz", content=[Node("item", {"id": str(i)}) for i in range(300)])
    out = encode(many)
    assert out[:10] == h("00 f8 02 fc 02 7a 7a f9 01 2c")
    assert decode(out) == many
    wide = Node("x", {f"k{i}": "v" for i in range(130)})
    out = encode(wide)
    assert out[:4] == h("00 f9 01 05")
    assert decode(out) == wide


def test_encode_rejects_what_cannot_be_represented() -> None:
    with pytest.raises(EncodeError):
        encode(Node(""))
    with pytest.raises(EncodeError):
        encode(Node("a", {"k": 1}))  # type: ignore[dict-item]
    with pytest.raises(EncodeError):
        encode(Node("a", content=42))  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        encode(Node("a", content=["x"]))  # type: ignore[list-item]
    with pytest.raises(EncodeError):
        encode(Node("a", content="\udc80"))  # lone surrogate
    with pytest.raises(EncodeError):
        encode(Node("a", content=[Node("b")] * 70000))
    with pytest.raises(EncodeError):
        encode(Node("a", {"k": "@" * 100}))
    deep = Node("a")
    for _ in range(300):
        deep = Node("a", content=[deep])
    with pytest.raises(EncodeError):
        encode(deep)
    cyclic = Node("a", content=[])
    assert isinstance(cyclic.content, list)
    cyclic.content.append(cyclic)
    with pytest.raises(EncodeError):
        encode(cyclic)


# --- decoding of each tag -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value_bytes", "expected"),
    [
        ("00", ""),  # LIST_EMPTY as a string
        ("ec 01", "active"),
        ("ef ff", "1961"),
        ("ff 82 1a bf", "1-."),
        ("ff 81 f0", "\x00"),  # pad code 15 decodes to NUL (Baileys), kept when not dropped
        ("fb 82 ab cf", "ABC"),
        ("fb 81 ff", "F"),
        ("fc 02 c3 28", "\ufffd("),  # invalid UTF-8 → U+FFFD like Buffer.toString
        ("fd 00 00 01 41", "A"),
        ("fe 00 00 00 01 41", "A"),
        ("fa 00 03", "@s.whatsapp.net"),
        ("fa fc 01 61 fc 01 62", "a@b"),
        ("f7 00 00 ff 81 5f", "5@s.whatsapp.net"),  # device 0 omitted
        ("f7 01 07 ff 81 5f", "5:7@lid"),
        ("f7 80 07 ff 81 5f", "5:7@hosted"),
        ("f7 81 07 ff 81 5f", "5:7@hosted.lid"),
        ("f7 09 07 ff 81 5f", "5:7@s.whatsapp.net"),  # unknown domain → s.whatsapp.net
        ("f6 ff 81 5f 00 00 fc 04 6d 73 67 72", "5:0@msgr"),
        ("f6 ff 81 5f 01 02 fc 04 6d 73 67 72", "5:258@msgr"),
        ("f5 ff 81 5f 00 03 00 09 fc 07 69 6e 74 65 72 6f 70", "9-5:3@interop"),
    ],
)
def test_decode_string_tags(value_bytes: str, expected: str) -> None:
    node = decode(h("00 f8 03 19 08") + h(value_bytes))
    assert node.attrs == {"id": expected}


def test_interop_jid_without_server_rewinds() -> None:
    # The server string is optional: Baileys tries to read it and, on failure, rewinds and uses
    # "interop"; the byte is then read as the node content (here a child list).
    data = h("00 f8 04 19 08 f5 ff 81 5f 00 03 00 09 f8 01 f8 01 56")
    node = decode(data)
    assert node.attrs == {"id": "9-5:3@interop"}
    assert node.content == [Node("ping")]
    # at end of input the rewind also applies
    assert decode(h("00 f8 03 19 08 f5 ff 81 5f 00 03 00 09")).attrs == {"id": "9-5:3@interop"}
    # LIST_EMPTY is a valid (empty) string, so it is taken as the server
    assert decode(h("00 f8 03 19 08 f5 ff 81 5f 00 03 00 09 00")).attrs == {"id": "9-5:3@"}


def test_zlib_flag() -> None:
    body = encode(PING)[1:]
    assert decode(b"\x02" + zlib.compress(body)) == PING
    assert decode(b"\x06" + zlib.compress(body)) == PING  # other flag bits are ignored
    assert decode(b"\x01" + body) == PING


def test_zlib_bounds() -> None:
    bomb = b"\x02" + zlib.compress(b"\x00" * (1 << 22), 9)
    with pytest.raises(DecodeError, match="max_size"):
        decode(bomb, max_size=1 << 20)
    body = encode(PING)[1:]
    with pytest.raises(DecodeError):
        decode(b"\x02" + zlib.compress(body)[:-3])
    with pytest.raises(DecodeError):
        decode(b"\x02" + b"garbage")
    with pytest.raises(DecodeError, match="trailing"):
        decode(b"\x02" + zlib.compress(body) + b"xx")
    assert decode(b"\x02" + zlib.compress(body) + b"xx", allow_trailing=True) == PING


def test_max_size_uncompressed() -> None:
    out = encode(Node("enc", content=bytes(1000)))
    assert decode(out, max_size=len(out) - 1).content == bytes(1000)
    with pytest.raises(DecodeError, match="max_size"):
        decode(out, max_size=len(out) - 2)


# --- bad input -----------------------------------------------------------------------------------


def test_trailing_bytes_policy() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        decode(PING_BYTES + b"\x00")
    assert decode(PING_BYTES + b"\x00", allow_trailing=True) == PING


def test_every_truncation_is_a_decode_error() -> None:
    big = encode(Node("message", {"to": "15550001111:3@s.whatsapp.net", "id": "3EB0ABCDEF"},
                      [PING, DEVICE, Node("enc", {"v": "2"}, bytes(300))]))  # fmt: skip
    for cut in range(len(big)):
        with pytest.raises(DecodeError):
            decode(big[:cut])


@pytest.mark.parametrize(
    "data",
    [
        "",
        "00",
        "00 00",  # LIST_EMPTY is not a node
        "00 f8 00",  # empty list
        "00 19",  # not a list tag
        "00 f8 01 00",  # empty tag
        "00 f8 01 fc 00",  # empty tag (raw)
        "00 f8 01 f0",  # unused tag 240
        "00 f8 01 f4",
        "00 f8 03 19 08 f8",  # list tag as a string
        "00 f8 03 19 08 ff 81 c0",  # invalid nibble 12
        "00 f8 03 19 08 ff 81 0d",  # invalid nibble 13 in the dropped position still fails
        "00 f8 03 19 08 fa fc 01 61 00",  # JID pair with empty server
        "00 f8 02 19 fe ff ff ff ff",  # 4 GiB binary content declared
        "00 f8 02 19 fd 0f ff ff",
        "00 f9 ff ff 19",  # 65535-item list, no data
        "00 f8 02 19 f9 ff ff",  # 65535 children, no data
    ],
)
def test_malformed_inputs(data: str) -> None:
    with pytest.raises(DecodeError):
        decode(h(data))


def test_depth_limit() -> None:
    def nested(depth: int) -> Node:
        node = Node("a")
        for _ in range(depth - 1):
            node = Node("a", content=[node])
        return node

    ok = encode(nested(DEFAULT_MAX_DEPTH))
    assert decode(ok) == nested(DEFAULT_MAX_DEPTH)
    too_deep = encode(nested(DEFAULT_MAX_DEPTH + 1))
    with pytest.raises(DecodeError, match="nesting"):
        decode(too_deep)
    assert decode(too_deep, max_depth=DEFAULT_MAX_DEPTH + 1) == nested(DEFAULT_MAX_DEPTH + 1)
    # hand-made deep nesting far beyond Python's recursion limit
    bomb = b"\x00" + b"\xf8\x02\x19\xf8\x01" * 5000
    with pytest.raises(DecodeError):
        decode(bomb)
    jid_bomb = h("00 f8 03 19 08") + b"\xfa" * 5000 + b"\x03" * 5001
    with pytest.raises(DecodeError):
        decode(jid_bomb)
    with pytest.raises(ValueError):
        decode(ok, max_depth=100000)


def test_random_garbage_only_raises_decode_error() -> None:
    rng = random.Random(1234)
    valid = [encode(PING), encode(DEVICE), encode(Node("x", {"a": "5:1@lid"}, [Node("y", content=b"zz")]))]
    for _ in range(3000):
        if rng.random() < 0.5:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
        else:
            data = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            decode(bytes(data))
        except DecodeError:
            pass


def test_errors_are_wire_errors() -> None:
    with pytest.raises(WireError):
        decode(b"")
    with pytest.raises(WireError):
        encode(Node(""))


# --- Node and Jid helpers -------------------------------------------------------------------------


def test_node_helpers() -> None:
    node = Node("iq", {"type": "result"}, [Node("a", {"n": "1"}), Node("b"), Node("a", {"n": "2"})])
    assert node.child("a") == Node("a", {"n": "1"})
    assert node.child("zzz") is None
    assert [c.attrs["n"] for c in node.children("a")] == ["1", "2"]
    assert len(node.children()) == 3
    assert node.attr("type") == "result" and node.attr("nope") is None and node.attr("nope", "d") == "d"
    leaf = Node("leaf", content=b"x")
    assert leaf.child("a") is None and leaf.children() == []
    assert Node("x").attrs == {} and Node("x").attrs is not Node("y").attrs


@pytest.mark.parametrize(
    ("text", "jid"),
    [
        ("15550001111@s.whatsapp.net", Jid("15550001111", S_WHATSAPP_NET)),
        ("15550001111:7@s.whatsapp.net", Jid("15550001111", S_WHATSAPP_NET, device=7)),
        ("987654321:7@lid", Jid("987654321", "lid", device=7)),
        ("1_1:2@s.whatsapp.net", Jid("1", S_WHATSAPP_NET, device=2, agent=1)),
        ("@s.whatsapp.net", Jid("", S_WHATSAPP_NET)),
        ("5:258@msgr", Jid("5", "msgr", device=258)),
        ("9-5:3@interop", Jid("5", "interop", device=3, integrator=9)),
        ("123-456@g.us", Jid("123-456", "g.us")),
    ],
)
def test_jid_parse_and_str(text: str, jid: Jid) -> None:
    assert Jid.parse(text) == jid
    assert str(jid) == text


@pytest.mark.parametrize("bad", ["no-at-sign", "user@", "u:x@s.whatsapp.net", "u_z@s.whatsapp.net"])
def test_jid_parse_rejects(bad: str) -> None:
    with pytest.raises(DecodeError):
        Jid.parse(bad)


def test_server_jid_constant_encodes_as_jid_pair() -> None:
    assert enc_attr(SERVER_JID) == h("fa 00 03")
    assert Jid.parse(SERVER_JID) == Jid("", S_WHATSAPP_NET)


# --- differential check against Baileys ------------------------------------------------------------


def node_to_json(node: Node) -> dict[str, Any]:
    content: Any = node.content
    if isinstance(content, list):
        content = [node_to_json(c) for c in content]
    elif isinstance(content, bytes):
        content = {"b64": base64.b64encode(content).decode()}
    return {"tag": node.tag, "attrs": node.attrs, "content": content}


def edge_case_corpus(seed: int, count: int) -> list[Node]:
    """Nodes built to hit every encoder branch, including Baileys' odd JID coercions."""
    rng = random.Random(seed)
    tokens = list(SINGLE_BYTE[1:]) + [t for table in DOUBLE_BYTE for t in table]
    odd_jids = [
        "123:0@s.whatsapp.net", "123:@s.whatsapp.net", "5_1@s.whatsapp.net", "5_1:2@s.whatsapp.net",
        "5:300@s.whatsapp.net", "5:x@lid", "5:0x1f@s.whatsapp.net", "5: 7 @lid", "5:1e2@hosted",
        "5:-3@hosted.lid", "5_7z:1@x", "5_0x10:1@x", "5_-2:1@x", "a@b@c", "abc@", "@", "a:b:c@lid",
        "a_b_c:4@lid", "5:Infinity@lid", "5:1.9@lid", "5:.5@lid", "_:1@lid", "5_ 12:1@x",
        "5:0b101@lid", "5:0o17@lid", "5:99999999999999999999@lid", "ABC:1@lid", "12-34@g.us",
        "status@broadcast", "1-2:3@hosted", "5_:1@x",
    ]  # fmt: skip

    def string() -> str:
        kind = rng.randrange(9)
        if kind == 0:
            return rng.choice(tokens)
        if kind == 1:
            return "".join(rng.choice("0123456789-.") for _ in range(rng.randrange(1, 130)))
        if kind == 2:
            return "".join(rng.choice("0123456789ABCDEF") for _ in range(rng.randrange(1, 130)))
        if kind == 3:
            user = "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 16)))
            server = rng.choice(
                ["s.whatsapp.net", "lid", "hosted", "hosted.lid", "g.us", "broadcast", "c.us"]
            )
            device = rng.choice(["", f":{rng.randrange(0, 100)}"])
            return f"{user}{device}@{server}"
        if kind == 4:
            return rng.choice(odd_jids)
        if kind == 5:
            return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(160, 0x2FFF),
                                           rng.randrange(0x1F300, 0x1F600)]))
                           for _ in range(rng.randrange(0, 40)))  # fmt: skip
        if kind == 6:
            return ""
        if kind == 7:
            return str(rng.randrange(0, 10 ** rng.randrange(1, 12)))
        return rng.choice(
            ["3EB0" + "".join(rng.choice("0123456789ABCDEF") for _ in range(16)), "abc", "x" * 300]
        )

    def node(depth: int) -> Node:
        tag = string() or "t"
        attrs = {}
        for _ in range(rng.randrange(0, 6)):
            key = string() or "k"
            if key == "__proto__":
                continue
            attrs[key] = string()
        roll = rng.random()
        content: Any = None
        if roll < 0.25 and depth < 5:
            content = [node(depth + 1) for _ in range(rng.randrange(0, 5))]
        elif roll < 0.45:
            content = rng.randbytes(rng.choice([0, 1, 255, 256, 1000, rng.randrange(0, 70)]))
        elif roll < 0.65:
            content = string()
        return Node(tag, attrs, content)

    corpus = [PING, DEVICE, Node("enc", content=bytes(1 << 20)), Node("x", {"b": "1", "10": "2", "2": "3"})]
    corpus += [node(0) for _ in range(count)]
    return corpus


def run_baileys(nodes: list[Node], encoded: list[bytes]) -> dict[str, Any]:
    payload = {
        "nodes": [node_to_json(n) for n in nodes],
        "encoded": [base64.b64encode(b).decode() for b in encoded],
    }
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json") as fh:
        json.dump(payload, fh)
        fh.flush()
        proc = subprocess.run(
            ["node", str(BAILEYS_SCRIPT), fh.name, "check"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.baileys
@pytest.mark.skipif(
    shutil.which("node") is None or not BAILEYS_LIB.exists(), reason="node/Baileys not installed"
)
def test_matches_baileys_byte_for_byte() -> None:
    corpus = edge_case_corpus(seed=20261128, count=600)
    ours = [encode(n) for n in corpus]
    # Also hand Baileys some inputs that only a decoder sees: trailing bytes aside, every prefix of
    # a few encodings and some mutations must give the same value or an error in both decoders.
    rng = random.Random(7)
    extra: list[bytes] = []
    for data in ours[:40]:
        extra.append(data[: rng.randrange(1, len(data) + 1)])
        mutated = bytearray(data)
        mutated[rng.randrange(1, len(mutated))] = rng.randrange(256)
        extra.append(bytes(mutated))
    theirs = run_baileys(corpus, ours + extra)
    for node, mine, other in zip(corpus, ours, theirs["encoded"], strict=True):
        assert isinstance(other, str), f"Baileys failed to encode {node!r}: {other}"
        assert mine == base64.b64decode(other), f"encoding differs for {node!r}"
    for data, other in zip(ours + extra, theirs["decoded"], strict=True):
        try:
            mine_json: Any = node_to_json(decode(data, allow_trailing=True))
        except DecodeError as exc:
            mine_json = {"error": str(exc)}
        if "error" in other:
            assert "error" in mine_json, f"Baileys refused {data.hex()} ({other['error']}) but we decoded it"
        else:
            assert mine_json == other, f"decoded values differ for {data.hex()}"
