"""The symmetric primitives libsignal uses, as small pure functions (wa-messaging.md §1.5).

- ``derive_secrets``: libsignal-JS ``crypto.deriveSecrets`` = RFC 5869 HKDF-SHA256 returning
  ``chunks`` 32-byte blocks (we call :func:`evolink.wire.crypto.hkdf`, i.e. ``cryptography``).
- chain step: message-key seed ``HMAC(ck, 0x01)``, next chain key ``HMAC(ck, 0x02)``.
- AES-256-CBC with PKCS#7 (``cryptography``); a bad length or pad is :class:`InvalidMessage`.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from evolink.signal.errors import InvalidKey, InvalidMessage
from evolink.wire import crypto
from evolink.wire.errors import CryptoError

ZERO_SALT = bytes(32)
VERSION_BYTE = 0x33  # (3 << 4) | 3
INFO_TEXT = b"WhisperText"
INFO_RATCHET = b"WhisperRatchet"
INFO_MESSAGE_KEYS = b"WhisperMessageKeys"
INFO_GROUP = b"WhisperGroup"
MESSAGE_KEY_SEED = b"\x01"
CHAIN_KEY_SEED = b"\x02"


def derive_secrets(ikm: bytes, salt: bytes, info: bytes, chunks: int = 3) -> list[bytes]:
    out = crypto.hkdf(ikm, 32 * chunks, salt=salt, info=info)
    return [out[i : i + 32] for i in range(0, 32 * chunks, 32)]


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, hashlib.sha256)


def dh(private: bytes, public: bytes) -> bytes:
    """X25519; a low-order or malformed peer key is :class:`InvalidKey` (never a CryptoError)."""
    try:
        return crypto.dh(private, public)
    except CryptoError as exc:
        raise InvalidKey(f"key agreement failed: {exc}") from exc


def version_ok(byte: int) -> bool:
    """libsignal-JS's check: the high nibble (message version) >= 3, the low one (min version) <= 3."""
    return (byte >> 4) >= 3 and (byte & 0x0F) <= 3


def aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    padder = sym_padding.PKCS7(128).padder()
    data = padder.update(bytes(plaintext)) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    if not ciphertext or len(ciphertext) % 16:
        raise InvalidMessage(f"ciphertext length {len(ciphertext)} is not a positive multiple of 16")
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    data = dec.update(bytes(ciphertext)) + dec.finalize()
    unpadder = sym_padding.PKCS7(128).unpadder()
    try:
        return unpadder.update(data) + unpadder.finalize()
    except ValueError as exc:
        raise InvalidMessage("bad PKCS#7 padding after decryption") from exc
