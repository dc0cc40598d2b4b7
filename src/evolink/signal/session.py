"""Pairwise Signal sessions: X3DH and the double ratchet, libsignal-compatible (wa-messaging.md §1.4–1.7).

Pure functions over immutable :class:`~evolink.signal.record.SessionRecord` values. The caller loads
a record, calls one function, and persists the returned record **in the same transaction** as what
the message caused (the stored message, the deletion of a consumed one-time pre-key). A raised
:class:`~evolink.signal.errors.SignalError` means nothing changed: the input record is untouched.

Protocol caveats, as libsignal-JS 6.0.0 (the one Baileys 7.0.0-rc14 uses) behaves:

- The X3DH output's second 32 bytes (a chain key in Java/Go) are ignored: the initiator derives its
  first sending chain by a root step against the responder's signed pre-key, and the responder
  cannot send before it has decrypted a message. We do the same, so both directions interoperate.
- An initiator keeps sending pkmsgs with the same base key until the first reply decrypts;
  the responder reuses the session of a known base key without looking at pre-keys again.
- ``previousCounter`` is the last counter used on the old sending chain (JS), not the count.
- We verify a bundle's signed pre-key signature (libsignal-JS does not, whatsmeow does).
- Bounds (JS keeps skipped keys and old chains forever): 2000 skipped keys per chain (oldest
  evicted), 5 receiving chains per session (Java/Go), 40 sessions per record (JS).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from evolink.signal import primitives as P
from evolink.signal.errors import (
    DuplicateMessage,
    InvalidKey,
    InvalidKeyId,
    InvalidMac,
    InvalidMessage,
    InvalidRecord,
    InvalidSignature,
    NoSession,
    SignalError,
    TooManySkipped,
    UntrustedIdentity,
)
from evolink.signal.keys import (
    IdentityKeyPair,
    PreKeyBundle,
    PreKeyRecord,
    Rng,
    SignedPreKeyRecord,
    key_pair_from_rng,
    parse_public,
    serialize_public,
)
from evolink.signal.record import (
    MAX_RECEIVER_CHAINS,
    MAX_SESSIONS,
    MAX_SKIPPED_KEYS,
    Chain,
    PendingPreKey,
    SessionRecord,
    SessionState,
)
from evolink.wire import crypto
from evolink.wire.crypto import KeyPair
from evolink.wire.proto import signal_pb2 as pb

__all__ = [
    "MAX_RECEIVER_CHAINS",
    "MAX_SESSIONS",
    "MAX_SKIPPED_KEYS",
    "CiphertextMessage",
    "DecryptResult",
    "PreKeyLookup",
    "SessionRecord",
    "SignedPreKeyLookup",
    "decrypt_msg",
    "decrypt_pkmsg",
    "encrypt",
    "session_from_bundle",
]

PreKeyLookup = Callable[[int], PreKeyRecord | None]
SignedPreKeyLookup = Callable[[int], SignedPreKeyRecord | None]

_MAC_SIZE = 8
_FF32 = b"\xff" * 32


@dataclass(frozen=True, slots=True)
class CiphertextMessage:
    """An encrypted 1:1 message: ``type`` is the ``<enc type>`` attribute, ``body`` its content."""

    type: Literal["pkmsg", "msg"]
    body: bytes


@dataclass(frozen=True, slots=True)
class DecryptResult:
    """What a successful decrypt returns.

    - ``record``: the new record to persist (also reachable as ``new_record``).
    - ``plaintext``: the decrypted bytes, still padded (see :func:`evolink.signal.unpad`).
    - ``used_pre_key_id``: the one-time pre-key this message consumed; delete it in the same
      transaction. ``None`` for msgs, pkmsgs without one, and repeated pkmsgs of a known session.
    - ``remote_identity_key``: the sender's raw 32-byte identity key.
    - ``base_key``: raw 32-byte base key of the session that decrypted it.
    - ``identity_changed``: the record had an open session with a *different* identity, which this
      pkmsg replaced (trust on first use, changes accepted: emit an identity-change event).
    """

    record: SessionRecord
    plaintext: bytes
    used_pre_key_id: int | None
    remote_identity_key: bytes
    base_key: bytes
    identity_changed: bool = False

    @property
    def new_record(self) -> SessionRecord:
        return self.record


# ------------------------------------------------------------------------------------ X3DH


def _check_expected(expected: bytes | None, actual: bytes) -> None:
    if expected is not None and not hmac.compare_digest(parse_public(expected, "expected identity"), actual):
        raise UntrustedIdentity("identity key differs from the expected one", identity_key=actual)


def _master_key(parts: list[bytes]) -> bytes:
    return P.derive_secrets(_FF32 + b"".join(parts), P.ZERO_SALT, P.INFO_TEXT)[0]


def _root_step(root_key: bytes, our_private: bytes, their_public: bytes) -> tuple[bytes, bytes]:
    new_root, chain_key = P.derive_secrets(P.dh(our_private, their_public), root_key, P.INFO_RATCHET, 2)
    return new_root, chain_key


def session_from_bundle(
    record: SessionRecord | None,
    our_identity: IdentityKeyPair,
    our_registration_id: int,
    bundle: PreKeyBundle,
    rng: Rng = os.urandom,
    *,
    expected_identity: bytes | None = None,
) -> SessionRecord:
    """X3DH as initiator: a new open session from a fetched bundle (any open one is closed).

    Verifies the signed pre-key signature (:class:`InvalidSignature`). With ``expected_identity``
    set, a bundle with another identity key raises :class:`UntrustedIdentity`. Messages encrypted
    with the result are pkmsgs until the peer's first reply decrypts.
    """
    if not crypto.verify(bundle.identity_key, serialize_public(bundle.signed_pre_key),
                         bundle.signed_pre_key_signature):
        raise InvalidSignature("bundle signed pre-key signature does not verify")
    _check_expected(expected_identity, bundle.identity_key)
    if not isinstance(our_registration_id, int) or not 0 <= our_registration_id <= 0xFFFFFFFF:
        raise InvalidKey(f"our registration id must be a uint32, got {our_registration_id!r}")
    base = key_pair_from_rng(rng)
    ratchet = key_pair_from_rng(rng)
    parts = [
        P.dh(our_identity.private, bundle.signed_pre_key),
        P.dh(base.private, bundle.identity_key),
        P.dh(base.private, bundle.signed_pre_key),
    ]
    if bundle.pre_key is not None:
        parts.append(P.dh(base.private, bundle.pre_key))
    root, chain_key = _root_step(_master_key(parts), ratchet.private, bundle.signed_pre_key)
    state = SessionState(
        remote_registration_id=bundle.registration_id, remote_identity=bundle.identity_key,
        base_key=base.public, base_key_ours=True, root_key=root, our_ratchet=ratchet,
        last_remote_ratchet=bundle.signed_pre_key, previous_counter=0,
        chains={ratchet.public: Chain(sending=True, counter=-1, key=chain_key)},
        pending=PendingPreKey(bundle.signed_pre_key_id, bundle.pre_key_id, base.public, our_registration_id),
    )
    return (record or SessionRecord()).with_new_session(state)


# --------------------------------------------------------------------------------- encrypt


def _message_keys(seed: bytes) -> tuple[bytes, bytes, bytes]:
    cipher_key, mac_key, iv = P.derive_secrets(seed, P.ZERO_SALT, P.INFO_MESSAGE_KEYS)
    return cipher_key, mac_key, iv[:16]


def _step(chain: Chain) -> None:
    assert chain.key is not None
    chain.counter += 1
    chain.message_keys[chain.counter] = P.hmac_sha256(chain.key, P.MESSAGE_KEY_SEED)
    chain.key = P.hmac_sha256(chain.key, P.CHAIN_KEY_SEED)


def encrypt(
    record: SessionRecord, our_identity: IdentityKeyPair, plaintext: bytes
) -> tuple[SessionRecord, CiphertextMessage]:
    """Encrypt with the open session: ``pkmsg`` while the peer has not answered yet, else ``msg``.

    :class:`NoSession` without an open session. ``plaintext`` should already be padded.
    """
    if record is None or not isinstance(record, SessionRecord):
        raise NoSession("no session record")
    old = record.open_state()
    if old is None:
        raise NoSession("no open session to encrypt with")
    state = old.clone()
    chain = state.chains.get(state.our_ratchet.public)
    if chain is None or not chain.sending or chain.key is None:
        raise InvalidRecord("open session has no usable sending chain")
    _step(chain)
    cipher_key, mac_key, iv = _message_keys(chain.message_keys.pop(chain.counter))
    proto = pb.WhisperMessage(
        ephemeralKey=serialize_public(state.our_ratchet.public), counter=chain.counter,
        previousCounter=state.previous_counter,
        ciphertext=P.aes_cbc_encrypt(cipher_key, iv, bytes(plaintext)),
    ).SerializeToString()
    mac = P.hmac_sha256(mac_key, our_identity.serialized_public + serialize_public(state.remote_identity)
                        + bytes([P.VERSION_BYTE]) + proto)[:_MAC_SIZE]
    whisper = bytes([P.VERSION_BYTE]) + proto + mac
    if state.pending is None:
        return record.replacing(old, state, used=False), CiphertextMessage("msg", whisper)
    p = state.pending
    pk = pb.PreKeyWhisperMessage(
        identityKey=our_identity.serialized_public, registrationId=p.our_registration_id,
        baseKey=serialize_public(p.base_key), signedPreKeyId=p.signed_pre_key_id, message=whisper,
    )
    if p.pre_key_id is not None:
        pk.preKeyId = p.pre_key_id
    body = bytes([P.VERSION_BYTE]) + pk.SerializeToString()
    return record.replacing(old, state, used=False), CiphertextMessage("pkmsg", body)


# --------------------------------------------------------------------------------- decrypt


@dataclass(frozen=True, slots=True)
class _Whisper:
    ratchet_key: bytes
    counter: int
    previous_counter: int
    ciphertext: bytes
    signed_part: bytes  # version byte and protobuf, as received
    mac: bytes


def _parse_whisper(body: bytes) -> _Whisper:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidMessage(f"message body: expected bytes, got {type(body).__name__}")
    body = bytes(body)
    if len(body) < 1 + _MAC_SIZE + 1:
        raise InvalidMessage(f"SignalMessage too short ({len(body)} bytes)")
    if not P.version_ok(body[0]):
        raise InvalidMessage(f"SignalMessage version byte {body[0]:#04x} is not supported")
    proto_bytes = body[1:-_MAC_SIZE]
    msg = pb.WhisperMessage()
    try:
        msg.ParseFromString(proto_bytes)
    except Exception as exc:
        raise InvalidMessage(f"SignalMessage protobuf is malformed ({exc})") from exc
    for name in ("ephemeralKey", "counter", "ciphertext"):
        if not msg.HasField(name):
            raise InvalidMessage(f"SignalMessage lacks '{name}'")
    try:
        ratchet_key = parse_public(msg.ephemeralKey, "ratchet key")
    except InvalidKey as exc:
        raise InvalidMessage(str(exc)) from exc
    return _Whisper(ratchet_key, msg.counter, msg.previousCounter, msg.ciphertext,
                    body[:-_MAC_SIZE], body[-_MAC_SIZE:])


def _fill(chain: Chain, counter: int) -> None:
    """libsignal ``fillMessageKeys``: derive keys up to ``counter``, refusing > 2000 ahead."""
    if chain.counter >= counter:
        return
    if counter - chain.counter > MAX_SKIPPED_KEYS:
        raise TooManySkipped(f"message {counter} is over {MAX_SKIPPED_KEYS} messages into the future")
    if chain.key is None:
        raise InvalidMessage("message counter is past the end of a closed chain")
    while chain.counter < counter:
        _step(chain)


def _cap(chain: Chain) -> None:
    while len(chain.message_keys) > MAX_SKIPPED_KEYS:
        del chain.message_keys[next(iter(chain.message_keys))]


def _step_ratchet(state: SessionState, their: bytes, previous_counter: int, rng: Rng) -> None:
    """libsignal ``maybeStepRatchet`` for a ratchet key we have no chain for."""
    prev = state.chains.get(state.last_remote_ratchet)
    if prev is not None and not prev.sending:
        _fill(prev, previous_counter)
        _cap(prev)
        prev.key = None
    root, ck = _root_step(state.root_key, state.our_ratchet.private, their)
    state.chains[their] = Chain(sending=False, counter=-1, key=ck)
    old_sending = state.chains.pop(state.our_ratchet.public, None)
    if old_sending is not None:
        state.previous_counter = max(old_sending.counter, 0)
    state.our_ratchet = key_pair_from_rng(rng)
    state.root_key, ck = _root_step(root, state.our_ratchet.private, their)
    state.chains[state.our_ratchet.public] = Chain(sending=True, counter=-1, key=ck)
    state.last_remote_ratchet = their
    receiving = [k for k, c in state.chains.items() if not c.sending]
    for k in receiving[: max(0, len(receiving) - MAX_RECEIVER_CHAINS)]:
        del state.chains[k]


def _decrypt_with(state: SessionState, msg: _Whisper, our_identity: IdentityKeyPair, rng: Rng) -> bytes:
    """Decrypt ``msg`` with ``state`` (a clone, mutated in place)."""
    if msg.ratchet_key == state.our_ratchet.public:  # would step onto (and drop) our own chain
        raise InvalidMessage("message names our own ratchet key")
    if msg.ratchet_key not in state.chains:
        _step_ratchet(state, msg.ratchet_key, msg.previous_counter, rng)
    chain = state.chains[msg.ratchet_key]
    if chain.sending:
        raise InvalidMessage("message names our own sending ratchet key")
    _fill(chain, msg.counter)
    seed = chain.message_keys.pop(msg.counter, None)
    if seed is None:
        raise DuplicateMessage(f"message key {msg.counter} already used (replay or redelivery)")
    _cap(chain)
    cipher_key, mac_key, iv = _message_keys(seed)
    mac = P.hmac_sha256(mac_key, serialize_public(state.remote_identity) + our_identity.serialized_public
                        + bytes([P.VERSION_BYTE]) + msg.signed_part[1:])[:_MAC_SIZE]
    if not hmac.compare_digest(mac, msg.mac):
        raise InvalidMac("SignalMessage MAC does not verify")
    plaintext = P.aes_cbc_decrypt(cipher_key, iv, msg.ciphertext)
    state.pending = None
    return plaintext


_ERROR_PREFERENCE: tuple[type[SignalError], ...] = (DuplicateMessage, TooManySkipped, InvalidKey)


def decrypt_msg(
    record: SessionRecord | None, our_identity: IdentityKeyPair, body: bytes, rng: Rng = os.urandom
) -> DecryptResult:
    """Decrypt a SignalMessage (``<enc type="msg">``), trying sessions most recently used first.

    When no session decrypts it, the most telling error is raised: :class:`DuplicateMessage` if a
    session had already used that key, then :class:`TooManySkipped`, else :class:`InvalidMac`.
    """
    msg = _parse_whisper(body)
    if record is None or not isinstance(record, SessionRecord) or not record.states:
        raise NoSession("no session to decrypt with")
    errors: list[SignalError] = []
    for old in record.by_recent_use():
        state = old.clone()
        try:
            plaintext = _decrypt_with(state, msg, our_identity, rng)
        except SignalError as exc:
            errors.append(exc)
            continue
        return DecryptResult(record.replacing(old, state), plaintext, None, state.remote_identity,
                             state.base_key)
    for kind in _ERROR_PREFERENCE:
        for err in errors:
            if isinstance(err, kind):
                raise err
    raise next((e for e in errors if not isinstance(e, InvalidMac)), None) or InvalidMac(
        "no session of the record decrypts this message (MAC mismatch)")


@dataclass(frozen=True, slots=True)
class _PreKeyMsg:
    pre_key_id: int | None
    base_key: bytes
    identity_key: bytes
    message: bytes
    registration_id: int | None
    signed_pre_key_id: int


def _parse_pkmsg(body: bytes) -> _PreKeyMsg:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidMessage(f"pkmsg body: expected bytes, got {type(body).__name__}")
    body = bytes(body)
    if len(body) < 2:
        raise InvalidMessage(f"PreKeySignalMessage too short ({len(body)} bytes)")
    if not P.version_ok(body[0]):
        raise InvalidMessage(f"PreKeySignalMessage version byte {body[0]:#04x} is not supported")
    msg = pb.PreKeyWhisperMessage()
    try:
        msg.ParseFromString(body[1:])
    except Exception as exc:
        raise InvalidMessage(f"PreKeySignalMessage protobuf is malformed ({exc})") from exc
    for name in ("baseKey", "identityKey", "message"):
        if not msg.HasField(name):
            raise InvalidMessage(f"PreKeySignalMessage lacks '{name}'")
    try:
        base_key = parse_public(msg.baseKey, "base key")
        identity = parse_public(msg.identityKey, "identity key")
    except InvalidKey as exc:
        raise InvalidMessage(str(exc)) from exc
    return _PreKeyMsg(
        pre_key_id=msg.preKeyId if msg.HasField("preKeyId") else None, base_key=base_key,
        identity_key=identity, message=msg.message,
        registration_id=msg.registrationId if msg.HasField("registrationId") else None,
        signed_pre_key_id=msg.signedPreKeyId,
    )


def _lookup(fn: Callable[[int], object], key_id: int, what: str) -> object:
    try:
        return fn(key_id)
    except SignalError:
        raise
    except Exception as exc:  # a lookup that raises is a missing key, not a crash of the decrypt
        raise InvalidKeyId(f"{what} {key_id} lookup failed ({exc})", key_id=key_id,
                           signed=what.startswith("signed")) from exc


def decrypt_pkmsg(
    record: SessionRecord | None,
    our_identity: IdentityKeyPair,
    our_registration_id: int,
    body: bytes,
    prekey_lookup: PreKeyLookup,
    signed_prekey_lookup: SignedPreKeyLookup,
    rng: Rng = os.urandom,
    *,
    expected_identity: bytes | None = None,
) -> DecryptResult:
    """Decrypt a PreKeySignalMessage (``<enc type="pkmsg">``).

    A known base key reuses its session (pre-keys untouched). A new one builds a session as
    responder: the named one-time pre-key must exist (:class:`InvalidKeyId` if it is gone — never a
    reuse); the open session, if any, is kept as a closed one. ``our_registration_id`` is not on the
    wire in this direction; it is accepted for symmetry with :func:`session_from_bundle`.
    """
    pk = _parse_pkmsg(body)
    _check_expected(expected_identity, pk.identity_key)
    inner = _parse_whisper(pk.message)
    record = record if isinstance(record, SessionRecord) else SessionRecord()
    for old in record.states:
        if old.base_key == pk.base_key:
            if old.base_key_ours:
                raise InvalidMessage("pkmsg carries our own base key")
            state = old.clone()
            plaintext = _decrypt_with(state, inner, our_identity, rng)
            return DecryptResult(record.replacing(old, state), plaintext, None, state.remote_identity,
                                 state.base_key)
    if pk.registration_id is None:
        raise InvalidMessage("PreKeySignalMessage for a new session lacks 'registrationId'")
    one_time: PreKeyRecord | None = None
    if pk.pre_key_id is not None:
        found = _lookup(prekey_lookup, pk.pre_key_id, "pre-key")
        if not isinstance(found, PreKeyRecord):
            raise InvalidKeyId(f"pre-key {pk.pre_key_id} not found (consumed or never issued)",
                               key_id=pk.pre_key_id, signed=False)
        one_time = found
    signed = _lookup(signed_prekey_lookup, pk.signed_pre_key_id, "signed pre-key")
    if not isinstance(signed, SignedPreKeyRecord):
        raise InvalidKeyId(f"signed pre-key {pk.signed_pre_key_id} not found",
                           key_id=pk.signed_pre_key_id, signed=True)
    spk: KeyPair = signed.key_pair
    parts = [
        P.dh(spk.private, pk.identity_key),
        P.dh(our_identity.private, pk.base_key),
        P.dh(spk.private, pk.base_key),
    ]
    if one_time is not None:
        parts.append(P.dh(one_time.key_pair.private, pk.base_key))
    state = SessionState(
        remote_registration_id=pk.registration_id, remote_identity=pk.identity_key,
        base_key=pk.base_key, base_key_ours=False, root_key=_master_key(parts), our_ratchet=spk,
        last_remote_ratchet=pk.base_key, previous_counter=0, chains={}, pending=None,
    )
    plaintext = _decrypt_with(state, inner, our_identity, rng)
    previous = record.open_state()
    changed = previous is not None and previous.remote_identity != pk.identity_key
    return DecryptResult(record.with_new_session(state), plaintext,
                         one_time.id if one_time is not None else None, pk.identity_key, pk.base_key,
                         identity_changed=changed)
