"""Curve25519 (XEdDSA-family) signatures cross-verified with Baileys/libsignal, both ways.

* Baileys → evolink: every committed signature made by Baileys' Curve.sign (libsignal
  calculateSignature) verifies with evolink, and tampered copies (message, signature, key) fail.
* evolink → Baileys' stack: fresh evolink signatures are checked live by
  ``verify_signatures.mjs`` with curve25519-js ``verify`` and libsignal ``verifySignature`` (real
  checks; Baileys' own ``Curve.verify`` is a no-op for well-formed input, see wa-protocol §2.6).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from evolink.wire.crypto import KeyPair, dh, sign, signed_prekey_signature, verify

from .vectorlib import load_vectors, run_node_json

V = load_vectors("signatures")
SIGS: list[dict[str, Any]] = V["signatures"]
FRESH_COUNT = 240


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def test_enough_vectors_and_both_sign_bits() -> None:
    assert len(SIGS) >= 200
    # curve25519-js copies the Edwards sign bit into sig[63]; both values must be represented
    high = sum(1 for s in SIGS if bytes.fromhex(s["signature"])[63] & 0x80)
    assert high == V["sign_bit_set_count"]
    assert 0 < high < len(SIGS)


def test_evolink_verifies_every_baileys_signature() -> None:
    failed = [
        i
        for i, s in enumerate(SIGS)
        if not verify(bytes.fromhex(s["public"]), bytes.fromhex(s["message"]), bytes.fromhex(s["signature"]))
    ]
    assert failed == [], f"{len(failed)} of {len(SIGS)} Baileys signatures rejected, e.g. {failed[:5]}"


def test_evolink_rejects_tampered_baileys_signatures() -> None:
    accepted: list[str] = []
    for i, s in enumerate(SIGS):
        pub, msg, sig = (bytes.fromhex(s[k]) for k in ("public", "message", "signature"))
        bit = i * 37
        candidates = {
            "sig": (pub, msg, _flip(sig, bit % 512)),
            "sig_sign_bit": (pub, msg, _flip(sig, 511)),
            # bit 255 of a Montgomery key is ignored by design, so only flip bits 0..254
            "pub": (_flip(pub, bit % 255), msg, sig),
            "msg": (pub, _flip(msg, bit % (8 * len(msg))) if msg else b"\x00", sig),
        }
        accepted.extend(f"{i}:{k}" for k, (p, m, g) in candidates.items() if verify(p, m, g))
    assert accepted == []


def test_public_keys_and_agreements_match_baileys() -> None:
    for d in V["derived_public_keys"]:
        assert KeyPair.from_private(bytes.fromhex(d["private"])).public.hex() == d["public"]
    for a in V["agreements"]:
        assert dh(bytes.fromhex(a["private"]), bytes.fromhex(a["peer_public"])).hex() == a["shared"]


def test_baileys_generated_keys_and_signed_prekeys() -> None:
    """Material from Baileys' own RNG helpers (Curve.generateKeyPair, signedKeyPair)."""
    assert V["baileys_generated"]
    for g in V["baileys_generated"]:
        ident = KeyPair.from_private(bytes.fromhex(g["identity"]["private"]))
        assert ident.public.hex() == g["identity"]["public"]
        spk = g["signed_pre_key"]
        assert KeyPair.from_private(bytes.fromhex(spk["private"])).public.hex() == spk["public"]
        assert verify(ident.public, b"\x05" + bytes.fromhex(spk["public"]), bytes.fromhex(spk["signature"]))


def _fresh_items() -> tuple[list[dict[str, str]], list[KeyPair]]:
    keys = [KeyPair.generate() for _ in range(24)]
    items: list[dict[str, str]] = []
    for i in range(FRESH_COUNT):
        kp = keys[i % len(keys)]
        if i % 10 == 0:  # the signed pre-key form Baileys/WhatsApp check in practice
            prekey = KeyPair.generate().public
            msg, sig = b"\x05" + prekey, signed_prekey_signature(kp.private, prekey)
        else:
            msg = os.urandom(i % 300)
            sig = sign(kp.private, msg)
        items.append({"pub": kp.public.hex(), "msg": msg.hex(), "sig": sig.hex()})
    return items, keys


@pytest.mark.baileys
def test_libsignal_verifies_fresh_evolink_signatures(node_bin: str) -> None:
    items, _ = _fresh_items()
    # negative controls in the same run prove the node-side verifier is a real check
    tampered = [
        {**it, "sig": _flip(bytes.fromhex(it["sig"]), (7 * i) % 512).hex()} for i, it in enumerate(items[:40])
    ]
    wrong_key = [
        {**it, "pub": items[(i + 1) % len(items)]["pub"]} for i, it in enumerate(items[:40]) if i % 24
    ]
    result = run_node_json("verify_signatures.mjs", items + tampered + wrong_key)
    n = len(items)
    for verifier in ("curve25519_js", "libsignal"):
        ok = result[verifier]
        assert len(ok) == n + len(tampered) + len(wrong_key)
        rejected = [i for i in range(n) if not ok[i]]
        assert rejected == [], f"{verifier} rejected {len(rejected)}/{n} evolink signatures: {rejected[:5]}"
        assert not any(ok[n:]), f"{verifier} accepted a tampered signature"


@pytest.mark.baileys
def test_node_verifier_agrees_with_evolink_on_baileys_vectors(node_bin: str) -> None:
    """The live verifier accepts the committed Baileys signatures and rejects their flipped copies."""
    items = [{"pub": s["public"], "msg": s["message"], "sig": s["signature"]} for s in SIGS[:30]]
    flipped = [{**it, "sig": _flip(bytes.fromhex(it["sig"]), 100).hex()} for it in items]
    result = run_node_json("verify_signatures.mjs", items + flipped)
    assert result["curve25519_js"] == [True] * len(items) + [False] * len(flipped)
    assert result["libsignal"] == result["curve25519_js"]
