"""Plaintext of an ``<enc>``: the serialized ``Message`` plus WhatsApp's random padding (enc v="2").

Padding is ``evolink.signal.padding`` (1–16 bytes like Baileys on the way out, strict like whatsmeow
on the way in); parsing goes through ``evolink.wire.proto.parse`` so bad bytes are a typed error.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from evolink.signal.errors import InvalidMessage
from evolink.signal.padding import pad as _pad
from evolink.signal.padding import unpad as _unpad
from evolink.wire.errors import ProtoError
from evolink.wire.proto import parse as _parse
from evolink.wire.proto.e2e_pb2 import Message


class PlaintextError(ValueError):
    """The decrypted bytes are not a padded Message."""


def pad(data: bytes) -> bytes:
    return _pad(data)


def unpad(data: bytes) -> bytes:
    try:
        return _unpad(data)
    except InvalidMessage as exc:
        raise PlaintextError(str(exc)) from None


def parse(data: bytes) -> Message:
    try:
        return _parse(Message, data)
    except ProtoError as exc:
        raise PlaintextError(str(exc)) from None


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
