"""Sender keys for groups, compatible with Baileys' ``lib/Signal/Group`` (wa-messaging.md §2).

One :class:`SenderKeyRecord` per :class:`~evolink.signal.SenderKeyName` (group, sending device).
Pure functions: records in, new records out; an error leaves the input record untouched.

Caveats:

- Chain step and message keys as libsignal: seed ``HMAC(ck, 0x01)``, next ``HMAC(ck, 0x02)``;
  ``HKDF(seed, 32×0, "WhisperGroup")`` gives IV (bytes 0–15) and AES-256 key (bytes 16–47).
- We encrypt at iterations 0, 1, 2 … (libsignal Java/Go, whatsmeow). Baileys uses 0, 2, 4 …
  (``iteration == 0 ? 0 : iteration + 1``); receivers, ours included, tolerate the gaps.
- The skmsg signature is XEdDSA by the state's signing key over ``0x33 ‖ protobuf``.
- Processing an SKDM whose key id *and* signing key match a state we already hold keeps that state
  (idempotent: a re-sent SKDM — whatsmeow sends one with every group message — can neither rewind
  the chain nor re-open used message keys). Otherwise the state is added, the oldest of
  :data:`MAX_SENDER_KEY_STATES` evicted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from evolink.signal import primitives as P
from evolink.signal.errors import (
    DuplicateMessage,
    InvalidKey,
    InvalidMessage,
    InvalidRecord,
    InvalidSignature,
    NoSenderKey,
    TooManySkipped,
)
from evolink.signal.keys import Rng, key_pair_from_rng, parse_public, serialize_public
from evolink.wire import crypto
from evolink.wire.proto import signal_pb2 as pb

RECORD_VERSION = 1
MAX_SENDER_KEY_STATES = 5  # Baileys SenderKeyRecord.MAX_STATES
MAX_SENDER_MESSAGE_KEYS = 2000  # Baileys SenderKeyState.MAX_MESSAGE_KEYS, oldest evicted first
MAX_FUTURE = 2000  # "Over 2000 messages into the future!"
MAX_KEY_ID = 2147483647  # Baileys keyhelper.generateSenderKeyId: randomInt(2^31 - 1)
_SIG = 64


@dataclass(slots=True)
class SenderKeyState:
    key_id: int
    iteration: int
    chain_key: bytes
    signing_public: bytes
    signing_private: bytes | None = field(default=None, repr=False)
    message_keys: dict[int, bytes] = field(default_factory=dict, repr=False)  # iteration → seed

    def clone(self) -> SenderKeyState:
        return SenderKeyState(self.key_id, self.iteration, self.chain_key, self.signing_public,
                              self.signing_private, dict(self.message_keys))


class SenderKeyRecord:
    """Up to 5 sender-key states of one (group, sender), newest last. ``SenderKeyRecord()`` is empty."""

    __slots__ = ("_states",)

    def __init__(self, states: tuple[SenderKeyState, ...] = ()) -> None:
        self._states = states

    @property
    def states(self) -> tuple[SenderKeyState, ...]:
        """Internal: the states, oldest first (do not mutate them; clone first)."""
        return self._states

    def is_empty(self) -> bool:
        return not self._states

    @property
    def key_ids(self) -> tuple[int, ...]:
        """Key ids of the states, oldest first."""
        return tuple(s.key_id for s in self._states)

    def __repr__(self) -> str:
        return f"<SenderKeyRecord key_ids={self.key_ids}>"

    def _find(self, key_id: int) -> SenderKeyState | None:
        for s in reversed(self._states):
            if s.key_id == key_id:
                return s
        return None

    def _replacing(self, old: SenderKeyState, new: SenderKeyState) -> SenderKeyRecord:
        return SenderKeyRecord(tuple(new if s is old else s for s in self._states))

    def to_bytes(self) -> bytes:
        out = pb.SenderKeyRecordStructure(version=RECORD_VERSION)
        for s in self._states:
            r = out.states.add(keyId=s.key_id, iteration=s.iteration, chainKey=s.chain_key,
                               signingPublic=s.signing_public)
            if s.signing_private is not None:
                r.signingPrivate = s.signing_private
            for it, seed in s.message_keys.items():
                r.messageKeys.add(iteration=it, seed=seed)
        return out.SerializeToString()

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyRecord:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidRecord(f"sender-key record: expected bytes, got {type(data).__name__}")
        msg = pb.SenderKeyRecordStructure()
        try:
            msg.ParseFromString(bytes(data))
        except Exception as exc:
            raise InvalidRecord(f"sender-key record: malformed ({exc})") from exc
        if msg.version != RECORD_VERSION:
            raise InvalidRecord(f"sender-key record: unknown format version {msg.version}")
        if len(msg.states) > MAX_SENDER_KEY_STATES:
            raise InvalidRecord("sender-key record: too many states")
        states = []
        for r in msg.states:
            if len(r.chainKey) != 32 or len(r.signingPublic) != 32 or len(r.messageKeys) > MAX_SENDER_MESSAGE_KEYS:
                raise InvalidRecord("sender-key record: bad state")
            if r.HasField("signingPrivate") and len(r.signingPrivate) != 32:
                raise InvalidRecord("sender-key record: bad signing key")
            if any(len(mk.seed) != 32 for mk in r.messageKeys):
                raise InvalidRecord("sender-key record: bad message key")
            states.append(SenderKeyState(
                r.keyId, r.iteration, r.chainKey, r.signingPublic,
                r.signingPrivate if r.HasField("signingPrivate") else None,
                {mk.iteration: mk.seed for mk in r.messageKeys},
            ))
        return cls(tuple(states))


def _skdm_bytes(state: SenderKeyState) -> bytes:
    proto = pb.SenderKeyDistributionMessage(
        id=state.key_id, iteration=state.iteration, chainKey=state.chain_key,
        signingKey=serialize_public(state.signing_public),
    )
    return bytes([P.VERSION_BYTE]) + proto.SerializeToString()


def create_sender_key_distribution(
    record: SenderKeyRecord | None, rng: Rng = os.urandom
) -> tuple[SenderKeyRecord, bytes]:
    """Our own sender key: create a state if the record is empty, return it and its SKDM bytes.

    The SKDM carries the state's current iteration and chain key, so it covers the next message
    :func:`group_encrypt` produces. It goes in ``Message.senderKeyDistributionMessage
    .axolotlSenderKeyDistributionMessage`` inside a 1:1 pkmsg/msg.
    """
    record = record if isinstance(record, SenderKeyRecord) else SenderKeyRecord()
    if record.is_empty():
        signing = key_pair_from_rng(rng)
        key_id = int.from_bytes(rng(4), "big") % MAX_KEY_ID
        state = SenderKeyState(key_id, 0, bytes(rng(32)), signing.public, signing.private)
        record = SenderKeyRecord((state,))
    newest = record.states[-1]
    if newest.signing_private is None:
        raise InvalidRecord("sender-key record holds another device's key, not ours")
    return record, _skdm_bytes(newest)


def _parse_skdm(data: bytes) -> SenderKeyState:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidMessage(f"SKDM: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 2 or not P.version_ok(data[0]):
        raise InvalidMessage("SKDM: too short or unsupported version byte")
    msg = pb.SenderKeyDistributionMessage()
    try:
        msg.ParseFromString(data[1:])
    except Exception as exc:
        raise InvalidMessage(f"SKDM protobuf is malformed ({exc})") from exc
    for name in ("id", "iteration", "chainKey", "signingKey"):
        if not msg.HasField(name):
            raise InvalidMessage(f"SKDM lacks '{name}'")
    if len(msg.chainKey) != 32:
        raise InvalidMessage(f"SKDM chain key must be 32 bytes, got {len(msg.chainKey)}")
    try:
        signing = parse_public(msg.signingKey, "SKDM signing key")
    except InvalidKey as exc:
        raise InvalidMessage(str(exc)) from exc
    return SenderKeyState(msg.id, msg.iteration, msg.chainKey, signing)


def process_sender_key_distribution(record: SenderKeyRecord | None, skdm_bytes: bytes) -> SenderKeyRecord:
    """Add the state an SKDM describes to the sender's record (see the module notes)."""
    new = _parse_skdm(skdm_bytes)
    record = record if isinstance(record, SenderKeyRecord) else SenderKeyRecord()
    existing = record._find(new.key_id)
    if existing is not None and existing.signing_public == new.signing_public:
        return record
    states = [s for s in record.states if s.key_id != new.key_id] + [new]
    return SenderKeyRecord(tuple(states[-MAX_SENDER_KEY_STATES:]))


