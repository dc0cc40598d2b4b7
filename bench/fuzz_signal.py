"""Fuzz the Signal layer's decrypt paths: pkmsg, msg, skmsg, SKDMs, stored records and padding.

    .venv/bin/python bench/fuzz_signal.py [--n 100000] [--workers 2] [--seed 1] [--guard 2.0]

Each task builds a seeded two-party world (Alice and Bob with identities, a signed and one-time
pre-keys, a 1:1 session whose ratchet has turned a few times, and Alice's group sender key known to
Bob), records every genuine ciphertext Bob received together with Bob's record *before* it, then
feeds mutated inputs to :mod:`evolink.signal`'s pure functions. Every input must be accepted or
refused with a ``SignalError`` subclass. The outcomes that fail the run:

- *crash*: any other exception (IndexError, ValueError, cryptography's errors, …);
- *hang*: one input using more than ``--guard`` seconds of CPU (SIGPROF: CPU time, so a loaded
  machine does not turn slow inputs into false hangs);
- *forgery*: an input accepted with a plaintext that no genuine message carries (a splice may
  legitimately carry another genuine message whole), or a replay of a decrypted message accepted;
- *corrupted*: the *live* target feeds mutated inputs to Bob's live records the way the engine
  does (keep the returned record on success, keep the old one on error) and, every few inputs and
  at the end of each task, requires a fresh genuine message to decrypt in both directions and in
  the group. A failure there means a hostile input broke a real session.

Mutations: byte flips and "interesting" bytes, inserts, deletes, duplicated ranges, splices with
other ciphertexts, truncations; wrong MACs and signatures; bad version bytes; protobuf-aware edits
(counters far ahead, unknown pre-key / signed pre-key / sender-key ids, random and low-order
public keys, removed fields, swapped inner messages); replays; random bytes. The run prints
per-target counts, the refusal types, inputs/s, the slowest input and the first findings, and
exits 1 if there was any crash, hang, forgery or corruption. ``run_task`` is importable: the suite
runs a bounded version (tests/wa/test_fuzz_signal.py).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from evolink.signal import (
    DuplicateMessage,
    IdentityKeyPair,
    PreKeyBundle,
    PreKeyRecord,
    SenderKeyRecord,
    SessionRecord,
    SignalError,
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
from evolink.wire.proto import signal_pb2 as pb

INTERESTING = [0, 1, 2, 3, 0x05, 0x08, 0x0A, 0x10, 0x12, 0x1A, 0x22, 0x33, 0x7F, 0x80, 0x81, 0xFE, 0xFF]
# Curve25519 points of small order and non-canonical encodings (the DH must refuse them, typed).
LOW_ORDER = [
    bytes(32),
    b"\x01" + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes.fromhex("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]
TASK_SIZE = 5_000
LIVE_CHECK_EVERY = 25  # live-target inputs between two genuine round trips
GROUP = "120363000000000001@g.us"
OUTCOMES = ("accepted", "rejected", "crash", "hang", "forgery", "corrupted")
BAD = ("crash", "hang", "forgery", "corrupted")


class _Hang(BaseException):
    """Raised from SIGPROF when one input exceeds the CPU-time guard (not an Exception on purpose)."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _Hang


class Forgery(Exception):
    """An input that must not be accepted was accepted (or accepted with another plaintext)."""


class Corrupted(Exception):
    """A genuine message no longer decrypts with the live record after hostile inputs."""


@dataclass
class Stats:
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    findings: list[tuple[str, str, str]] = field(default_factory=list)
    slowest: float = 0.0
    slowest_target: str = ""
    live_checks: int = 0

    def add(self, target: str, outcome: str) -> None:
        per = self.counts.setdefault(target, dict.fromkeys(OUTCOMES, 0))
        per[outcome] += 1

    def merge(self, other: Stats) -> None:
        for target, per in other.counts.items():
            mine = self.counts.setdefault(target, dict.fromkeys(OUTCOMES, 0))
            for k, v in per.items():
                mine[k] += v
        for k, v in other.refusals.items():
            self.refusals[k] = self.refusals.get(k, 0) + v
        self.findings.extend(other.findings[: max(0, 20 - len(self.findings))])
        self.live_checks += other.live_checks
        if other.slowest > self.slowest:
            self.slowest, self.slowest_target = other.slowest, other.slowest_target

    def total(self, outcome: str) -> int:
        return sum(per[outcome] for per in self.counts.values())

    @property
    def inputs(self) -> int:
        return sum(sum(per.values()) for per in self.counts.values())


