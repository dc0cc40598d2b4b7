"""The Signal port: what the engine needs from the sans-I/O Signal package, as pure functions.

Records (1:1 session records, group sender-key records) are opaque bytes owned by the store port.
Every function returns the *new* record and leaves the old one untouched, so a failed decryption
can never corrupt a session: the engine simply does not store anything (wa-messaging §8).
``evolink.signal`` provides the implementation (``signal_adapter``); tests may use a fake.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from evolink.wire.crypto import KeyPair


class E2EError(Exception):
    """A ciphertext could not be decrypted (bad MAC, unknown key, replay, malformed): the session is
    unchanged. ``reason`` is a short machine-readable word for logs and the failure event."""

    reason = "decrypt_failed"


class NoSession(E2EError):
    reason = "no_session"


class NoSenderKey(E2EError):
    reason = "no_sender_key"


@dataclass(frozen=True, slots=True)
class OwnKeys:
    identity: KeyPair
    registration_id: int
    signed_pre_key_id: int
    signed_pre_key: KeyPair
    signed_pre_key_signature: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Bundle:
    """A peer device's key bundle from ``iq xmlns=encrypt <key>`` (raw 32-byte keys)."""

    registration_id: int
    identity: bytes
    signed_pre_key_id: int
    signed_pre_key: bytes
    signed_pre_key_signature: bytes
    pre_key_id: int | None = None
    pre_key: bytes | None = None
    device_id: int = 0


@dataclass(frozen=True, slots=True)
class Decrypted:
    plaintext: bytes  # still padded
    record: bytes  # the new session record to store
    used_pre_key_id: int | None = None  # the one-time pre-key a new session consumed
    remote_identity: bytes | None = None  # the sender's identity key, for pkmsg


@dataclass(frozen=True, slots=True)
class Encrypted:
    kind: str  # "pkmsg" | "msg"
    ciphertext: bytes
    record: bytes


@dataclass(frozen=True, slots=True)
class GroupEncrypted:
    ciphertext: bytes  # the SenderKeyMessage (enc type="skmsg")
    record: bytes  # our sender-key record after the step
    distribution: bytes  # SenderKeyDistributionMessage for members that lack our key


PreKeyLookup = Callable[[int], bytes | None]  # one-time pre-key id → private key (None: unknown)


class Cipher(Protocol):
    def decrypt(self, own: OwnKeys, kind: str, record: bytes | None, data: bytes,
                pre_key: PreKeyLookup) -> Decrypted:
        """``kind`` is ``pkmsg`` or ``msg``; raises ``E2EError``."""

    def encrypt(self, own: OwnKeys, record: bytes, plaintext: bytes) -> Encrypted: ...

    def session_from_bundle(self, own: OwnKeys, bundle: Bundle) -> bytes:
        """A new outgoing session record (X3DH as initiator); raises ``E2EError`` on a bad bundle."""

    def group_encrypt(self, record: bytes | None, plaintext: bytes) -> GroupEncrypted: ...

    def group_decrypt(self, record: bytes | None, data: bytes) -> tuple[bytes, bytes]:
        """(padded plaintext, new record); ``NoSenderKey`` without a record for the key id."""

    def process_distribution(self, record: bytes | None, distribution: bytes) -> bytes:
        """Add a received SenderKeyDistributionMessage to the (group, sender) record."""
