"""Live cross-check of evolink.signal against the real libsignal and Baileys' GroupCipher.

A node child process (``signal_live.mjs``: npm libsignal 6.0.0 + Baileys 7.0.0-rc14 sender keys)
and evolink talk both ways: evolink encrypts and libsignal decrypts, and the reverse — first
pkmsgs, long ping-pong runs with ratchet steps, out-of-order and skipped messages, sessions
replaced by either side, and sender keys in both directions. Every evolink record is persisted
and reloaded (``to_bytes``/``from_bytes``) after each step, as the gateway would.
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
from typing import Any

import pytest

from evolink.signal import (
    CiphertextMessage,
    DuplicateMessage,
    IdentityKeyPair,
    PreKeyBundle,
    PreKeyRecord,
    ProtocolAddress,
    SenderKeyRecord,
    SessionRecord,
    SignedPreKeyRecord,
    create_sender_key_distribution,
    decrypt_msg,
    decrypt_pkmsg,
    encrypt,
    group_decrypt,
    group_encrypt,
    pad,
    process_sender_key_distribution,
    session_from_bundle,
    unpad,
)

from .vectorlib import INTEROP_DIR

pytestmark = pytest.mark.baileys
SEED = int(os.environ.get("EVOLINK_INTEROP_SEED", "20261206"))
REPLY_TIMEOUT = 30.0
GROUP = "120363000000000042@g.us"


class LibPeer:
    """The node libsignal peer, one JSON line per request."""

    def __init__(self, node: str) -> None:
        self.proc = subprocess.Popen([node, str(INTEROP_DIR / "signal_live.mjs")], cwd=INTEROP_DIR,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._buf = b""

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}).encode() + b"\n")
        self.proc.stdin.flush()
        while b"\n" not in self._buf:
            ready, _, _ = select.select([self.proc.stdout], [], [], REPLY_TIMEOUT)
            assert ready, f"libsignal peer did not answer {op} within {REPLY_TIMEOUT}s"
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            assert chunk, f"libsignal peer exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        out: dict[str, Any] = json.loads(line)
        return out

    def ok(self, op: str, **args: Any) -> dict[str, Any]:
        out = self.call(op, **args)
        assert "error" not in out, f"libsignal {op}: {out['error']}"
        return out

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Device:
    """Keys of one device, as evolink holds them (evolink side) or hands them to the node peer."""

    def __init__(self, rng: random.Random, name: str, device_id: int, pre_keys: int = 4) -> None:
        self.addr = ProtocolAddress(name, device_id)
        self.rbytes = rng.randbytes
        self.identity = IdentityKeyPair.generate(self.rbytes)
        self.registration_id = rng.randrange(1, 16384)
        self.spk = SignedPreKeyRecord.generate(1, self.identity, self.rbytes)
        self.pre_keys = {i: PreKeyRecord.generate(i, self.rbytes) for i in range(1, pre_keys + 1)}

    def bundle(self, pre_key_id: int | None) -> PreKeyBundle:
        pk = self.pre_keys[pre_key_id].key_pair.public if pre_key_id is not None else None
        return PreKeyBundle(self.registration_id, self.addr.device_id, self.identity.public, self.spk.id,
                            self.spk.key_pair.public, self.spk.signature, pre_key_id, pk)

    def bundle_json(self, pre_key_id: int | None) -> dict[str, Any]:
        b = self.bundle(pre_key_id)
        return {"registration_id": b.registration_id, "identity_key": b.identity_key.hex(),
                "signed_pre_key_id": b.signed_pre_key_id, "signed_pre_key": b.signed_pre_key.hex(),
                "signed_pre_key_signature": b.signed_pre_key_signature.hex(), "pre_key_id": b.pre_key_id,
                "pre_key": b.pre_key.hex() if b.pre_key else None}

    def init_json(self) -> dict[str, Any]:
        return {"identity_private": self.identity.private.hex(), "registration_id": self.registration_id,
                "signed_pre_key": {"id": self.spk.id, "private": self.spk.key_pair.private.hex(),
                                   "signature": self.spk.signature.hex()},
                "pre_keys": [{"id": p.id, "private": p.key_pair.private.hex()} for p in self.pre_keys.values()]}


class Evo(Device):
    """evolink's side: one session record for the peer, persisted (bytes) after every step."""

    def __init__(self, rng: random.Random, name: str, device_id: int) -> None:
        super().__init__(rng, name, device_id)
        self.session: bytes | None = None

    @property
    def record(self) -> SessionRecord | None:
        return SessionRecord.from_bytes(self.session) if self.session is not None else None

    def start(self, bundle: PreKeyBundle) -> None:
        self.session = session_from_bundle(self.record, self.identity, self.registration_id, bundle,
                                           self.rbytes).to_bytes()

    def encrypt(self, text: str) -> CiphertextMessage:
        rec = self.record
        assert rec is not None
        new, ct = encrypt(rec, self.identity, pad(text.encode(), self.rbytes))
        self.session = new.to_bytes()
        return ct

    def decrypt(self, type_: str, body_hex: str) -> str:
        body = bytes.fromhex(body_hex)
        if type_ == "pkmsg":
            res = decrypt_pkmsg(self.record, self.identity, self.registration_id, body, self.pre_keys.get,
                                lambda i: self.spk if i == self.spk.id else None, self.rbytes)
        else:
            res = decrypt_msg(self.record, self.identity, body, self.rbytes)
        if res.used_pre_key_id is not None:
            del self.pre_keys[res.used_pre_key_id]  # same "transaction" as the session below
        self.session = res.record.to_bytes()
        return unpad(res.plaintext).decode()


