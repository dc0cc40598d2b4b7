"""Tampered ``<enc>`` stanzas through the engine's receive path with the real Signal package (issue 9).

Two engines (A and B, plus A's second device) with the memory store and ``evolink.signal`` behind
the cipher port, routed by the glue of test_messaging_unit. Every hostile stanza must give exactly
one ``UndecryptableEvent`` with a typed reason and a retry receipt for that id, never an exception
out of ``receive``, and must leave B's stored sessions and sender keys as they were; the next
genuine message in each direction (and in the group) still decrypts.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_messaging_unit as unit
from test_messaging_unit import A_LID, A_PN, B_LID, B_PN, Peer, delivered, recv, send, server_for

from evolink.wa.config import EngineConfig
from evolink.wa.creds import MemoryCredsStore
from evolink.wa.engine import Engine
from evolink.wa.events import MessageEvent, UndecryptableEvent
from evolink.wa.signal_adapter import SignalCipher
from evolink.wire.binary import Node
from evolink.wire.crypto import KeyPair
from evolink.wire.proto import signal_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from fuzz_signal import mutate

GROUP = "120363000000000077@g.us"


def real_bundle_node(jid: str, creds: Any, pre_key_id: int | None = 7) -> Node:
    """The key-bundle answer with the device's real one-time pre-key public (the unit glue's is a dummy)."""
    children = [
        Node("registration", {}, creds.registration_id.to_bytes(4, "big")),
        Node("type", {}, b"\x05"),
        Node("identity", {}, creds.identity_public),
        Node("skey", {}, [Node("id", {}, creds.signed_pre_key_id.to_bytes(3, "big")),
                          Node("value", {}, creds.signed_pre_key_public),
                          Node("signature", {}, creds.signed_pre_key_signature)]),
    ]
    if 7 in creds.pre_keys:  # consumed keys leave creds: then the server has no one-time key to hand out
        children.append(Node("key", {}, [Node("id", {}, (7).to_bytes(3, "big")),
                                         Node("value", {}, KeyPair.from_private(creds.pre_keys[7]).public)]))
    return Node("user", {"jid": jid}, children)


class SignalPeer(Peer):
    def __init__(self, pn: str, lid: str, device: int) -> None:
        super().__init__(pn, lid, device)
        self.creds.pre_keys[7] = KeyPair.generate().private
        self.engine = Engine(EngineConfig(query_timeout=1.0), MemoryCredsStore(), message_store=self.store,
                             cipher=SignalCipher())
        self.engine._creds = self.creds
        self.engine._conn = self.conn  # type: ignore[assignment]
        self.engine._state = "open"
        self.engine.subscribe(self.events.append)


@pytest.fixture
def peers(monkeypatch: pytest.MonkeyPatch) -> tuple[SignalPeer, SignalPeer, SignalPeer]:
    monkeypatch.setattr(unit, "bundle_node", real_bundle_node)
    a, b, a2 = SignalPeer(A_PN, A_LID, 1), SignalPeer(B_PN, B_LID, 1), SignalPeer(A_PN, A_LID, 2)
    server_for(a, [b, a2], {GROUP: [f"{A_LID}@lid", f"{B_LID}@lid"]})
    server_for(b, [a, a2])
    return a, b, a2


B_CHAT, A_CHAT = f"{B_PN}@s.whatsapp.net", f"{A_PN}@s.whatsapp.net"


def texts(p: Peer) -> list[str]:
    return [e.text for e in p.of(MessageEvent)]


def state(p: Peer) -> tuple[dict[str, bytes], dict[Any, bytes]]:
    return dict(p.store.sessions), dict(p.store.sender_keys)


async def established(a: SignalPeer, b: SignalPeer) -> None:
    """pkmsg each way, then both sides send ``msg``; Alice's group sender key known to Bob."""
    await recv(b, delivered(await send(a, B_CHAT, "hello"), a, b))
    await recv(a, delivered(await send(b, A_CHAT, "hi back"), b, a))
    await recv(b, delivered(await send(a, GROUP, "group hello"), a, b))
    assert texts(b) == ["hello", "group hello"] and texts(a) == ["hi back"]


def _enc(node: Node, kind: str) -> Node:
    found = [e for e in node.children("enc") if e.attrs.get("type") == kind]
    assert found, f"no <enc type={kind}>"
    return found[0]


def _flip_mac(body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 0x01])


def _flip_ciphertext(body: bytes) -> bytes:
    m = pb.WhisperMessage()
    m.ParseFromString(body[1:-8])
    m.ciphertext = bytes([m.ciphertext[0] ^ 0x80]) + m.ciphertext[1:]
    return body[:1] + m.SerializeToString() + body[-8:]


def _unknown_sender_key_id(body: bytes) -> bytes:
    m = pb.SenderKeyMessage()
    m.ParseFromString(body[1:-64])
    m.id = (m.id + 1) % (1 << 31)
    return body[:1] + m.SerializeToString() + body[-64:]


def _bad_signature(body: bytes) -> bytes:
    return body[:-1] + bytes([body[-1] ^ 0x20])


def _unknown_pre_key(body: bytes) -> bytes:
    m = pb.PreKeyWhisperMessage()
    m.ParseFromString(body[1:])
    m.preKeyId = 4242
    m.baseKey = b"\x05" + KeyPair.generate().public  # a new session, so the pre-key is looked up
    return body[:1] + m.SerializeToString()


