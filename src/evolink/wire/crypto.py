"""Key agreement, signatures and pairing crypto for WhatsApp Web linking (wa-protocol.md §2, §8, §9, §15).

Everything is a plain function over ``bytes``. Bad lengths or malformed key material raise
:class:`~evolink.wire.errors.CryptoError`; :func:`verify` is the one exception and returns ``False``
for any bad input, because a verifier is asked a yes/no question about untrusted data.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

import xeddsa
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from evolink.wire.errors import CryptoError

KEY_SIZE = 32
SIGNATURE_SIZE = 64
KEY_TYPE_DJB = b"\x05"  # libsignal's "curve25519 public key" type byte

# ----------------------------------------------------------------------------------------- keys


def _need(name: str, value: bytes, size: int) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise CryptoError(f"{name}: expected bytes, got {type(value).__name__}")
    value = bytes(value)
    if len(value) != size:
        raise CryptoError(f"{name}: expected {size} bytes, got {len(value)}")
    return value


def _clamp(private: bytes) -> bytes:
    # The X25519 clamp. X25519 applies it anyway; storing clamped keys (as libsignal and Baileys do)
    # keeps the bytes we persist identical to what the peers would have generated.
    b = bytearray(private)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return bytes(b)


@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair. ``private`` is kept out of ``repr`` so it never lands in a log line."""

    private: bytes = field(repr=False)
    public: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_private(_clamp(os.urandom(KEY_SIZE)))

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        private = _need("private key", private, KEY_SIZE)
        public = (
            X25519PrivateKey.from_private_bytes(private)
            .public_key()
            .public_bytes(Encoding.Raw, PublicFormat.Raw)
        )
        return cls(private=private, public=public)


def dh(private: bytes, public: bytes) -> bytes:
    """X25519 shared secret; a low-order peer key (all-zero result) is refused."""
    private = _need("private key", private, KEY_SIZE)
    public = _need("public key", public, KEY_SIZE)
    try:
        return X25519PrivateKey.from_private_bytes(private).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
    except ValueError as exc:
        raise CryptoError(f"X25519 agreement failed: {exc}") from exc


# ----------------------------------------------------------------------------------- signatures

_P = 2**255 - 19


def sign(private: bytes, message: bytes) -> bytes:
    """64-byte XEdDSA signature with the sign bit forced to 0 (wa-protocol.md §15).

    Forcing the key (rather than signing with it as-is) makes every signature verifiable by both
    verifier conventions in the wild: the ones that read the sign bit from ``sig[63]`` and the ones
    that assume it is 0.
    """
    private = _need("private key", private, KEY_SIZE)
    if not isinstance(message, bytes | bytearray | memoryview):
        raise CryptoError(f"message: expected bytes, got {type(message).__name__}")
    forced = xeddsa.priv_force_sign(private, False)
    signature = bytes(xeddsa.ed25519_priv_sign(forced, bytes(message), os.urandom(64)))
    if len(signature) != SIGNATURE_SIZE or signature[63] & 0x80:
        raise CryptoError("xeddsa produced an unexpected signature")  # would be a library bug
    return signature


def _edwards_public(montgomery: bytes, sign_bit: int) -> bytes:
    # Birational map u -> y = (u - 1) / (u + 1) mod p, then put the sign of x in bit 255.
    u = (int.from_bytes(montgomery, "little") & ((1 << 255) - 1)) % _P
    y = (u - 1) * pow(u + 1, _P - 2, _P) % _P
    return (y | (sign_bit << 255)).to_bytes(32, "little")


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """libsignal-convention XEdDSA verify: the Edwards sign bit travels in ``sig[63] & 0x80``.

    Returns ``False`` (never raises) for wrong lengths, non-bytes, invalid points or bad signatures.
    """
    try:
        if len(public) != KEY_SIZE or len(signature) != SIGNATURE_SIZE:
            return False
        public, signature, message = bytes(public), bytes(signature), bytes(message)
        sign_bit = signature[63] >> 7
        ed_key = Ed25519PublicKey.from_public_bytes(_edwards_public(public, sign_bit))
        ed_key.verify(signature[:63] + bytes([signature[63] & 0x7F]), message)
        return True
    except Exception:  # InvalidSignature, bad point, wrong types: all mean "not verified"
        return False


