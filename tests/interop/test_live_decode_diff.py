"""Differential decode fuzzing: mutated Baileys encodings through Baileys' and evolink's decoders.

For each mutated input (bit flip, byte replace, truncation, insertion) the two decoders must agree:
both refuse it, or both return the same node. evolink is run with ``allow_trailing=True`` because
Baileys ignores bytes after the node (evolink's strict default is tested in test_vectors_binary).

One documented exception: Baileys reads BINARY_32 lengths as *signed* 32-bit JavaScript integers,
so a length >= 2^31 becomes negative and Baileys returns an empty value (and rewinds its read
position) instead of failing. evolink correctly reports the truncation; such inputs may differ.
"""

from __future__ import annotations

import base64
import os
import random

import pytest

from evolink.wire.binary import decode
from evolink.wire.errors import DecodeError

from .vectorlib import load_vectors, node_to_json, run_node_json

SEED = int(os.environ.get("EVOLINK_INTEROP_SEED", "20261128"))
COUNT = 3000
INLINE = 1 << 20
BINARY_32 = 0xFE


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:
        b[rng.randrange(1, len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        b[rng.randrange(1, len(b))] = rng.randrange(256)
    elif kind == 2:
        b = b[: rng.randrange(1, len(b))]
    else:
        i = rng.randrange(1, len(b) + 1)
        b[i:i] = bytes([rng.randrange(256)])
    b[0] = 0  # keep it uncompressed; zlib inputs are covered by the vectors
    return bytes(b)


def _has_signed_binary32_length(data: bytes) -> bool:
    return any(data[i] == BINARY_32 and data[i + 1] >= 0x80 for i in range(len(data) - 1))


@pytest.mark.baileys
def test_mutated_inputs_decode_alike(node_bin: str) -> None:
    rng = random.Random(SEED)
    encoded = [
        base64.b64decode(v["encoded_b64"])
        for v in load_vectors("binary_nodes")["vectors"]
        if "encoded_b64" in v
    ]
    seeds = [e for e in encoded if 2 <= len(e) <= 1500]
    inputs = [_mutate(rng, rng.choice(seeds)) for _ in range(COUNT)]
    result = run_node_json("baileys_codec.mjs", {"decode": [base64.b64encode(x).decode() for x in inputs]})
    mismatches: list[str] = []
    agreed_errors = 0
    for data, theirs in zip(inputs, result["decoded"], strict=True):
        baileys_failed = set(theirs) == {"error"}
        try:
            ours = node_to_json(decode(data, allow_trailing=True), INLINE)
        except DecodeError as exc:
            if baileys_failed:
                agreed_errors += 1
            elif not _has_signed_binary32_length(data):
                mismatches.append(
                    f"{data.hex()[:120]}: evolink refused ({exc}), Baileys gave {theirs!r:.150}"
                )
            continue
        if baileys_failed:
            mismatches.append(
                f"{data.hex()[:120]}: Baileys refused ({theirs['error']}), evolink gave {ours!r:.150}"
            )
        elif ours != theirs:
            mismatches.append(f"{data.hex()[:120]}:\n  baileys {theirs!r:.200}\n  evolink {ours!r:.200}")
    assert not mismatches, f"seed {SEED}: {len(mismatches)}/{COUNT} disagree:\n" + "\n".join(mismatches[:5])
    # the mutations must exercise both outcomes, or the test proves little
    assert 0.1 * COUNT < agreed_errors < 0.9 * COUNT
