"""Plaintext of an ``<enc>``: the serialized ``Message`` plus WhatsApp's random padding (enc v="2").

Pad: n random bytes of value n, n in 1..16 (Baileys ``writeRandomPadMax16``). Unpad: as whatsmeow,
which is stricter than Baileys: the pad must be 1..16 long, fit, and consist of equal bytes; an
empty plaintext is refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from evolink.wa.proto.message_pb2 import Message


class PlaintextError(ValueError):
    """The decrypted bytes are not a padded Message."""


def pad(data: bytes) -> bytes:
    n = (secrets.randbelow(256) & 0x0F) + 1
    return data + bytes([n]) * n


def unpad(data: bytes) -> bytes:
    if not data:
        raise PlaintextError("empty plaintext")
    n = data[-1]
    if n == 0 or n > 16 or n > len(data) or data[-n:] != bytes([n]) * n:
        raise PlaintextError("bad padding")
    return data[:-n]


def parse(data: bytes) -> Message:
    msg = Message()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise PlaintextError(f"not a Message protobuf: {exc}") from None
    return msg


def encode(msg: Message) -> bytes:
    return pad(msg.SerializeToString())


def text_message(text: str, *, quoted_id: str | None = None, quoted_participant: str | None = None,
                 quoted_message: Message | None = None, secret: bool = True) -> Message:
    """``conversation`` for a plain text; ``extendedTextMessage`` with ``contextInfo`` for a reply.
    ``messageSecret`` (32 random bytes) as Baileys adds to every message."""
    msg = Message()
    if quoted_id is None:
        msg.conversation = text
    else:
        ext = msg.extendedTextMessage
        ext.text = text
        ext.contextInfo.stanzaId = quoted_id
        if quoted_participant:
            ext.contextInfo.participant = quoted_participant
        if quoted_message is not None:
            ext.contextInfo.quotedMessage.CopyFrom(quoted_message)
    if secret:
        msg.messageContextInfo.messageSecret = secrets.token_bytes(32)
    return msg


def device_sent(msg: Message, destination: str) -> Message:
    """The copy for our own other devices: ``deviceSentMessage{destinationJid, message}`` with the
    original's ``messageContextInfo`` beside it."""
    out = Message()
    out.deviceSentMessage.destinationJid = destination
    inner = Message()
    inner.CopyFrom(msg)
    inner.ClearField("messageContextInfo")
    out.deviceSentMessage.message.CopyFrom(inner)
    if msg.HasField("messageContextInfo"):
        out.messageContextInfo.CopyFrom(msg.messageContextInfo)
    return out


def distribution_message(group: str, skdm: bytes) -> Message:
    msg = Message()
    msg.senderKeyDistributionMessage.groupId = group
    msg.senderKeyDistributionMessage.axolotlSenderKeyDistributionMessage = skdm
    return msg


@dataclass(frozen=True, slots=True)
class QuotedMessage:
    """What a reply quotes: the quoted message's id, its author (groups) and optionally its content."""

    id: str
    participant: str | None = None
    message: Message | None = None
