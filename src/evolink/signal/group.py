"""Sender keys for groups, compatible with Baileys' ``lib/Signal/Group`` (wa-messaging.md §2).

One :class:`SenderKeyRecord` per :class:`~evolink.signal.SenderKeyName` (group, sending device).
Pure functions: records in, new records out; errors leave the input untouched.
"""

from __future__ import annotations

import os

from evolink.signal.keys import Rng

MAX_SENDER_KEY_STATES = 5  # Baileys SenderKeyRecord.MAX_STATES
MAX_SENDER_MESSAGE_KEYS = 2000  # Baileys SenderKeyState.MAX_MESSAGE_KEYS, oldest evicted first


class SenderKeyRecord:
    """Up to 5 sender-key states of one (group, sender), newest last. Immutable."""

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyRecord:
        raise NotImplementedError

    def is_empty(self) -> bool:
        raise NotImplementedError

    @property
    def key_ids(self) -> tuple[int, ...]:
        """Key ids of the states, oldest first."""
        raise NotImplementedError


def create_sender_key_distribution(
    record: SenderKeyRecord | None, rng: Rng = os.urandom
) -> tuple[SenderKeyRecord, bytes]:
    """Our own sender key: create a state if the record is empty, return it and its SKDM bytes.

    The SKDM carries the state's current iteration and chain key, so it covers the next message
    :func:`group_encrypt` produces. It goes in ``Message.senderKeyDistributionMessage
    .axolotlSenderKeyDistributionMessage`` inside a 1:1 pkmsg/msg.
    """
    raise NotImplementedError


def process_sender_key_distribution(record: SenderKeyRecord | None, skdm_bytes: bytes) -> SenderKeyRecord:
    """Add the state an SKDM describes to the sender's record (the oldest of 5 is evicted)."""
    raise NotImplementedError


def group_encrypt(record: SenderKeyRecord, plaintext: bytes) -> tuple[SenderKeyRecord, bytes]:
    """Encrypt with our newest state: ``skmsg`` bytes, signed by the state's signing key."""
    raise NotImplementedError


def group_decrypt(record: SenderKeyRecord | None, skmsg_bytes: bytes) -> tuple[SenderKeyRecord, bytes]:
    """Verify and decrypt an ``skmsg``; :class:`NoSenderKey` when the key id is unknown."""
    raise NotImplementedError
