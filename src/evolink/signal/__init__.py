"""Signal protocol for WhatsApp, sans-I/O and pure (wa-messaging.md §1–3).

libsignal-compatible X3DH, PreKeySignalMessage / SignalMessage (version 3, 8-byte MAC over both
identities), the double ratchet with bounded skipped keys, sender keys for groups, and WhatsApp's
plaintext padding. Functions take records in and return new records out; nothing here does I/O or
touches a store, so the caller persists the returned record together with the message in one
transaction. May import only the standard library, third-party packages and :mod:`evolink.wire`.

See docs/dev/signal-api.md (contract) and docs/messaging.md "Signal layer" (formats, guarantees).
"""

from __future__ import annotations

from evolink.signal.address import ProtocolAddress, SenderKeyName, jid_to_address
from evolink.signal.errors import (
    DuplicateMessage,
    InvalidAddress,
    InvalidKey,
    InvalidKeyId,
    InvalidMac,
    InvalidMessage,
    InvalidRecord,
    InvalidSignature,
    NoSenderKey,
    NoSession,
    SignalError,
    TooManySkipped,
    UntrustedIdentity,
)
from evolink.signal.group import (
    SenderKeyRecord,
    create_sender_key_distribution,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution,
)
from evolink.signal.keys import (
    IdentityKeyPair,
    PreKeyBundle,
    PreKeyRecord,
    Rng,
    SignedPreKeyRecord,
    generate_registration_id,
    key_pair_from_rng,
    parse_public,
    serialize_public,
)
from evolink.signal.padding import pad, unpad
from evolink.signal.session import (
    CiphertextMessage,
    DecryptResult,
    PreKeyLookup,
    SessionRecord,
    SignedPreKeyLookup,
    decrypt_msg,
    decrypt_pkmsg,
    encrypt,
    session_from_bundle,
)

__all__ = [
    "CiphertextMessage",
    "DecryptResult",
    "DuplicateMessage",
    "IdentityKeyPair",
    "InvalidAddress",
    "InvalidKey",
    "InvalidKeyId",
    "InvalidMac",
    "InvalidMessage",
    "InvalidRecord",
    "InvalidSignature",
    "NoSenderKey",
    "NoSession",
    "PreKeyBundle",
    "PreKeyLookup",
    "PreKeyRecord",
    "ProtocolAddress",
    "Rng",
    "SenderKeyName",
    "SenderKeyRecord",
    "SessionRecord",
    "SignalError",
    "SignedPreKeyLookup",
    "SignedPreKeyRecord",
    "TooManySkipped",
    "UntrustedIdentity",
    "create_sender_key_distribution",
    "decrypt_msg",
    "decrypt_pkmsg",
    "encrypt",
    "generate_registration_id",
    "group_decrypt",
    "group_encrypt",
    "jid_to_address",
    "key_pair_from_rng",
    "pad",
    "parse_public",
    "process_sender_key_distribution",
    "serialize_public",
    "session_from_bundle",
    "unpad",
]