def _addr(a: ProtocolAddress) -> dict[str, Any]:
    return {"name": a.name, "device_id": a.device_id}


@pytest.fixture
def pair(node_bin: str):  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    evo = Evo(rng, "111_1", 2)
    lib_keys = Device(rng, "222_1", 5)
    lib = LibPeer(node_bin)
    try:
        lib.ok("init", **lib_keys.init_json())
        yield rng, evo, lib, lib_keys
    finally:
        lib.close()


def lib_send(lib: LibPeer, evo: Evo, text: str) -> dict[str, Any]:
    return lib.ok("encrypt", to=_addr(evo.addr), plaintext=pad(text.encode()).hex())


def lib_recv(lib: LibPeer, evo: Evo, ct: CiphertextMessage) -> str:
    out = lib.ok("decrypt", **{"from": _addr(evo.addr)}, type=ct.type, body=ct.body.hex())
    return unpad(bytes.fromhex(out["plaintext"])).decode()


def test_libsignal_starts_evolink_answers_long_run(pair) -> None:  # type: ignore[no-untyped-def]
    rng, evo, lib, _ = pair
    lib.ok("process_bundle", to=_addr(evo.addr), bundle=evo.bundle_json(1))
    first = [lib_send(lib, evo, f"hello {i}") for i in range(3)]
    assert {m["type"] for m in first} == {"pkmsg"}
    for i in (2, 0, 1):  # pkmsgs out of order; the first one consumes pre-key 1
        assert evo.decrypt(first[i]["type"], first[i]["body"]) == f"hello {i}"
    assert 1 not in evo.pre_keys
    ct = evo.encrypt("hi back")
    assert ct.type == "msg" and lib_recv(lib, evo, ct) == "hi back"
    # a long ping-pong with bursts (ratchet steps both ways), held-back and reordered messages
    held: list[tuple[int, str, dict[str, Any]]] = []
    for rnd in range(30):
        burst = [(f"lib {rnd}.{k}", lib_send(lib, evo, f"lib {rnd}.{k}")) for k in range(rng.randint(1, 4))]
        assert all(m["type"] == "msg" for _, m in burst)
        rng.shuffle(burst)
        if rnd % 5 == 3 and rnd < 27:
            held.append((rnd, *burst.pop()))
        for text, m in burst:
            assert evo.decrypt(m["type"], m["body"]) == text
        # released three ratchet turns later: a closed chain's stored skipped key decrypts it
        # (libsignal keeps 5 receiving chains per session; libsignal-JS keeps all)
        for item in [h for h in held if h[0] == rnd - 3]:
            held.remove(item)
            assert evo.decrypt(item[2]["type"], item[2]["body"]) == item[1]
        for k in range(rng.randint(1, 3)):
            text = f"evo {rnd}.{k}"
            assert lib_recv(lib, evo, evo.encrypt(text)) == text
    assert not held


def test_evolink_starts_libsignal_answers(pair) -> None:  # type: ignore[no-untyped-def]
    _, evo, lib, lib_keys = pair
    evo.start(lib_keys.bundle(2))
    cts = [evo.encrypt(f"from evo {i}") for i in range(3)]
    assert [c.type for c in cts] == ["pkmsg"] * 3
    for i in (1, 2, 0):
        assert lib_recv(lib, evo, cts[i]) == f"from evo {i}"
    back = lib_send(lib, evo, "libsignal answers")
    assert back["type"] == "msg" and evo.decrypt(back["type"], back["body"]) == "libsignal answers"
    ct = evo.encrypt("now plain")
    assert ct.type == "msg" and lib_recv(lib, evo, ct) == "now plain"
    # without a one-time pre-key: evolink replaces its session; libsignal accepts the new base key
    evo.start(lib_keys.bundle(None))
    ct = evo.encrypt("three-DH session")
    assert ct.type == "pkmsg" and lib_recv(lib, evo, ct) == "three-DH session"
    back = lib_send(lib, evo, "ok")
    assert evo.decrypt(back["type"], back["body"]) == "ok"
    assert evo.record is not None and evo.record.session_count == 2