def signed_prekey_signature(identity_private: bytes, prekey_public: bytes) -> bytes:
    """Signature of a signed pre-key: over ``0x05 ‖ pub`` (libsignal's serialized public key)."""
    return sign(identity_private, KEY_TYPE_DJB + _need("pre-key public", prekey_public, KEY_SIZE))


# ----------------------------------------------------------------------------------------- HKDF

_HKDF_MAX = 255 * 32


def hkdf(ikm: bytes, length: int, salt: bytes | None = None, info: bytes = b"") -> bytes:
    """RFC 5869 HKDF-SHA256. ``salt=None`` means the RFC default (32 zero bytes)."""
    if not 0 < length <= _HKDF_MAX:
        raise CryptoError(f"HKDF length must be 1..{_HKDF_MAX}, got {length}")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(bytes(ikm))


# -------------------------------------------------------------------------- pairing code (§8)

PAIRING_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTVWXYZ"
PAIRING_CODE_LENGTH = 8
PAIRING_PBKDF2_ITERATIONS = 131072  # 2 << 16, as both clients use
KEY_BUNDLE_INFO = b"link_code_pairing_key_bundle_encryption_key"
ADV_SECRET_INFO = b"adv_secret"
WRAPPED_KEY_SIZE = 32 + 16 + 32  # salt ‖ iv ‖ AES-CTR(ephemeral public)
_BUNDLE_SALT, _BUNDLE_NONCE, _GCM_TAG = 32, 12, 16


def bytes_to_pairing_code(b5: bytes) -> str:
    """5 bytes → 8 characters: the 40 bits read MSB-first in 5-bit groups."""
    value = int.from_bytes(_need("pairing code bytes", b5, 5), "big")
    return "".join(PAIRING_ALPHABET[(value >> shift) & 31] for shift in range(35, -1, -5))


def generate_pairing_code() -> str:
    return bytes_to_pairing_code(os.urandom(5))


def _code_bytes(code: str) -> bytes:
    # Accept the "XXXX-XXXX" display form; the KDF input is always the 8 characters without it.
    if not isinstance(code, str):
        raise CryptoError("pairing code must be a str")
    if len(code) == 9 and code[4] == "-":
        code = code[:4] + code[5:]
    if len(code) != PAIRING_CODE_LENGTH:
        raise CryptoError(f"pairing code must be {PAIRING_CODE_LENGTH} characters")
    return code.encode("utf-8")


def derive_pairing_key(code: str, salt: bytes) -> bytes:
    """PBKDF2-HMAC-SHA256(code, salt, 131072 iterations, 32 bytes)."""
    salt = _need("pairing salt", salt, 32)
    return hashlib.pbkdf2_hmac("sha256", _code_bytes(code), salt, PAIRING_PBKDF2_ITERATIONS, 32)


def _aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    # The 16-byte IV is the whole initial counter block (Node aes-256-ctr / Go cipher.NewCTR).
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def wrap_ephemeral(code: str, public: bytes, *, salt: bytes | None = None, iv: bytes | None = None) -> bytes:
    """Wrap an ephemeral public key under the pairing code: ``salt(32) ‖ iv(16) ‖ ct(32)``."""
    public = _need("ephemeral public", public, KEY_SIZE)
    salt = os.urandom(32) if salt is None else _need("salt", salt, 32)
    iv = os.urandom(16) if iv is None else _need("iv", iv, 16)
    return salt + iv + _aes_ctr(derive_pairing_key(code, salt), iv, public)


def unwrap_ephemeral(code: str, wrapped: bytes) -> bytes:
    """Inverse of :func:`wrap_ephemeral`. A wrong code yields a different key, not an error (CTR)."""
    wrapped = _need("wrapped ephemeral", wrapped, WRAPPED_KEY_SIZE)
    salt, iv, ct = wrapped[:32], wrapped[32:48], wrapped[48:]
    return _aes_ctr(derive_pairing_key(code, salt), iv, ct)


