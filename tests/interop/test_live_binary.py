"""Live two-way check of evolink.wire.binary against Baileys on inputs generated here in Python.

The committed vectors come from the JS generator; this test adds independently generated nodes
(other string mixes, integer-like attribute keys, odd JIDs) and runs Baileys live:
* Baileys' encoding of each node == evolink's encoding;
* Baileys' decoding of evolink's bytes == evolink's decoding of the same bytes.
The seed is fixed for reproducibility; set EVOLINK_INTEROP_SEED to explore other inputs.
"""

from __future__ import annotations

import base64
import os
import random

import pytest

from evolink.wire.binary import Node, decode, encode
from evolink.wire.tokens import DOUBLE_BYTE, SINGLE_BYTE

from .vectorlib import node_to_input_json, node_to_json, run_node_json

SEED = int(os.environ.get("EVOLINK_INTEROP_SEED", "20261128"))
COUNT = 400
INLINE = 1 << 20
_SERVERS = [
    "s.whatsapp.net",
    "lid",
    "hosted",
    "hosted.lid",
    "g.us",
    "broadcast",
    "c.us",
    "newsletter",
    "msgr",
]
_UNICODE = [chr(c) for c in (0xE9, 0x4E2D, 0x1F600, 0x0627, 0x2603, 0x1F1E7, 0x00A0, 0x0000, 0x10FFFF)]


def _string(rng: random.Random) -> str:
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice(SINGLE_BYTE[1:])
    if kind == 1:
        return rng.choice(rng.choice(DOUBLE_BYTE))
    if kind == 2:
        return "".join(rng.choice("0123456789-.") for _ in range(rng.randint(1, 130)))
    if kind == 3:
        return "".join(rng.choice("0123456789ABCDEF") for _ in range(rng.randint(1, 130)))
    if kind == 4:
        return "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(rng.randint(1, 20)))
    if kind in (5, 6):
        user = str(rng.randint(1, 10**15))
        device = f":{rng.randint(0, 255)}" if rng.random() < 0.5 else ""
        agent = f"_{rng.randint(0, 3)}" if rng.random() < 0.1 else ""
        return f"{user}{agent}{device}@{rng.choice(_SERVERS)}"
    if kind == 7:
        return "@s.whatsapp.net"
    if kind == 8:
        return "".join(rng.choice(_UNICODE + list("abc xyz")) for _ in range(rng.randint(1, 12)))
    if kind == 9:
        return ""
    if kind == 10:
        return "q" * rng.choice([1, 127, 128, 255, 256, 300])
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz:_-./ ") for _ in range(rng.randint(1, 30)))


def _key(rng: random.Random, taken: dict[str, str]) -> str:
    while True:
        r = rng.random()
        key = (
            str(rng.randint(0, 300))  # integer-like: JS orders these first
            if r < 0.1
            else rng.choice(SINGLE_BYTE[1:])
            if r < 0.8
            else "".join(rng.choice("abcdefgh_-") for _ in range(rng.randint(1, 8)))
        )
        if key not in taken:
            return key


def _node(rng: random.Random, depth: int) -> Node:
    attrs: dict[str, str] = {}
    for _ in range(rng.randrange(6)):
        attrs[_key(rng, attrs)] = _string(rng)
    tag = (
        rng.choice(SINGLE_BYTE[1:])
        if rng.random() < 0.8
        else "".join(rng.choice("abcxyz-_") for _ in range(5))
    )
    r = rng.randrange(10)
    content: bytes | str | list[Node] | None = None
    if r < 3:
        content = _string(rng)
    elif r < 5:
        content = rng.randbytes(rng.choice([0, 1, 32, 255, 256, 1000]))
    elif r < 8 and depth > 0:
        content = [_node(rng, depth - 1) for _ in range(rng.choice([0, 1, 2, 3, 5]))]
    return Node(tag, attrs, content)


@pytest.mark.baileys
def test_random_nodes_two_way_live(node_bin: str) -> None:
    rng = random.Random(SEED)
    nodes = [_node(rng, 4) for _ in range(COUNT)]
    ours = [encode(n) for n in nodes]
    result = run_node_json(
        "baileys_codec.mjs",
        {
            "encode": [node_to_input_json(n) for n in nodes],
            "decode": [base64.b64encode(b).decode() for b in ours],
        },
    )
    enc_mismatch: list[str] = []
    dec_mismatch: list[str] = []
    for i, (node, mine, theirs, their_decode) in enumerate(
        zip(nodes, ours, result["encoded"], result["decoded"], strict=True)
    ):
        if isinstance(theirs, dict):
            enc_mismatch.append(f"#{i}: Baileys failed to encode ({theirs['error']}): {node!r:.200}")
        elif base64.b64decode(theirs) != mine:
            enc_mismatch.append(
                f"#{i}: {node!r:.200}\n  baileys {base64.b64decode(theirs).hex()[:160]}\n  evolink {mine.hex()[:160]}"
            )
        if their_decode != node_to_json(decode(mine), INLINE):
            dec_mismatch.append(f"#{i}: baileys {their_decode!r:.300}")
    assert not enc_mismatch, f"seed {SEED}: {len(enc_mismatch)}/{COUNT} encodings differ:\n" + "\n".join(
        enc_mismatch[:5]
    )
    assert not dec_mismatch, f"seed {SEED}: {len(dec_mismatch)}/{COUNT} decodings differ:\n" + "\n".join(
        dec_mismatch[:5]
    )
