"""evolink.signal replays the committed libsignal conversation and Baileys group messages.

``tests/vectors/signal.json`` comes from ``gen_signal.mjs``: npm libsignal 6.0.0 ("lib") talks to a
second libsignal that stands in for evolink ("evo"). Here evolink plays "evo" step by step, fed the
ratchet keys the mirror drew, and must decrypt every lib message to the same plaintext and produce
byte-identical ciphertexts (lib decrypted those in the generator). Covers the first pkmsgs (out of
order), following msgs, out-of-order and skipped messages, a message of a closed chain, a session
replaced by a new pkmsg while a message of the old one is in flight, three-DH X3DH, a refused
consumed pre-key, evolink as initiator, and Baileys GroupCipher skmsgs (gaps, order, replay).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from evolink.signal import (
    DuplicateMessage,
    IdentityKeyPair,
    InvalidKeyId,
    NoSenderKey,
    PreKeyBundle,
    PreKeyRecord,
    SenderKeyRecord,
    SessionRecord,
    SignalError,
    SignedPreKeyRecord,
    decrypt_msg,
    decrypt_pkmsg,
    encrypt,
    group_decrypt,
    process_sender_key_distribution,
    session_from_bundle,
)
from evolink.wire.crypto import KeyPair

from .vectorlib import load_vectors

V = load_vectors("signal")
CONV: dict[str, Any] = V["conversation"]
GROUP: dict[str, Any] = V["group"]
ERRORS: dict[str, type[SignalError]] = {"duplicate": DuplicateMessage, "invalid_key_id": InvalidKeyId}


class Keys:
    def __init__(self, j: dict[str, Any]) -> None:
        kp = KeyPair.from_private(bytes.fromhex(j["identity_private"]))
        assert kp.public.hex() == j["identity_public"]
        self.identity = IdentityKeyPair.from_key_pair(kp)
        self.registration_id: int = j["registration_id"]
        s = j["signed_pre_key"]
        self.spk = SignedPreKeyRecord(s["id"], KeyPair.from_private(bytes.fromhex(s["private"])),
                                      bytes.fromhex(s["signature"]))
        self.pre_keys = {p["id"]: PreKeyRecord(p["id"], KeyPair.from_private(bytes.fromhex(p["private"])))
                         for p in j["pre_keys"]}

    def bundle(self, pre_key_id: int | None) -> PreKeyBundle:
        pk = self.pre_keys[pre_key_id] if pre_key_id is not None else None
        return PreKeyBundle(self.registration_id, 1, self.identity.public, self.spk.id, self.spk.key_pair.public,
                            self.spk.signature, pre_key_id, pk.key_pair.public if pk else None)


def replay_rng(keys: list[str]) -> tuple[Callable[[int], bytes], list[bytes]]:
    """An rng that hands out the mirror's ratchet private keys, in order, and nothing else."""
    queue = [bytes.fromhex(k) for k in keys]

    def rng(n: int) -> bytes:
        assert n == 32 and queue, f"evolink drew randomness the mirror did not (n={n}, left={len(queue)})"
        return queue.pop(0)

    return rng, queue