def encrypt_key_bundle(
    ephemeral_shared: bytes, bundle: bytes, *, salt: bytes | None = None, nonce: bytes | None = None
) -> bytes:
    """``salt(32) ‖ nonce(12) ‖ AES-256-GCM(HKDF(shared, salt, KEY_BUNDLE_INFO), bundle)`` (156 for 96)."""
    ephemeral_shared = _need("ephemeral shared secret", ephemeral_shared, KEY_SIZE)
    salt = os.urandom(_BUNDLE_SALT) if salt is None else _need("bundle salt", salt, _BUNDLE_SALT)
    nonce = os.urandom(_BUNDLE_NONCE) if nonce is None else _need("bundle nonce", nonce, _BUNDLE_NONCE)
    key = hkdf(ephemeral_shared, 32, salt=salt, info=KEY_BUNDLE_INFO)
    return salt + nonce + AESGCM(key).encrypt(nonce, bytes(bundle), None)


def decrypt_key_bundle(ephemeral_shared: bytes, wrapped: bytes) -> bytes:
    """Inverse of :func:`encrypt_key_bundle`; a bad tag (wrong secret, tampering) is a ``CryptoError``."""
    ephemeral_shared = _need("ephemeral shared secret", ephemeral_shared, KEY_SIZE)
    wrapped = bytes(wrapped)
    if len(wrapped) < _BUNDLE_SALT + _BUNDLE_NONCE + _GCM_TAG:
        raise CryptoError(f"wrapped key bundle too short ({len(wrapped)} bytes)")
    salt, nonce, ct = wrapped[:32], wrapped[32:44], wrapped[44:]
    key = hkdf(ephemeral_shared, 32, salt=salt, info=KEY_BUNDLE_INFO)
    try:
        return AESGCM(key).decrypt(nonce, ct, None)
    except InvalidTag as exc:
        raise CryptoError("key bundle authentication failed") from exc


def derive_adv_secret(ephemeral_shared: bytes, identity_shared: bytes, adv_random: bytes) -> bytes:
    """ADV secret after code pairing: HKDF(eph ‖ ident ‖ random, salt = zeros, "adv_secret", 32)."""
    ikm = (
        _need("ephemeral shared secret", ephemeral_shared, KEY_SIZE)
        + _need("identity shared secret", identity_shared, KEY_SIZE)
        + _need("adv random", adv_random, KEY_SIZE)
    )
    return hkdf(ikm, 32, salt=None, info=ADV_SECRET_INFO)


# ------------------------------------------------------------------------------------ ADV (§9)

ADV_ACCOUNT_SIG_PREFIX = b"\x06\x00"
ADV_DEVICE_SIG_PREFIX = b"\x06\x01"
ADV_HOSTED_ACCOUNT_SIG_PREFIX = b"\x06\x05"
ADV_HOSTED_DEVICE_SIG_PREFIX = b"\x06\x06"


def adv_hmac(adv_secret: bytes, details: bytes, hosted: bool = False) -> bytes:
    """HMAC-SHA256 over the ADVSignedDeviceIdentity bytes (prefixed ``06 05`` for hosted accounts)."""
    key = _need("adv secret", adv_secret, KEY_SIZE)
    prefix = ADV_HOSTED_ACCOUNT_SIG_PREFIX if hosted else b""
    return hmac.new(key, prefix + bytes(details), hashlib.sha256).digest()


def adv_hmac_valid(adv_secret: bytes, details: bytes, mac: bytes, hosted: bool = False) -> bool:
    """Constant-time check of a pair-success HMAC."""
    return hmac.compare_digest(adv_hmac(adv_secret, details, hosted), bytes(mac))


def account_signature_message(details: bytes, companion_identity_pub: bytes, hosted: bool = False) -> bytes:
    """What the primary's account signature covers: ``prefix ‖ details ‖ companion identity``."""
    prefix = ADV_HOSTED_ACCOUNT_SIG_PREFIX if hosted else ADV_ACCOUNT_SIG_PREFIX
    return prefix + bytes(details) + _need("companion identity", companion_identity_pub, KEY_SIZE)


def device_signature_message(
    details: bytes, companion_identity_pub: bytes, account_signature_key: bytes
) -> bytes:
    """What the companion's device signature covers. Both clients use ``06 01`` even when hosted."""
    return (
        ADV_DEVICE_SIG_PREFIX
        + bytes(details)
        + _need("companion identity", companion_identity_pub, KEY_SIZE)
        + _need("account signature key", account_signature_key, KEY_SIZE)
    )
