"""Binds the Signal port (``e2e.Cipher``) to ``evolink.signal`` (docs/dev/signal-api.md).

Records cross the port as bytes (``SessionRecord.to_bytes`` / ``SenderKeyRecord.to_bytes``), so the
store never sees Signal types. Every ``SignalError`` becomes an ``E2EError`` carrying a short
reason; a record that no longer parses is reported the same way (the message gets a retry receipt,
the stored record is left alone for inspection).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from evolink import signal
from evolink.wa.e2e import (
    Bundle,
    Cipher,
    Decrypted,
    E2EError,
    Encrypted,
    GroupEncrypted,
    NoSenderKey,
    NoSession,
    OwnKeys,
    PreKeyLookup,
)
from evolink.wire.crypto import KeyPair

T = TypeVar("T")

_REASONS: dict[type[signal.SignalError], str] = {
    signal.InvalidMac: "bad_mac",
    signal.DuplicateMessage: "duplicate",
    signal.InvalidKeyId: "unknown_pre_key",
    signal.InvalidSignature: "bad_signature",
    signal.TooManySkipped: "too_far_ahead",
    signal.InvalidRecord: "bad_record",
    signal.UntrustedIdentity: "untrusted_identity",
    signal.InvalidKey: "bad_key",
    signal.InvalidMessage: "malformed",
}


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except signal.NoSession as exc:
        raise NoSession(str(exc)) from None
    except signal.NoSenderKey as exc:
        raise NoSenderKey(str(exc)) from None
    except signal.SignalError as exc:
        err = E2EError(str(exc))
        for kind, reason in _REASONS.items():
            if isinstance(exc, kind):
                err.reason = reason
                break
        raise err from None


class SignalCipher:
    """``e2e.Cipher`` on ``evolink.signal``'s pure functions."""

    @staticmethod
    def _identity(own: OwnKeys) -> signal.IdentityKeyPair:
        return signal.IdentityKeyPair.from_key_pair(own.identity)

    def decrypt(self, own: OwnKeys, kind: str, record: bytes | None, data: bytes,
                pre_key: PreKeyLookup) -> Decrypted:
        identity = self._identity(own)

        def one_time(key_id: int) -> signal.PreKeyRecord | None:
            private = pre_key(key_id)
            return signal.PreKeyRecord(key_id, KeyPair.from_private(private)) if private is not None else None

        def signed(key_id: int) -> signal.SignedPreKeyRecord | None:
            if key_id != own.signed_pre_key_id:
                return None
            return signal.SignedPreKeyRecord(key_id, own.signed_pre_key, own.signed_pre_key_signature)

        def run() -> Decrypted:
            rec = signal.SessionRecord.from_bytes(record) if record is not None else None
            if kind == "pkmsg":
                out = signal.decrypt_pkmsg(rec, identity, own.registration_id, data, one_time, signed)
            elif kind == "msg":
                out = signal.decrypt_msg(rec, identity, data)
            else:
                raise E2EError(f"not a 1:1 ciphertext type: {kind[:16]!r}")
            return Decrypted(out.plaintext, out.record.to_bytes(), out.used_pre_key_id,
                             out.remote_identity_key if kind == "pkmsg" else None)

        return _call(run)

    def encrypt(self, own: OwnKeys, record: bytes, plaintext: bytes) -> Encrypted:
        def run() -> Encrypted:
            new, ct = signal.encrypt(signal.SessionRecord.from_bytes(record), self._identity(own), plaintext)
            return Encrypted(ct.type, ct.body, new.to_bytes())

        return _call(run)

    def session_from_bundle(self, own: OwnKeys, bundle: Bundle) -> bytes:
        def run() -> bytes:
            b = signal.PreKeyBundle(bundle.registration_id, bundle.device_id, bundle.identity,
                                    bundle.signed_pre_key_id, bundle.signed_pre_key,
                                    bundle.signed_pre_key_signature, bundle.pre_key_id, bundle.pre_key)
            return signal.session_from_bundle(None, self._identity(own), own.registration_id, b).to_bytes()

        return _call(run)

    def group_encrypt(self, record: bytes | None, plaintext: bytes) -> GroupEncrypted:
        def run() -> GroupEncrypted:
            rec = signal.SenderKeyRecord.from_bytes(record) if record is not None else None
            rec, skdm = signal.create_sender_key_distribution(rec)
            new, ct = signal.group_encrypt(rec, plaintext)
            return GroupEncrypted(ct, new.to_bytes(), skdm)

        return _call(run)

    def group_decrypt(self, record: bytes | None, data: bytes) -> tuple[bytes, bytes]:
        def run() -> tuple[bytes, bytes]:
            rec = signal.SenderKeyRecord.from_bytes(record) if record is not None else None
            new, plain = signal.group_decrypt(rec, data)
            return plain, new.to_bytes()

        return _call(run)

    def process_distribution(self, record: bytes | None, distribution: bytes) -> bytes:
        def run() -> bytes:
            rec = signal.SenderKeyRecord.from_bytes(record) if record is not None else None
            return signal.process_sender_key_distribution(rec, distribution).to_bytes()

        return _call(run)


def default_cipher() -> Cipher:
    return SignalCipher()