def _message_key(seed: bytes) -> tuple[bytes, bytes]:
    d0, d1 = P.derive_secrets(seed, P.ZERO_SALT, P.INFO_GROUP, 2)
    return d0[:16], d0[16:] + d1[:16]  # iv, key


def group_encrypt(record: SenderKeyRecord, plaintext: bytes) -> tuple[SenderKeyRecord, bytes]:
    """Encrypt with our newest state: ``skmsg`` bytes, signed by the state's signing key."""
    if not isinstance(record, SenderKeyRecord) or record.is_empty():
        raise NoSenderKey("no sender key to encrypt with (call create_sender_key_distribution first)")
    old = record.states[-1]
    private = old.signing_private
    if private is None:
        raise NoSenderKey("the newest sender-key state is not ours (no signing private key)")
    state = old.clone()
    iv, key = _message_key(P.hmac_sha256(state.chain_key, P.MESSAGE_KEY_SEED))
    proto = pb.SenderKeyMessage(id=state.key_id, iteration=state.iteration,
                                ciphertext=P.aes_cbc_encrypt(key, iv, bytes(plaintext))).SerializeToString()
    signed = bytes([P.VERSION_BYTE]) + proto
    signature = crypto.sign(private, signed)
    state.chain_key = P.hmac_sha256(state.chain_key, P.CHAIN_KEY_SEED)
    state.iteration += 1
    return record._replacing(old, state), signed + signature


