"""One error family for everything the Signal layer refuses.

Every function of :mod:`evolink.signal` is pure: it takes records in and returns new records out, so
a raised error always leaves the caller's input record exactly as it was. Callers catch
:class:`SignalError` (send a retry receipt, keep the session) and may branch on the subclass.
"""

from __future__ import annotations


class SignalError(Exception):
    """Base of every error raised by :mod:`evolink.signal` on bad, replayed or unexpected input."""


class InvalidMessage(SignalError):
    """Malformed ciphertext: wrong version byte, bad protobuf, bad key length, bad padding, bad CBC."""


class InvalidMac(InvalidMessage):
    """The 8-byte MAC of a SignalMessage did not verify with any session of the record."""


class InvalidKey(SignalError):
    """Key material of the wrong length or type (e.g. a bundle key that is not a Curve25519 key)."""


class InvalidAddress(SignalError, ValueError):
    """A JID or ``name.device`` string that does not map to a Signal protocol address."""


class InvalidRecord(SignalError):
    """A stored record could not be parsed (unknown format version, truncated, inconsistent)."""


class DuplicateMessage(SignalError):
    """The message key for this counter/iteration was already used: a replay or a redelivery."""


class NoSession(SignalError):
    """No session (or no open session to encrypt with) exists in the record."""


class InvalidKeyId(SignalError):
    """A pkmsg names a one-time pre-key or signed pre-key that we do not have (any more).

    ``key_id`` is the id that was asked for; ``signed`` tells which kind. A consumed one-time
    pre-key is never recreated or reused: the sender has to fetch a new bundle.
    """

    def __init__(self, message: str, *, key_id: int, signed: bool) -> None:
        super().__init__(message)
        self.key_id = key_id
        self.signed = signed


class UntrustedIdentity(SignalError):
    """The peer's identity key differs from the one the caller said it expects.

    evolink's own policy, like WhatsApp's clients, is trust on first use with changes accepted and
    reported (``DecryptResult.identity_changed``); this error is raised only when the caller passes
    ``expected_identity=`` and the key differs.
    """

    def __init__(self, message: str, *, identity_key: bytes) -> None:
        super().__init__(message)
        self.identity_key = identity_key


class InvalidSignature(SignalError):
    """A signature did not verify (signed pre-key in a bundle, SenderKeyMessage)."""


class NoSenderKey(SignalError):
    """No sender-key state for this (group, sender) and key id: the SKDM has not been processed."""


class TooManySkipped(SignalError):
    """The message is more than 2000 keys ahead of its chain (libsignal's limit)."""