def test_conversation_replays_byte_for_byte() -> None:
    evo = Keys(CONV["evo"])
    lib = Keys(CONV["lib"])
    store = dict(evo.pre_keys)  # evo's one-time pre-keys; consumed ones are deleted as a caller would
    record: SessionRecord | None = None
    sent: dict[str, dict[str, Any]] = {}
    checked = {"decrypt": 0, "encrypt": 0, "fail": 0}
    for ev in CONV["events"]:
        op = ev["op"]
        if op == "lib_encrypt":
            sent[ev["id"]] = ev
        elif op == "evo_decrypt":
            m = sent[ev["id"]]
            rng, left = replay_rng(ev["keys"])
            before = record
            snapshot = record.to_bytes() if record is not None else None
            if m["type"] == "pkmsg":
                res = decrypt_pkmsg(record, evo.identity, evo.registration_id, bytes.fromhex(m["body"]),
                                    store.get, lambda i: evo.spk if i == evo.spk.id else None, rng)
            else:
                res = decrypt_msg(record, evo.identity, bytes.fromhex(m["body"]), rng)
            assert res.plaintext.hex() == m["plaintext"], ev["id"]
            assert res.used_pre_key_id == ev["used_pre_key_id"], ev["id"]
            assert res.remote_identity_key == lib.identity.public
            assert not left, f"{ev['id']}: evolink stepped the ratchet fewer times than libsignal"
            if before is not None:
                assert before.to_bytes() == snapshot, "the input record was mutated"
            if res.used_pre_key_id is not None:
                del store[res.used_pre_key_id]
            record = SessionRecord.from_bytes(res.record.to_bytes())  # persist/reload every step
            checked["decrypt"] += 1
        elif op == "evo_decrypt_fails":
            m = sent[ev["id"]]
            assert record is not None
            snapshot = record.to_bytes()
            with pytest.raises(ERRORS[ev["error"]]):
                if m["type"] == "pkmsg":
                    decrypt_pkmsg(record, evo.identity, evo.registration_id, bytes.fromhex(m["body"]),
                                  store.get, lambda i: evo.spk, replay_rng([])[0])
                else:
                    decrypt_msg(record, evo.identity, bytes.fromhex(m["body"]), replay_rng([])[0])
            assert record.to_bytes() == snapshot
            checked["fail"] += 1
        elif op == "evo_encrypt":
            assert record is not None
            record, ct = encrypt(record, evo.identity, bytes.fromhex(ev["plaintext"]))
            assert ct.type == ev["type"], ev["id"]
            assert ct.body.hex() == ev["body"], f"{ev['id']}: ciphertext differs from libsignal's"
            checked["encrypt"] += 1
        elif op == "evo_bundle":
            rng, left = replay_rng(ev["keys"])
            record = session_from_bundle(record, evo.identity, evo.registration_id, lib.bundle(ev["pre_key_id"]), rng)
            assert not left
        else:
            assert op in ("lib_bundle", "note"), op
    assert checked["decrypt"] >= 15 and checked["encrypt"] >= 8 and checked["fail"] >= 3, checked
    assert record is not None and record.session_count >= 4  # replaced sessions are kept, closed


def _group_messages() -> dict[str, dict[str, str]]:
    return {m["id"]: m for m in GROUP["messages"]}


def test_baileys_group_messages_decrypt_in_any_order_and_replays_fail() -> None:
    msgs = _group_messages()
    with pytest.raises(NoSenderKey):
        group_decrypt(SenderKeyRecord(), bytes.fromhex(msgs["g0"]["skmsg"]))
    record = process_sender_key_distribution(None, bytes.fromhex(GROUP["skdm"]))
    assert record.key_ids == (GROUP["key_id"],)
    for mid in GROUP["delivery_order"]:
        if mid == "g6":
            record = process_sender_key_distribution(record, bytes.fromhex(GROUP["skdm_later"]))
        record, plaintext = group_decrypt(record, bytes.fromhex(msgs[mid]["skmsg"]))
        assert plaintext.hex() == msgs[mid]["plaintext"], mid
        record = SenderKeyRecord.from_bytes(record.to_bytes())
    snapshot = record.to_bytes()
    with pytest.raises(DuplicateMessage):
        group_decrypt(record, bytes.fromhex(msgs[GROUP["replay"]]["skmsg"]))
    assert record.to_bytes() == snapshot
    # the message that never arrived is still decryptable from its stored skipped key
    for mid in GROUP["never_delivered"]:
        _, plaintext = group_decrypt(record, bytes.fromhex(msgs[mid]["skmsg"]))
        assert plaintext.hex() == msgs[mid]["plaintext"]


def test_a_repeated_skdm_does_not_rewind_the_chain() -> None:
    msgs = _group_messages()
    record = process_sender_key_distribution(None, bytes.fromhex(GROUP["skdm"]))
    record, _ = group_decrypt(record, bytes.fromhex(msgs["g0"]["skmsg"]))
    again = process_sender_key_distribution(record, bytes.fromhex(GROUP["skdm"]))
    with pytest.raises(DuplicateMessage):
        group_decrypt(again, bytes.fromhex(msgs["g0"]["skmsg"]))
