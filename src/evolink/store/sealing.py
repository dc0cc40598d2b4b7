"""Encryption at rest for engine creds (AES-256-GCM, key derived from EVOLINK_SECRET_KEY).

Sealed values look like ``enc:v1:<base64(nonce ‖ ciphertext)>``; the instance id is the associated
data, so a sealed blob copied onto another instance's row does not open. The gateway always has a
key (``EVOLINK_SECRET_KEY`` or the generated ``secret.key``, see ``creds_key``); ``CredsCipher(None)``
(plain JSON) is for tools and tests. A sealed value that does not open is a clear `SealError`, never
garbage.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "enc:v1:"
_INFO = b"evolink creds at rest v1"


class SealError(Exception):
    """Sealed creds cannot be opened (no key, wrong key, or tampered data)."""


class CredsCipher:
    def __init__(self, secret: str | None) -> None:
        self._aead: AESGCM | None = None
        if secret:
            key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret.encode())
            self._aead = AESGCM(key)

    @property
    def enabled(self) -> bool:
        return self._aead is not None

    def seal(self, plaintext: str, context: str) -> str:
        if self._aead is None:
            return plaintext
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, stored: str, context: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # written before a key was configured; re-sealed on the next save
        if self._aead is None:
            raise SealError("stored creds are encrypted: set EVOLINK_SECRET_KEY to the key they were written with")
        try:
            raw = base64.b64decode(stored[len(PREFIX):], validate=True)
            return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise SealError("stored creds cannot be decrypted: wrong EVOLINK_SECRET_KEY or corrupted data") from exc
