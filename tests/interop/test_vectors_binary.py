"""evolink.wire.binary against Baileys' encodeBinaryNode/decodeBinaryNode, byte for byte.

For every committed vector: evolink's encoding of the input node equals Baileys' bytes, and
evolink's decoding of Baileys' bytes equals what Baileys' decoder returned. Decode-only vectors
cover tags Baileys never emits (FB/interop JIDs, zlib, non-minimal lengths); rejected vectors are
inputs Baileys throws on, which evolink must refuse with a DecodeError.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from typing import Any

import pytest

from evolink.wire.binary import decode, encode
from evolink.wire.errors import DecodeError

from .vectorlib import json_to_node, load_vectors, node_to_json

DATA = load_vectors("binary_nodes")
INLINE_LIMIT: int = DATA["inline_limit"]
VECTORS: list[dict[str, Any]] = DATA["vectors"]
ENCODABLE = [v for v in VECTORS if "node" in v]
DECODABLE = [v for v in VECTORS if "decoded" in v and v["category"] != "decode_lenient"]
LENIENT = [v for v in VECTORS if v["category"] == "decode_lenient"]
REJECTED = [v for v in VECTORS if "baileys_error" in v]  # incl. quirk encodings Baileys cannot read back


def _ids(vs: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vs]


def _baileys_bytes(v: dict[str, Any]) -> bytes | None:
    return base64.b64decode(v["encoded_b64"]) if "encoded_b64" in v else None


def test_vector_set_meets_the_brief() -> None:
    """The committed set is what the issue asks for (guards against a truncated regeneration)."""
    cats = Counter(v["category"] for v in VECTORS)
    assert len(ENCODABLE) >= 500
    assert cats["stanza"] >= 30 and cats["random"] >= 200 and cats["decode_only"] >= 10
    names = {v["name"] for v in VECTORS}
    for required in (
        "pair_device_6_refs",
        "link_code_companion_hello",
        "link_code_primary_hello",
        "link_code_companion_finish",
        "adv_e2ee_pair_success",
        "success_t_lid",
        "stream_error_401_device_removed",
        "stream_error_replaced",
        "children_256",
        "bytes_pattern_1048576",
        "fb_jid",
        "interop_jid",
        "zlib_ping",
    ):
        assert required in names, required
    assert len(names) == len(VECTORS), "vector names must be unique"


@pytest.mark.parametrize("v", ENCODABLE, ids=_ids(ENCODABLE))
def test_encode_matches_baileys(v: dict[str, Any]) -> None:
    ours = encode(json_to_node(v["node"]))
    expected = _baileys_bytes(v)
    if expected is not None:
        assert ours.hex() == expected.hex()
    else:  # large payload: compare length, head and digest
        assert len(ours) == v["encoded_length"]
        assert ours[:64] == base64.b64decode(v["encoded_head_b64"])
        assert hashlib.sha256(ours).hexdigest() == v["encoded_sha256"]


@pytest.mark.parametrize("v", DECODABLE, ids=_ids(DECODABLE))
def test_decode_matches_baileys(v: dict[str, Any]) -> None:
    data = _baileys_bytes(v)
    if data is None:  # large payload: rebuild Baileys' exact bytes from the input node
        data = encode(json_to_node(v["node"]))
        assert hashlib.sha256(data).hexdigest() == v["encoded_sha256"]
    assert node_to_json(decode(data), INLINE_LIMIT) == v["decoded"]


@pytest.mark.parametrize("v", REJECTED, ids=_ids(REJECTED))
def test_rejects_what_baileys_rejects(v: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        decode(base64.b64decode(v["encoded_b64"]))


def test_stanza_binary_fields_stay_bytes() -> None:
    """Refs, keys and identities must come back as bytes (clients need BINARY content, §5.1)."""
    by_name = {v["name"]: v for v in VECTORS}
    pair = decode(base64.b64decode(by_name["pair_device_6_refs"]["encoded_b64"]))
    pd = pair.child("pair-device")
    assert pd is not None
    refs = pd.children("ref")
    assert len(refs) == 6 and all(isinstance(r.content, bytes) for r in refs)
    assert pair.attr("from") == "@s.whatsapp.net"
    hello = decode(base64.b64decode(by_name["link_code_companion_hello"]["encoded_b64"]))
    reg = hello.child("link_code_companion_reg")
    assert reg is not None
    wrapped = reg.child("link_code_pairing_wrapped_companion_ephemeral_pub")
    assert wrapped is not None and isinstance(wrapped.content, bytes) and len(wrapped.content) == 80
    nonce = reg.child("link_code_pairing_nonce")
    assert nonce is not None and nonce.content == "0"  # Baileys' nonce is the token "0", a str


@pytest.mark.parametrize("v", LENIENT, ids=_ids(LENIENT))
def test_trailing_bytes_strict_by_default(v: dict[str, Any]) -> None:
    """Baileys ignores bytes after the node; evolink refuses them unless asked to be lenient."""
    data = base64.b64decode(v["encoded_b64"])
    with pytest.raises(DecodeError):
        decode(data)
    assert node_to_json(decode(data, allow_trailing=True), INLINE_LIMIT) == v["decoded"]
