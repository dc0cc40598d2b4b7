"""Fakes for messaging unit tests: a stateful authenticated toy cipher behind the Signal port, and a
connection that records what is sent and answers queries from a script.

The toy cipher is not Signal; it has the properties the engine relies on: sessions are built from
bundles (initiator sends pkmsg until it hears back), every message steps a counter, replays and
tampering fail with ``E2EError``, and every function is pure (returns the new record).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

from evolink.wa.creds import Creds
from evolink.wa.e2e import (
    Bundle,
    Decrypted,
    E2EError,
    Encrypted,
    GroupEncrypted,
    NoSenderKey,
    NoSession,
    OwnKeys,
    PreKeyLookup,
)
from evolink.wire.binary import Node


def _stream(key: bytes, counter: int, n: int) -> bytes:
    out = b""
    block = 0
    while len(out) < n:
        out += hashlib.sha256(key + counter.to_bytes(4, "big") + block.to_bytes(4, "big")).digest()
        block += 1
    return out[:n]


def _seal(key: bytes, counter: int, data: bytes) -> bytes:
    body = counter.to_bytes(4, "big") + bytes(a ^ b for a, b in zip(data, _stream(key, counter, len(data)), strict=True))
    return body + hmac.new(key, body, "sha256").digest()[:8]


def _open(key: bytes, blob: bytes) -> tuple[int, bytes]:
    if len(blob) < 12:
        raise E2EError("too short")
    body, mac = blob[:-8], blob[-8:]
    if not hmac.compare_digest(hmac.new(key, body, "sha256").digest()[:8], mac):
        raise E2EError("bad MAC")
    counter = int.from_bytes(body[:4], "big")
    return counter, bytes(a ^ b for a, b in zip(body[4:], _stream(key, counter, len(body) - 4), strict=True))


def _key(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"".join(sorted([a, b]))).digest()


class ToyCipher:
    def decrypt(self, own: OwnKeys, kind: str, record: bytes | None, data: bytes,
                pre_key: PreKeyLookup) -> Decrypted:
        used: int | None = None
        remote: bytes | None = None
        if kind == "pkmsg":
            if len(data) < 36:
                raise E2EError("short pkmsg")
            remote, pk_id, data = data[:32], int.from_bytes(data[32:36], "big"), data[36:]
            state = json.loads(record) if record else None
            if state is None or state["peer"] != remote.hex():
                if pk_id and pre_key(pk_id) is None:
                    raise E2EError("Invalid PreKey ID")
                used = pk_id or None
                state = {"key": _key(own.identity.public, remote).hex(), "peer": remote.hex(), "send": 0,
                         "recv": -1, "pending": False}
        else:
            if record is None:
                raise NoSession("no session")
            state = json.loads(record)
        counter, plain = _open(bytes.fromhex(state["key"]), data)
        if counter <= state["recv"]:
            raise E2EError("Key used already or never filled")
        state = {**state, "recv": counter, "pending": False}
        return Decrypted(plain, json.dumps(state).encode(), used, remote)

    def encrypt(self, own: OwnKeys, record: bytes, plaintext: bytes) -> Encrypted:
        state = json.loads(record)
        blob = _seal(bytes.fromhex(state["key"]), state["send"], plaintext)
        new = json.dumps({**state, "send": state["send"] + 1}).encode()
        if state["pending"]:
            return Encrypted("pkmsg", own.identity.public + state["pk"].to_bytes(4, "big") + blob, new)
        return Encrypted("msg", blob, new)

    def session_from_bundle(self, own: OwnKeys, bundle: Bundle) -> bytes:
        if len(bundle.identity) != 32:
            raise E2EError("bad bundle")
        return json.dumps({"key": _key(own.identity.public, bundle.identity).hex(), "peer": bundle.identity.hex(),
                           "send": 0, "recv": -1, "pending": True, "pk": bundle.pre_key_id or 0}).encode()

    def group_encrypt(self, record: bytes | None, plaintext: bytes) -> GroupEncrypted:
        state = json.loads(record) if record else {"key": hashlib.sha256(plaintext + b"k").hexdigest(), "iter": 0}
        dist = json.dumps(state).encode()
        blob = _seal(bytes.fromhex(state["key"]), state["iter"], plaintext)
        return GroupEncrypted(blob, json.dumps({**state, "iter": state["iter"] + 1}).encode(), dist)

    def group_decrypt(self, record: bytes | None, data: bytes) -> tuple[bytes, bytes]:
        if record is None:
            raise NoSenderKey("no sender key")
        state = json.loads(record)
        counter, plain = _open(bytes.fromhex(state["key"]), data)
        if counter < state["iter"]:
            raise E2EError("old counter")
        return plain, json.dumps({**state, "iter": counter + 1}).encode()

    def process_distribution(self, record: bytes | None, distribution: bytes) -> bytes:
        json.loads(distribution)
        return distribution


def bundle_node(jid: str, creds: Creds, pre_key_id: int | None = 7) -> Node:
    children = [
        Node("registration", {}, creds.registration_id.to_bytes(4, "big")),
        Node("type", {}, b"\x05"),
        Node("identity", {}, creds.identity_public),
        Node("skey", {}, [Node("id", {}, (1).to_bytes(3, "big")), Node("value", {}, creds.signed_pre_key_public),
                          Node("signature", {}, creds.signed_pre_key_signature)]),
    ]
    if pre_key_id is not None:
        children.append(Node("key", {}, [Node("id", {}, pre_key_id.to_bytes(3, "big")),
                                         Node("value", {}, b"\x01" * 32)]))
    return Node("user", {"jid": jid}, children)


class FakeConn:
    """Records sent stanzas; ``query`` answers through ``answer(node) -> Node`` (set by the test)."""

    def __init__(self, creds: Creds, answer: Callable[[Node], Node] | None = None) -> None:
        self.creds = creds
        self.sent: list[Node] = []
        self.queries: list[Node] = []
        self.answer = answer or (lambda n: Node("iq", {"type": "result", "id": n.attrs.get("id", "")}))
        self.opened = True
        self.closed = False
        self.number = 1
        self._n = 0
        self.tasks: list[asyncio.Task[Any]] = []
        self.on_send: Callable[[Node], None] | None = None

    def next_id(self) -> str:
        self._n += 1
        return f"q{self._n}"

    async def send(self, node: Node) -> None:
        self.sent.append(node)
        if self.on_send is not None:
            self.on_send(node)

    async def query(self, node: Node, within: float | None = None) -> Node:
        node.attrs.setdefault("id", self.next_id())
        self.queries.append(node)
        return self.answer(node)

    def spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    async def drain(self) -> None:
        while self.tasks:
            tasks, self.tasks = self.tasks, []
            await asyncio.gather(*tasks)

    def of(self, tag: str) -> list[Node]:
        return [n for n in self.sent if n.tag == tag]
