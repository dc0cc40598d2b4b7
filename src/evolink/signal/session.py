"""Pairwise Signal sessions: the record, X3DH and the double ratchet, libsignal-compatible.

Pure functions over immutable :class:`SessionRecord` values (wa-messaging.md §1.4–1.7). The caller
loads a record, calls one function, and persists the returned record **in the same transaction** as
whatever the message caused (the decrypted message, a consumed one-time pre-key). A raised
:class:`~evolink.signal.errors.SignalError` means nothing changed: the input record is untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from evolink.signal.keys import IdentityKeyPair, PreKeyBundle, PreKeyRecord, Rng, SignedPreKeyRecord

PreKeyLookup = Callable[[int], PreKeyRecord | None]
SignedPreKeyLookup = Callable[[int], SignedPreKeyRecord | None]

MAX_SESSIONS = 40  # libsignal-JS CLOSED_SESSIONS_MAX: a record keeps at most 40 session entries
MAX_RECEIVER_CHAINS = 5  # libsignal Java/Go: receiving chains kept per session
MAX_SKIPPED_KEYS = 2000  # per chain, and the "messages into the future" limit


class SessionRecord:
    """All sessions with one remote device (one :class:`~evolink.signal.ProtocolAddress`).

    At most one session is *open* (used to encrypt); up to ``MAX_SESSIONS - 1`` closed ones are
    kept so late messages of a replaced session still decrypt. Immutable: operations return new
    records. Serialize with :meth:`to_bytes` / :meth:`from_bytes` (format documented in
    docs/messaging.md "Signal layer").
    """

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        """Parse a stored record; anything malformed is :class:`~evolink.signal.errors.InvalidRecord`."""
        raise NotImplementedError

    def has_open_session(self) -> bool:
        """True when :func:`encrypt` can be called."""
        raise NotImplementedError

    @property
    def remote_identity_key(self) -> bytes | None:
        """Raw 32-byte identity of the peer in the open session (None without one)."""
        raise NotImplementedError

    @property
    def remote_registration_id(self) -> int | None:
        """The peer's registration id in the open session (None without one)."""
        raise NotImplementedError

    @property
    def session_count(self) -> int:
        """Number of session entries (open + closed)."""
        raise NotImplementedError


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

    Verifies the signed pre-key signature (:class:`InvalidSignature`), unlike libsignal-JS which
    skips that check. With ``expected_identity`` set, a bundle with another identity key raises
    :class:`UntrustedIdentity`. Messages encrypted with the result are pkmsgs until the peer's first
    reply decrypts.
    """
    raise NotImplementedError


def encrypt(
    record: SessionRecord, our_identity: IdentityKeyPair, plaintext: bytes
) -> tuple[SessionRecord, CiphertextMessage]:
    """Encrypt with the open session: ``pkmsg`` while the peer has not answered yet, else ``msg``.

    :class:`NoSession` without an open session. ``plaintext`` should already be padded.
    """
    raise NotImplementedError


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
    reuse), the open session, if any, is kept as a closed one. ``our_registration_id`` is not on the
    wire for this direction; it is accepted for symmetry and future checks.
    """
    raise NotImplementedError


def decrypt_msg(
    record: SessionRecord | None, our_identity: IdentityKeyPair, body: bytes, rng: Rng = os.urandom
) -> DecryptResult:
    """Decrypt a SignalMessage (``<enc type="msg">``), trying the open session first, then closed ones."""
    raise NotImplementedError
