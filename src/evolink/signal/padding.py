"""WhatsApp's plaintext padding for ``<enc v="2">`` (wa-messaging.md §3.2–3.3).

The plaintext under every pkmsg/msg/skmsg is a serialized ``Message`` followed by ``n`` bytes each
equal to ``n``. We pad like Baileys' ``writeRandomPadMax16`` (``n = (random & 0x0F) + 1``, 1–16) and
unpad like whatsmeow's ``unpadMessage`` (stricter than Baileys, which only checks ``n <= len``):
the pad length must be 1…len and every pad byte must equal it. whatsmeow pads 1–15, which this
accepts too.
"""

from __future__ import annotations

import os

from evolink.signal.errors import InvalidMessage
from evolink.signal.keys import Rng


def pad(plaintext: bytes, rng: Rng = os.urandom) -> bytes:
    """``plaintext ‖ n×n`` with a random ``n`` in 1…16."""
    n = (rng(1)[0] & 0x0F) + 1
    return bytes(plaintext) + bytes([n]) * n


def unpad(data: bytes) -> bytes:
    """Remove the pad; a missing or inconsistent pad is :class:`InvalidMessage` (nothing is guessed)."""
    data = bytes(data)
    if not data:
        raise InvalidMessage("padded plaintext is empty")
    n = data[-1]
    if n == 0 or n > len(data):
        raise InvalidMessage(f"bad plaintext padding length {n} for {len(data)} bytes")
    if data[-n:] != bytes([n]) * n:
        raise InvalidMessage("plaintext padding bytes are inconsistent")
    return data[:-n]