TAMPER: list[tuple[str, str, Callable[[bytes], bytes], set[str]]] = [
    ("1:1", "msg", _flip_mac, {"bad_mac"}),
    ("1:1", "msg", _flip_ciphertext, {"bad_mac"}),
    ("1:1", "msg", lambda b: b[: len(b) // 2], {"malformed", "bad_mac"}),
    ("1:1", "msg", lambda b: b"\x11" + b[1:], {"malformed"}),
    ("1:1", "msg", lambda b: b"\x33" + bytes(40), {"malformed"}),
    ("group", "skmsg", _unknown_sender_key_id, {"no_sender_key"}),
    ("group", "skmsg", _bad_signature, {"bad_signature"}),
    ("group", "skmsg", lambda b: b[:20], {"malformed"}),
]


@pytest.mark.parametrize(("chat", "kind", "tamper", "reasons"), TAMPER,
                         ids=["mac", "ciphertext", "truncated", "version", "garbage", "unknown-sk-id",
                              "sk-signature", "sk-truncated"])
async def test_tampered_enc_gives_undecryptable_and_retry_and_the_session_survives(
        peers: Any, chat: str, kind: str, tamper: Callable[[bytes], bytes], reasons: set[str]) -> None:
    a, b, _ = peers
    await established(a, b)
    before = state(b)
    node = delivered(await send(a, GROUP if chat == "group" else B_CHAT, "tampered"), a, b)
    enc = _enc(node, kind)
    assert isinstance(enc.content, bytes)
    enc.content = tamper(enc.content)
    await recv(b, node)  # never raises
    bad = b.of(UndecryptableEvent)
    assert len(bad) == 1 and bad[0].id == node.attrs["id"] and bad[0].reason in reasons, bad
    retry = b.conn.of("receipt")[-1]
    assert retry.attrs["type"] == "retry" and retry.attrs["id"] == node.attrs["id"]
    assert state(b) == before and node.attrs["id"] not in b.store.incoming
    # the next genuine messages decrypt, both ways and in the group
    await recv(b, delivered(await send(a, B_CHAT, "next 1:1"), a, b))
    await recv(b, delivered(await send(a, GROUP, "next group"), a, b))
    await recv(a, delivered(await send(b, A_CHAT, "and back"), b, a))
    assert texts(b)[-2:] == ["next 1:1", "next group"] and texts(a)[-1] == "and back"


async def test_replay_under_a_new_id_and_unknown_pre_key_are_typed(peers: Any) -> None:
    a, b, _ = peers
    await established(a, b)
    first = delivered(await send(a, B_CHAT, "once"), a, b)
    await recv(b, first)
    before = state(b)
    again = Node("message", {**first.attrs, "id": "3EB0REPLAYED0000000001"}, first.children("enc"))
    await recv(b, again)  # same ciphertext, new stanza id: the store dedup does not catch it
    assert b.of(UndecryptableEvent)[-1].reason == "duplicate" and state(b) == before
    assert b.conn.of("receipt")[-1].attrs == {"id": "3EB0REPLAYED0000000001", "to": first.attrs["from"],
                                               "type": "retry"}
    # a pkmsg opening a new session with a one-time pre-key we never issued
    c = SignalPeer("15550003333", "900000003", 1)
    server_for(c, [b])
    pk = delivered(await send(c, B_CHAT, "from c"), c, b)
    _enc(pk, "pkmsg").content = _unknown_pre_key(_enc(pk, "pkmsg").content)  # type: ignore[arg-type]
    await recv(b, pk)
    assert b.of(UndecryptableEvent)[-1].reason == "unknown_pre_key" and state(b) == before
    await recv(b, delivered(await send(a, B_CHAT, "still fine"), a, b))
    assert texts(b)[-1] == "still fine" and texts(b).count("once") == 1


async def test_hundreds_of_mutated_stanzas_never_escape_and_never_break_the_session(peers: Any) -> None:
    a, b, _ = peers
    await established(a, b)
    rng = random.Random(9)
    others: list[bytes] = []
    outcomes = {"retry": 0, "decrypted": 0}
    for i in range(300):
        to_group = rng.random() < 0.3
        node = delivered(await send(a, GROUP if to_group else B_CHAT, f"m{i}"), a, b)
        encs = node.children("enc")
        enc = rng.choice(encs)
        assert isinstance(enc.content, bytes)
        others.append(enc.content)
        enc.content = mutate(enc.content, rng, others)
        before_events = len(b.events)
        await recv(b, node)
        new = b.events[before_events:]
        if new and isinstance(new[0], UndecryptableEvent):
            assert b.conn.of("receipt")[-1].attrs["type"] == "retry"
            outcomes["retry"] += 1
        else:  # a mutation the MAC does not cover (e.g. a version nibble) may still decrypt: genuine text
            assert all(isinstance(e, MessageEvent) and e.text == f"m{i}" for e in new), new
            outcomes["decrypted"] += 1
        if i % 50 == 49:
            await recv(b, delivered(await send(a, B_CHAT, f"genuine {i}"), a, b))
            await recv(b, delivered(await send(a, GROUP, f"genuine group {i}"), a, b))
            await recv(a, delivered(await send(b, A_CHAT, f"back {i}"), b, a))
            assert texts(b)[-2:] == [f"genuine {i}", f"genuine group {i}"] and texts(a)[-1] == f"back {i}"
    assert outcomes["retry"] > 250, outcomes
