"""Binds the Signal port (``e2e.Cipher``) to an implementation.

``evolink.signal`` (the sans-I/O libsignal-compatible package) is built in parallel; until it is
merged, ``default_cipher()`` returns ``UnavailableCipher``, which refuses every operation with a
typed ``E2EError`` (so a message that arrives is answered with a retry receipt and a send fails
with ``SendError``: nothing crashes, nothing is stored half-done).
"""

from __future__ import annotations

from evolink.wa.e2e import (
    Bundle,
    Cipher,
    Decrypted,
    E2EError,
    Encrypted,
    GroupEncrypted,
    OwnKeys,
    PreKeyLookup,
)


class SignalUnavailable(E2EError):
    reason = "signal_unavailable"


class UnavailableCipher:
    def _refuse(self) -> SignalUnavailable:
        return SignalUnavailable("no Signal implementation is installed (evolink.signal)")

    def decrypt(self, own: OwnKeys, kind: str, record: bytes | None, data: bytes,
                pre_key: PreKeyLookup) -> Decrypted:
        raise self._refuse()

    def encrypt(self, own: OwnKeys, record: bytes, plaintext: bytes) -> Encrypted:
        raise self._refuse()

    def session_from_bundle(self, own: OwnKeys, bundle: Bundle) -> bytes:
        raise self._refuse()

    def group_encrypt(self, record: bytes | None, plaintext: bytes) -> GroupEncrypted:
        raise self._refuse()

    def group_decrypt(self, record: bytes | None, data: bytes) -> tuple[bytes, bytes]:
        raise self._refuse()

    def process_distribution(self, record: bytes | None, distribution: bytes) -> bytes:
        raise self._refuse()


def default_cipher() -> Cipher:
    return UnavailableCipher()