# --- mutations ------------------------------------------------------------------------------------


def mutate(data: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 5))):
        op = rng.randrange(8)
        n = len(buf)
        if op == 0 and n:
            buf[rng.randrange(n)] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice(INTERESTING)
        elif op == 2:
            at = rng.randrange(n + 1)
            buf[at:at] = rng.randbytes(rng.choice((1, 1, 2, 4, 16)))
        elif op == 3 and n > 1:
            at = rng.randrange(n)
            del buf[at : at + rng.choice((1, 1, 2, 8, 32))]
        elif op == 4 and n > 1:
            at = rng.randrange(n)
            buf[at:at] = buf[at : at + rng.choice((1, 4, 16, 64))] * rng.choice((1, 2, 8))
        elif op == 5 and n and others:
            other = rng.choice(others)
            buf[rng.randrange(n) :] = other[rng.randrange(len(other)) :]
        elif op == 6 and n:
            del buf[rng.randrange(n) :]
        elif op == 7 and n > 4:
            at = rng.randrange(n)
            buf[at : at + 4] = b"\xff" * len(buf[at : at + 4])
    return bytes(buf)


def _public(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.4:
        raw = rng.choice(LOW_ORDER)
    elif roll < 0.9:
        raw = rng.randbytes(32)
    else:
        return rng.randbytes(rng.choice((0, 1, 31, 32, 34)))
    return (b"\x05" if rng.random() < 0.9 else bytes([rng.randrange(256)])) + raw


def _big(rng: random.Random) -> int:
    return rng.choice((0, 1, 2, 1999, 2000, 2001, 2002, 65535, 1 << 24, (1 << 31) - 1, (1 << 32) - 1,
                       rng.randrange(1 << 32)))


# --- the world --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    kind: str  # pkmsg | msg | skmsg
    body: bytes
    before: SessionRecord | SenderKeyRecord  # Bob's record before this message
    after: SessionRecord | SenderKeyRecord  # … and after it decrypted
    plaintext: bytes  # the padded plaintext


class World:
    """Alice and Bob with a real session and a group sender key, built from one seeded rng."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        rb = rng.randbytes
        self.rb = rb
        self.alice = IdentityKeyPair.generate(rb)
        self.bob = IdentityKeyPair.generate(rb)
        self.alice_reg, self.bob_reg = 1111, 2222
        self.spk = SignedPreKeyRecord.generate(1, self.bob, rb)
        self.pre_keys = {i: PreKeyRecord.generate(i, rb) for i in (31, 32, 33)}
        self.samples: list[Sample] = []
        bundle = PreKeyBundle(self.bob_reg, 1, self.bob.public, 1, self.spk.key_pair.public, self.spk.signature,
                              31, self.pre_keys[31].key_pair.public)
        a_rec = session_from_bundle(None, self.alice, self.alice_reg, bundle, rb)
        b_rec = SessionRecord()
        # Three pkmsgs before Bob answers (the first one out of order), then a ratchet turn each way.
        pk: list[tuple[bytes, bytes]] = []
        for i in range(3):
            plain = pad(f"pkmsg {i}".encode(), rb)
            a_rec, ct = encrypt(a_rec, self.alice, plain)
            pk.append((ct.body, plain))
        for body, plain in (pk[1], pk[0], pk[2]):
            b_rec = self._bob_receives("pkmsg", b_rec, body, plain)
        for turn in range(3):
            b_rec, reply = encrypt(b_rec, self.bob, pad(f"reply {turn}".encode(), rb))
            a_rec = decrypt_msg(a_rec, self.alice, reply.body, rb).record
            burst = []
            for i in range(4):
                plain = pad(f"msg {turn}.{i} ".encode() + rb(rng.randrange(0, 80)), rb)
                a_rec, ct = encrypt(a_rec, self.alice, plain)
                burst.append((ct.body, plain))
            for body, plain in (burst[2], burst[0], burst[1], burst[3]):  # out of order: skipped keys
                b_rec = self._bob_receives("msg", b_rec, body, plain)
        self.a_rec, self.b_rec = a_rec, b_rec
        # Group: Alice's sender key, Bob processes her SKDM, then a few skmsgs (one skipped).
        a_sk, skdm = create_sender_key_distribution(None, rb)
        self.skdm = skdm
        b_sk = process_sender_key_distribution(None, skdm)
        sk_msgs = []
        for i in range(4):
            plain = pad(f"group {i}".encode(), rb)
            a_sk, body = group_encrypt(a_sk, plain)
            sk_msgs.append((body, plain))
        for body, plain in (sk_msgs[0], sk_msgs[2], sk_msgs[1], sk_msgs[3]):
            before = b_sk
            b_sk, got = group_decrypt(b_sk, body)
            assert got == plain
            self.samples.append(Sample("skmsg", body, before, b_sk, plain))
        self.a_sk, self.b_sk = a_sk, b_sk
        self.bodies = [s.body for s in self.samples] + [skdm]
        self.records = [b_rec.to_bytes(), a_rec.to_bytes(), b_sk.to_bytes(), a_sk.to_bytes()]
        self.plaintexts = {s.plaintext for s in self.samples}  # a splice may carry another genuine one
        self.by_kind = {k: [s for s in self.samples if s.kind == k] for k in ("pkmsg", "msg", "skmsg")}
        # live records, changed only the way the engine changes them
        self.live_b, self.live_a, self.live_b_sk, self.live_a_sk = b_rec, a_rec, b_sk, a_sk

    def _bob_receives(self, kind: str, b_rec: SessionRecord, body: bytes, plain: bytes) -> SessionRecord:
        if kind == "pkmsg":
            out = decrypt_pkmsg(b_rec, self.bob, self.bob_reg, body, self.pre_key, self.signed_pre_key, self.rb)
        else:
            out = decrypt_msg(b_rec, self.bob, body, self.rb)
        assert out.plaintext == plain
        self.samples.append(Sample(kind, body, b_rec, out.record, plain))
        return out.record

    def pre_key(self, key_id: int) -> PreKeyRecord | None:
        return self.pre_keys.get(key_id)

    def signed_pre_key(self, key_id: int) -> SignedPreKeyRecord | None:
        return self.spk if key_id == self.spk.id else None

    # ---- calls into evolink.signal (Bob's side)

    def decrypt(self, kind: str, record: SessionRecord | SenderKeyRecord | None, body: bytes
                ) -> tuple[SessionRecord | SenderKeyRecord, bytes]:
        if kind == "pkmsg":
            assert record is None or isinstance(record, SessionRecord)
            out = decrypt_pkmsg(record, self.bob, self.bob_reg, body, self.pre_key, self.signed_pre_key, self.rb)
            return out.record, out.plaintext
        if kind == "msg":
            assert record is None or isinstance(record, SessionRecord)
            out = decrypt_msg(record, self.bob, body, self.rb)
            return out.record, out.plaintext
        assert record is None or isinstance(record, SenderKeyRecord)
        return group_decrypt(record, body)

    # ---- live round trip: a fresh genuine message in each direction and in the group

    def round_trip(self) -> None:
        note = self.rb(8)
        try:
            self.live_a, ct = encrypt(self.live_a, self.alice, pad(b"a>b " + note, self.rb))
            self.live_b, got = self.decrypt(ct.type, self.live_b, ct.body)  # type: ignore[assignment]
            if unpad(got) != b"a>b " + note:
                raise Corrupted("a->b plaintext differs")
            self.live_b, ct = encrypt(self.live_b, self.bob, pad(b"b>a " + note, self.rb))
            out = decrypt_msg(self.live_a, self.alice, ct.body, self.rb)
            if unpad(out.plaintext) != b"b>a " + note:
                raise Corrupted("b->a plaintext differs")
            self.live_a = out.record
            self.live_a_sk, body = group_encrypt(self.live_a_sk, pad(b"grp " + note, self.rb))
            self.live_b_sk, got = group_decrypt(self.live_b_sk, body)
            if unpad(got) != b"grp " + note:
                raise Corrupted("group plaintext differs")
        except SignalError as exc:
            raise Corrupted(f"genuine message refused after hostile inputs: {type(exc).__name__}: {exc}") from exc


# --- targets --------------------------------------------------------------------------------------------


Call = Callable[[], object]


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.world = World(random.Random(seed ^ 0x5EED))
        self.live_inputs = 0
        self.live_checks = 0
        self.generators: list[tuple[str, Callable[[], Call], int]] = [
            ("pkmsg/mutated", self._pkmsg_mutated, 14),
            ("pkmsg/fields", self._pkmsg_fields, 10),
            ("msg/mutated", self._msg_mutated, 18),
            ("msg/fields", self._msg_fields, 10),
            ("msg/wrong_mac", self._msg_wrong_mac, 5),
            ("msg/version", self._version, 3),
            ("replay", self._replay, 6),
            ("skmsg/mutated", self._skmsg_mutated, 10),
            ("skmsg/fields", self._skmsg_fields, 6),
            ("skdm/mutated", self._skdm_mutated, 4),
            ("record/session", self._session_record, 3),
            ("record/sender_key", self._sender_key_record, 2),
            ("random", self._random, 3),
            ("unpad", self._unpad, 1),
            ("live", self._live, 5),
        ]
        self.names = [g[0] for g in self.generators]
        self.weights = [g[2] for g in self.generators]
        self.makers = [g[1] for g in self.generators]
        self._last = b""

    def next(self) -> tuple[str, Call, bytes]:
        i = self.rng.choices(range(len(self.makers)), self.weights)[0]
        self._last = b""
        call = self.makers[i]()
        return self.names[i], call, self._last

    def _check(self, sample: Sample, data: bytes, *, record: SessionRecord | SenderKeyRecord | None = None) -> Call:
        """Decrypt ``data`` (derived from ``sample``) with Bob's record before it; accepted => same plaintext."""
        self._last = data
        w = self.world
        rec = sample.before if record is None else record

        def run() -> object:
            _, plain = w.decrypt(sample.kind, rec, data)
            if plain != sample.plaintext and plain not in w.plaintexts:
                raise Forgery(f"{sample.kind} accepted with a plaintext no genuine message carries")
            return plain

        return run

    def _sample(self, kind: str) -> Sample:
        return self.rng.choice(self.world.by_kind[kind])

    def _pkmsg_mutated(self) -> Call:
        s = self._sample("pkmsg")
        # the session Bob builds from this pkmsg must not exist yet half the time (full X3DH path)
        rec = s.before if self.rng.random() < 0.5 else SessionRecord()
        return self._check(s, mutate(s.body, self.rng, self.world.bodies), record=rec)

    def _pkmsg_fields(self) -> Call:
        rng, s = self.rng, self._sample("pkmsg")
        m = pb.PreKeyWhisperMessage()
        m.ParseFromString(s.body[1:])
        for _ in range(rng.choice((1, 1, 2))):
            op = rng.randrange(9)
            if op == 0:
                m.preKeyId = rng.choice((_big(rng), 34, 30))  # unknown one-time pre-key id
            elif op == 1:
                m.signedPreKeyId = _big(rng)
            elif op == 2:
                m.baseKey = _public(rng)
            elif op == 3:
                m.identityKey = _public(rng)
            elif op == 4:
                m.ClearField(rng.choice(("preKeyId", "baseKey", "identityKey", "message", "registrationId",
                                         "signedPreKeyId")))
            elif op == 5:
                m.message = rng.choice(self.world.bodies)  # another message inside
            elif op == 6:
                m.message = mutate(m.message, rng, self.world.bodies)
            elif op == 7:
                m.registrationId = _big(rng)
            else:
                m.identityKey = b"\x05" + self.world.bob.public  # our own identity as the sender's
        rec = s.before if rng.random() < 0.5 else SessionRecord()
        body = bytes([rng.choice((0x33, 0x33, 0x33, 0x23, 0x34, 0x43))]) + m.SerializeToString()
        return self._check(s, body, record=rec)

    def _msg_mutated(self) -> Call:
        s = self._sample("msg")
        return self._check(s, mutate(s.body, self.rng, self.world.bodies))

    def _msg_fields(self) -> Call:
        rng, s = self.rng, self._sample("msg")
        m = pb.WhisperMessage()
        m.ParseFromString(s.body[1:-8])
        for _ in range(rng.choice((1, 1, 2))):
            op = rng.randrange(7)
            if op == 0:
                m.counter = _big(rng)
            elif op == 1:
                m.previousCounter = _big(rng)
            elif op == 2:
                m.ephemeralKey = _public(rng)
            elif op == 3:
                m.ciphertext = m.ciphertext[: rng.randrange(len(m.ciphertext) + 1)] + rng.randbytes(rng.choice((0, 1, 16)))
            elif op == 4:
                m.ClearField(rng.choice(("ephemeralKey", "counter", "previousCounter", "ciphertext")))
            elif op == 5:
                other = pb.WhisperMessage()
                other.ParseFromString(self._sample("msg").body[1:-8])
                m.ephemeralKey = other.ephemeralKey  # a known ratchet key with this counter
            else:
                m.ciphertext = rng.randbytes(16 * rng.randrange(0, 5))
        mac = s.body[-8:] if rng.random() < 0.7 else rng.randbytes(8)
        return self._check(s, s.body[:1] + m.SerializeToString() + mac)

    def _msg_wrong_mac(self) -> Call:
        rng, s = self.rng, self._sample("msg")
        mac = bytearray(s.body[-8:])
        mac[rng.randrange(8)] ^= 1 << rng.randrange(8)
        return self._check(s, s.body[:-8] + bytes(mac))

    def _version(self) -> Call:
        rng = self.rng
        s = self._sample(rng.choice(("pkmsg", "msg", "skmsg")))
        return self._check(s, bytes([rng.randrange(256)]) + s.body[1:])

    def _replay(self) -> Call:
        """A message decrypted already, against the record after it: DuplicateMessage, never accepted."""
        s = self.rng.choice(self.world.samples)
        self._last = s.body
        w = self.world

        def run() -> object:
            try:
                w.decrypt(s.kind, s.after, s.body)
            except DuplicateMessage:
                raise
            except SignalError as exc:
                raise Forgery(f"replayed {s.kind} refused with {type(exc).__name__}, not DuplicateMessage") from exc
            raise Forgery(f"replayed {s.kind} accepted")

        return run

    def _skmsg_mutated(self) -> Call:
        s = self._sample("skmsg")
        return self._check(s, mutate(s.body, self.rng, self.world.bodies))

    def _skmsg_fields(self) -> Call:
        rng, s = self.rng, self._sample("skmsg")
        m = pb.SenderKeyMessage()
        m.ParseFromString(s.body[1:-64])
        op = rng.randrange(5)
        if op == 0:
            m.id = _big(rng)  # unknown sender-key id
        elif op == 1:
            m.iteration = _big(rng)
        elif op == 2:
            m.ciphertext = rng.randbytes(16 * rng.randrange(0, 4))
        elif op == 3:
            m.ClearField(rng.choice(("id", "iteration", "ciphertext")))
        sig = s.body[-64:] if op != 4 else s.body[-64:-1] + bytes([s.body[-1] ^ 0x40])
        return self._check(s, s.body[:1] + m.SerializeToString() + sig)

    def _skdm_mutated(self) -> Call:
        rng, w = self.rng, self.world
        data = mutate(w.skdm, rng, w.bodies)
        self._last = data
        base = w.b_sk if rng.random() < 0.5 else None

        def run() -> object:
            return process_sender_key_distribution(base, data)

        return run

    def _session_record(self) -> Call:
        rng, w = self.rng, self.world
        data = mutate(rng.choice(w.records[:2]), rng, w.records)
        self._last = data
        s = self._sample("msg")

        def run() -> object:
            rec = SessionRecord.from_bytes(data)
            return decrypt_msg(rec, w.bob, s.body, w.rb)  # a damaged record must still fail typed

        return run

    def _sender_key_record(self) -> Call:
        rng, w = self.rng, self.world
        data = mutate(rng.choice(w.records[2:]), rng, w.records)
        self._last = data
        s = self._sample("skmsg")

        def run() -> object:
            return group_decrypt(SenderKeyRecord.from_bytes(data), s.body)

        return run

    def _random(self) -> Call:
        rng = self.rng
        kind = rng.choice(("pkmsg", "msg", "skmsg"))
        data = bytes([0x33]) + rng.randbytes(rng.randrange(0, 200)) if rng.random() < 0.7 else rng.randbytes(
            rng.randrange(0, 64))
        return self._check(self._sample(kind), data)

    def _unpad(self) -> Call:
        data = self.rng.randbytes(self.rng.randrange(0, 40)) + bytes([self.rng.randrange(20)]) * self.rng.randrange(4)
        self._last = data
        return lambda: unpad(data)

    def _live(self) -> Call:
        """A hostile input against Bob's live records, adopted on success, as the engine does.

        Half the inputs are fresh: Alice encrypts a new message (1:1 or group) with her live record
        and it is tampered with on the way; half the time the genuine copy then arrives too and must
        decrypt (the tampered copy burnt no key). Every ``LIVE_CHECK_EVERY`` inputs a genuine round
        trip in both directions and in the group must decrypt.
        """
        rng, w = self.rng, self.world
        group = rng.random() < 0.3
        kind = "skmsg" if group else rng.choice(("pkmsg", "msg", "msg"))
        genuine: bytes | None = None
        if rng.random() < 0.5:
            plain = pad(b"live " + rng.randbytes(rng.randrange(0, 40)), w.rb)
            if group:
                w.live_a_sk, genuine = group_encrypt(w.live_a_sk, plain)
            else:
                w.live_a, ct = encrypt(w.live_a, w.alice, plain)
                kind, genuine = ct.type, ct.body
            source = genuine
        else:
            plain = b""
            source = rng.choice(w.by_kind[kind]).body
        data = source if rng.random() < 0.1 else mutate(source, rng, w.bodies)  # some plain replays
        deliver_genuine = genuine is not None and rng.random() < 0.5
        self._last = data
        self.live_inputs += 1
        check = self.live_inputs % LIVE_CHECK_EVERY == 0

        def receive(body: bytes) -> bytes:
            if kind == "skmsg":
                w.live_b_sk, got = w.decrypt(kind, w.live_b_sk, body)  # type: ignore[assignment]
            else:
                w.live_b, got = w.decrypt(kind, w.live_b, body)  # type: ignore[assignment]
            return got

        def run() -> object:
            delivered = False  # the altered copy was accepted as the genuine message (e.g. only its
            # version nibble changed, which the MAC does not cover, as in libsignal): then the
            # genuine copy is a replay and must be refused as one
            try:
                try:
                    got = receive(data)
                    if genuine is not None and got != plain and got not in w.plaintexts:
                        raise Forgery(f"tampered live {kind} accepted with another plaintext")
                    delivered = got == plain
                except SignalError:
                    if not deliver_genuine:
                        raise
                if deliver_genuine and delivered:
                    assert genuine is not None
                    try:
                        receive(genuine)
                    except DuplicateMessage:
                        pass
                    else:
                        raise Forgery(f"genuine live {kind} accepted twice")
                elif deliver_genuine and data != genuine:
                    assert genuine is not None
                    try:
                        if receive(genuine) != plain:
                            raise Corrupted(f"genuine live {kind} decrypted to another plaintext")
                    except SignalError as exc:
                        raise Corrupted(f"genuine {kind} refused after a tampered copy: "
                                        f"{type(exc).__name__}: {exc}") from exc
            finally:
                if check:
                    w.round_trip()
                    self.live_checks += 1
            return None

        return run


def _outcome(call: Call, guard: float) -> tuple[str, BaseException | None]:
    signal.setitimer(signal.ITIMER_PROF, guard)
    try:
        call()
        return "accepted", None
    except _Hang:
        return "hang", None
    except Forgery as exc:
        return "forgery", exc
    except Corrupted as exc:
        return "corrupted", exc
    except SignalError as exc:
        return "rejected", exc
    except Exception as exc:  # a crash: anything that is not the typed error family
        return "crash", exc
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def run_task(args: tuple[int, int, float]) -> Stats:
    seed, count, guard = args
    fuzzer = Fuzzer(seed)
    stats = Stats()
    signal.signal(signal.SIGPROF, _on_alarm)
    for _ in range(count):
        target, call, data = fuzzer.next()
        t0 = time.process_time()
        outcome, exc = _outcome(call, guard)
        elapsed = time.process_time() - t0  # CPU time: the machine's load does not inflate it
        if outcome == "rejected":
            assert exc is not None
            name = type(exc).__name__
            stats.refusals[name] = stats.refusals.get(name, 0) + 1
        elif outcome in BAD:
            what = f"{type(exc).__name__}: {exc}"[:200] if exc is not None else f"hang (> {guard}s)"
            stats.findings.append((target, what, data[:300].hex()))
        if elapsed > stats.slowest:
            stats.slowest, stats.slowest_target = elapsed, target
        stats.add(target, outcome)
    # the end of every task: the live session still works in every direction
    outcome, exc = _outcome(fuzzer.world.round_trip, guard)
    fuzzer.live_checks += 1
    if outcome != "accepted":
        stats.findings.append(("live/final", f"{outcome}: {exc}"[:200], ""))
        stats.add("live/final", "corrupted" if outcome in ("rejected", "corrupted") else outcome)
    stats.live_checks = fuzzer.live_checks
    return stats


def report(total: Stats, elapsed: float) -> None:
    print(f"\n{'target':20} {'inputs':>9} {'accepted':>9} {'rejected':>9} {'crash':>6} {'hang':>5} "
          f"{'forgery':>8} {'corrupt':>8}")  # fmt: skip
    for target in sorted(total.counts):
        per = total.counts[target]
        print(f"{target:20} {sum(per.values()):9,} {per['accepted']:9,} {per['rejected']:9,} {per['crash']:6} "
              f"{per['hang']:5} {per['forgery']:8} {per['corrupted']:8}")  # fmt: skip
    print(f"{'total':20} {total.inputs:9,} {total.total('accepted'):9,} {total.total('rejected'):9,} "
          f"{total.total('crash'):6} {total.total('hang'):5} {total.total('forgery'):8} "
          f"{total.total('corrupted'):8}")  # fmt: skip
    print("\nrefused as: " + ", ".join(f"{k} {v:,}" for k, v in sorted(total.refusals.items(), key=lambda kv: -kv[1])))
    print(f"live round trips after hostile inputs: {total.live_checks:,} (all must decrypt)")
    print(f"elapsed {elapsed:.1f}s ({total.inputs / elapsed:,.0f} inputs/s); slowest input "
          f"{total.slowest * 1000:.1f} ms CPU ({total.slowest_target})")  # fmt: skip
    bad = {k: total.total(k) for k in BAD}
    print("  ".join(f"{k}: {v}" for k, v in bad.items()))
    for target, what, data in total.findings[:20]:
        print(f"  [{target}] {what}\n    input: {data}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="number of inputs (default 10^5)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--guard", type=float, default=2.0, help="per-input CPU-time limit in seconds")
    args = parser.parse_args(argv)

    tasks = []
    left, i = args.n, 0
    while left > 0:
        size = min(TASK_SIZE, left)
        tasks.append((args.seed * 100_003 + i, size, args.guard))
        left -= size
        i += 1
    print(f"fuzzing the Signal layer with {args.n:,} inputs on {args.workers} worker(s)")
    total = Stats()
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        for stats in pool.imap_unordered(run_task, tasks):
            total.merge(stats)
            if total.inputs % 20_000 < TASK_SIZE or total.inputs == args.n:
                print(f"  {total.inputs:>9,} inputs  {time.perf_counter() - start:7.1f}s", flush=True)
    report(total, time.perf_counter() - start)
    return 1 if any(total.total(k) for k in BAD) else 0


if __name__ == "__main__":
    sys.exit(main())