def group_decrypt(record: SenderKeyRecord | None, skmsg_bytes: bytes) -> tuple[SenderKeyRecord, bytes]:
    """Verify and decrypt an ``skmsg``; :class:`NoSenderKey` when the key id is unknown."""
    if not isinstance(skmsg_bytes, bytes | bytearray | memoryview):
        raise InvalidMessage(f"skmsg: expected bytes, got {type(skmsg_bytes).__name__}")
    data = bytes(skmsg_bytes)
    if len(data) < 2 + _SIG or not P.version_ok(data[0]):
        raise InvalidMessage("skmsg: too short or unsupported version byte")
    msg = pb.SenderKeyMessage()
    try:
        msg.ParseFromString(data[1:-_SIG])
    except Exception as exc:
        raise InvalidMessage(f"skmsg protobuf is malformed ({exc})") from exc
    for name in ("id", "iteration", "ciphertext"):
        if not msg.HasField(name):
            raise InvalidMessage(f"skmsg lacks '{name}'")
    if not isinstance(record, SenderKeyRecord):
        raise NoSenderKey(f"no sender-key record (key id {msg.id})")
    old = record._find(msg.id)
    if old is None:
        raise NoSenderKey(f"no sender-key state with key id {msg.id}")
    if not crypto.verify(old.signing_public, data[:-_SIG], data[-_SIG:]):
        raise InvalidSignature("skmsg signature does not verify")
    state = old.clone()
    it = msg.iteration
    if state.iteration > it:
        seed = state.message_keys.pop(it, None)
        if seed is None:
            raise DuplicateMessage(f"sender-key iteration {it} already used (chain at {state.iteration})")
    else:
        if it - state.iteration > MAX_FUTURE:
            raise TooManySkipped(f"sender-key iteration {it} is over {MAX_FUTURE} into the future")
        while state.iteration < it:
            state.message_keys[state.iteration] = P.hmac_sha256(state.chain_key, P.MESSAGE_KEY_SEED)
            state.chain_key = P.hmac_sha256(state.chain_key, P.CHAIN_KEY_SEED)
            state.iteration += 1
        while len(state.message_keys) > MAX_SENDER_MESSAGE_KEYS:
            del state.message_keys[next(iter(state.message_keys))]
        seed = P.hmac_sha256(state.chain_key, P.MESSAGE_KEY_SEED)
        state.chain_key = P.hmac_sha256(state.chain_key, P.CHAIN_KEY_SEED)
        state.iteration += 1
    iv, key = _message_key(seed)
    plaintext = P.aes_cbc_decrypt(key, iv, msg.ciphertext)
    return record._replacing(old, state), plaintext
