"""Identity keys, pre-keys and pre-key bundles (wa-messaging.md §1.1, §1.3).

Every public key in this API is the **raw 32-byte** Curve25519 key, as stanzas and creds carry it.
Inside Signal protobufs, MAC inputs and signature inputs libsignal uses the 33-byte form
``0x05 ‖ key`` (:data:`KEY_TYPE_DJB`); :func:`serialize_public` / :func:`parse_public` convert, and
functions that accept keys from outside take either form.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from evolink.signal.errors import InvalidKey
from evolink.wire import crypto
from evolink.wire.crypto import KEY_TYPE_DJB, KeyPair

Rng = Callable[[int], bytes]
"""Source of randomness: ``rng(n)`` returns ``n`` random bytes (default :func:`os.urandom`)."""

MAX_PRE_KEY_ID = (1 << 24) - 1  # pre-key ids travel as 3 bytes
MAX_REGISTRATION_ID = 0x3FFF  # Baileys/libsignal-JS make 14-bit ids; any uint32 is accepted


def serialize_public(public: bytes) -> bytes:
    """Raw 32-byte public key → libsignal's 33-byte ``0x05 ‖ key``."""
    return KEY_TYPE_DJB + _raw("public key", public)


def parse_public(data: bytes, what: str = "public key") -> bytes:
    """33-byte ``0x05 ‖ key`` (or a bare 32-byte key, as libsignal-JS accepts) → raw 32 bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidKey(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 33 and data[:1] == KEY_TYPE_DJB:
        return data[1:]
    if len(data) == 32:
        return data
    raise InvalidKey(f"{what}: expected 33 bytes starting 0x05 (or 32 bytes), got {len(data)} bytes")


def _raw(what: str, key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview) or len(key) != 32:
        raise InvalidKey(f"{what}: expected 32 bytes")
    return bytes(key)


def key_pair_from_rng(rng: Rng = os.urandom) -> KeyPair:
    """A fresh X25519 pair from ``rng``, private key clamped as libsignal and Baileys store it."""
    b = bytearray(rng(32))
    if len(b) != 32:
        raise InvalidKey("rng returned the wrong number of bytes")
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return KeyPair.from_private(bytes(b))


def generate_registration_id(rng: Rng = os.urandom) -> int:
    """A 14-bit registration id, as libsignal-JS ``generateRegistrationId``."""
    return int.from_bytes(rng(2), "little") & MAX_REGISTRATION_ID


@dataclass(frozen=True, slots=True)
class IdentityKeyPair:
    """A device's long-term identity pair. ``private`` never appears in ``repr``."""

    public: bytes
    private: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _raw("identity public key", self.public)
        _raw("identity private key", self.private)

    @classmethod
    def from_key_pair(cls, kp: KeyPair) -> IdentityKeyPair:
        return cls(public=kp.public, private=kp.private)

    @classmethod
    def generate(cls, rng: Rng = os.urandom) -> IdentityKeyPair:
        return cls.from_key_pair(key_pair_from_rng(rng))

    @property
    def serialized_public(self) -> bytes:
        """``0x05 ‖ public`` (33 bytes), the form inside Signal messages."""
        return KEY_TYPE_DJB + self.public


@dataclass(frozen=True, slots=True)
class PreKeyRecord:
    """A one-time pre-key: ``id`` (1 … 2^24-1) and its pair."""

    id: int
    key_pair: KeyPair

    @classmethod
    def generate(cls, key_id: int, rng: Rng = os.urandom) -> PreKeyRecord:
        return cls(key_id, key_pair_from_rng(rng))


@dataclass(frozen=True, slots=True)
class SignedPreKeyRecord:
    """A signed pre-key; ``signature`` is XEdDSA by the identity key over ``0x05 ‖ public``."""

    id: int
    key_pair: KeyPair
    signature: bytes

    @classmethod
    def generate(cls, key_id: int, identity: IdentityKeyPair, rng: Rng = os.urandom) -> SignedPreKeyRecord:
        kp = key_pair_from_rng(rng)
        return cls(key_id, kp, crypto.signed_prekey_signature(identity.private, kp.public))


@dataclass(frozen=True, slots=True)
class PreKeyBundle:
    """What a key-bundle fetch (``iq xmlns="encrypt"``) returns for one device.

    Keys may be given raw (32 bytes, as in stanzas) or serialized (33 bytes, ``0x05`` first); they
    are stored raw. ``pre_key_id`` and ``pre_key`` are both ``None`` when the server had no
    one-time key left (three-DH X3DH).
    """

    registration_id: int
    device_id: int
    identity_key: bytes
    signed_pre_key_id: int
    signed_pre_key: bytes
    signed_pre_key_signature: bytes
    pre_key_id: int | None = None
    pre_key: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "identity_key", parse_public(self.identity_key, "bundle identity key"))
        object.__setattr__(self, "signed_pre_key", parse_public(self.signed_pre_key, "bundle signed pre-key"))
        if self.pre_key is not None:
            object.__setattr__(self, "pre_key", parse_public(self.pre_key, "bundle pre-key"))
        if (self.pre_key is None) != (self.pre_key_id is None):
            raise InvalidKey("bundle pre_key and pre_key_id must both be given or both be None")
        sig = self.signed_pre_key_signature
        if not isinstance(sig, bytes | bytearray | memoryview) or len(sig) != 64:
            raise InvalidKey("bundle signed pre-key signature: expected 64 bytes")
        for name in ("registration_id", "device_id", "signed_pre_key_id"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 0xFFFFFFFF:
                raise InvalidKey(f"bundle {name} must be a uint32, got {v!r}")
        if self.pre_key_id is not None and (
            not isinstance(self.pre_key_id, int) or not 0 <= self.pre_key_id <= 0xFFFFFFFF
        ):
            raise InvalidKey(f"bundle pre_key_id must be a uint32, got {self.pre_key_id!r}")