def test_sessions_replaced_by_either_side_with_late_messages(pair) -> None:  # type: ignore[no-untyped-def]
    _, evo, lib, lib_keys = pair
    lib.ok("process_bundle", to=_addr(evo.addr), bundle=evo.bundle_json(1))
    m = lib_send(lib, evo, "first")
    assert evo.decrypt(m["type"], m["body"]) == "first"
    assert lib_recv(lib, evo, evo.encrypt("reply")) == "reply"
    late = lib_send(lib, evo, "late from the old session")
    lib.ok("delete_session", to=_addr(evo.addr))
    lib.ok("process_bundle", to=_addr(evo.addr), bundle=evo.bundle_json(2))
    new = lib_send(lib, evo, "new session")
    assert new["type"] == "pkmsg"
    assert evo.decrypt(new["type"], new["body"]) == "new session"
    assert evo.decrypt(late["type"], late["body"]) == "late from the old session"
    assert lib_recv(lib, evo, evo.encrypt("on the new session")) == "on the new session"
    # now evolink replaces the session from its side while libsignal still has the open one
    evo.start(lib_keys.bundle(3))
    ct = evo.encrypt("evo restarted the session")
    assert ct.type == "pkmsg" and lib_recv(lib, evo, ct) == "evo restarted the session"
    m = lib_send(lib, evo, "and libsignal follows")
    assert evo.decrypt(m["type"], m["body"]) == "and libsignal follows"
    # a replayed pkmsg is refused by evolink; the session still works afterwards
    with pytest.raises(DuplicateMessage):
        evo.decrypt(new["type"], new["body"])
    assert lib_recv(lib, evo, evo.encrypt("still fine")) == "still fine"


def test_sender_keys_both_ways(pair) -> None:  # type: ignore[no-untyped-def]
    rng, evo, lib, lib_keys = pair
    # Baileys → evolink: Baileys creates its key (OS randomness), iterations 0, 2, 4, …
    skdm = lib.ok("create_skdm", group=GROUP, sender=_addr(lib_keys.addr))["skdm"]
    theirs = process_sender_key_distribution(None, bytes.fromhex(skdm))
    msgs = [(f"g{i}", lib.ok("group_encrypt", group=GROUP, sender=_addr(lib_keys.addr),
                             plaintext=pad(f"g{i}".encode(), rng.randbytes).hex())["skmsg"]) for i in range(8)]
    order = list(range(8))
    rng.shuffle(order)
    for i in order:
        theirs, pt = group_decrypt(theirs, bytes.fromhex(msgs[i][1]))
        assert unpad(pt).decode() == msgs[i][0]
        theirs = SenderKeyRecord.from_bytes(theirs.to_bytes())
    # evolink → Baileys: our SKDM, then skmsgs decrypted in order and out of order
    ours, our_skdm = create_sender_key_distribution(None, rng.randbytes)
    lib.ok("process_skdm", group=GROUP, sender=_addr(evo.addr), skdm=our_skdm.hex())
    sent = []
    for i in range(10):
        ours, skmsg = group_encrypt(SenderKeyRecord.from_bytes(ours.to_bytes()), pad(f"e{i}".encode(), rng.randbytes))
        sent.append(skmsg)
    for i in [0, 1, 2, 5, 3, 9, 4]:
        out = lib.ok("group_decrypt", group=GROUP, sender=_addr(evo.addr), skmsg=sent[i].hex())
        assert unpad(bytes.fromhex(out["plaintext"])).decode() == f"e{i}"
    # the SKDM of an existing key (as sent to a newly added member) covers only what follows
    _, skdm_again = create_sender_key_distribution(ours, rng.randbytes)
    assert skdm_again != our_skdm
    ours, skmsg = group_encrypt(ours, pad(b"after", rng.randbytes))
    out = lib.ok("group_decrypt", group=GROUP, sender=_addr(evo.addr), skmsg=skmsg.hex())
    assert unpad(bytes.fromhex(out["plaintext"])) == b"after"
    # a tampered skmsg is refused by Baileys too (signature), proving the signature is checked there
    bad = bytearray(skmsg)
    bad[5] ^= 1
    assert "error" in lib.call("group_decrypt", group=GROUP, sender=_addr(evo.addr), skmsg=bytes(bad).hex())
