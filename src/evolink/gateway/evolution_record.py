"""Evolution's message record (``prepareMessage`` in whatsapp.baileys.service.ts, 2.3.7).

One shape serves ``MESSAGES_UPSERT``, ``SEND_MESSAGE``, the send routes' responses and (with the DB
``id``) ``findMessages``: ``key``, ``pushName``, ``status``, ``message``, ``contextInfo``,
``messageType``, ``messageTimestamp``, ``instanceId``, ``source``.

Protobuf → JSON follows what Baileys' objects serialise to, with one documented delta: ``bytes``
fields (``messageSecret``, thumbnails) are base64 strings instead of ``{"0":…,"1":…}`` objects.
64-bit integers are plain numbers, enums their numbers.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message as PbMessage

from evolink.gateway.jid_rules import bare, is_group

YOU = "Você"  # Evolution's pushName for the account's own messages
_NOT_CONTENT = ("messageContextInfo", "senderKeyDistributionMessage")


class Status:
    """Evolution's message status strings (``MessageUpdate.status``)."""

    ERROR = "ERROR"
    PENDING = "PENDING"
    SERVER_ACK = "SERVER_ACK"
    DELIVERY_ACK = "DELIVERY_ACK"
    READ = "READ"
    PLAYED = "PLAYED"


def pb_to_json(msg: PbMessage) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        if field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        else:
            out[field.name] = _value(field, value)
    return out


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return pb_to_json(value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def source_of(message_id: str) -> str:
    """Baileys' ``getDevice``: the sending platform guessed from the message id."""
    if re.fullmatch(r"3A.{18}", message_id):
        return "ios"
    if re.fullmatch(r"3E.{20}", message_id):
        return "web"
    if re.fullmatch(r".{21}|.{32}", message_id):
        return "android"
    if re.match(r"3F|.{18}$", message_id):
        return "desktop"
    return "unknown"


def content(message: dict[str, Any]) -> tuple[dict[str, Any], str, dict[str, Any] | None]:
    """(message as Evolution shows it, messageType, contextInfo): extendedTextMessage is flattened
    into ``conversation`` and its ``contextInfo`` lifted out."""
    msg = dict(message)
    context: dict[str, Any] | None = None
    ext = msg.pop("extendedTextMessage", None)
    if isinstance(ext, dict):
        context = ext.get("contextInfo")
        msg = {"conversation": ext.get("text", ""), **msg}
    kinds = [k for k in msg if k not in _NOT_CONTENT]
    kind = kinds[0] if kinds else "unknown"
    if context is None and isinstance(msg.get(kind), dict):
        context = msg[kind].get("contextInfo")
    return msg, kind, context


def build(*, instance_id: str, key: dict[str, Any], push_name: str | None, status: str, message: PbMessage,
          timestamp: int, context_override: dict[str, Any] | None = None) -> dict[str, Any]:
    shown, kind, context = content(pb_to_json(message))
    if context_override is not None:
        context = context_override
    if not push_name:
        push_name = YOU if key.get("fromMe") else (key["participant"].split("@")[0] if key.get("participant")
                                                      else None)
    record: dict[str, Any] = {"key": key, "pushName": push_name, "status": status, "message": shown}
    if context is not None:
        record["contextInfo"] = context
    record.update(messageType=kind, messageTimestamp=int(timestamp), instanceId=instance_id,
                  source=source_of(str(key["id"])))
    return record


def incoming_key(*, message_id: str, chat: str, sender: str, sender_alt: str | None,
                 from_me: bool) -> dict[str, Any]:
    """Baileys' key for a received message (the DB keeps a LID ``remoteJid``; see ``event_view``)."""
    key: dict[str, Any] = {"remoteJid": chat, "fromMe": from_me, "id": message_id}
    if is_group(chat):
        key["participant"] = bare(sender)
        if sender_alt:
            key["participantAlt"] = bare(sender_alt)
        key["addressingMode"] = "lid" if sender.endswith("@lid") else "pn"
    else:
        alt = sender_alt if not from_me else None
        if alt and alt.split("@")[-1] != chat.split("@")[-1]:
            key["remoteJidAlt"] = bare(alt)
        key["addressingMode"] = "lid" if chat.endswith("@lid") else "pn"
    return key


def event_view(record: dict[str, Any]) -> dict[str, Any]:
    """What MESSAGES_UPSERT carries: no DB ``id``; a LID ``remoteJid`` with a known phone JID is
    replaced by the phone JID (Evolution 2.3.7)."""
    out = {k: v for k, v in record.items() if k != "id"}
    key = dict(out["key"])
    if str(key.get("remoteJid", "")).endswith("@lid") and key.get("remoteJidAlt"):
        key["remoteJid"] = key["remoteJidAlt"]
    out["key"] = key
    return out


def find_view(record: dict[str, Any], updates: list[str]) -> dict[str, Any]:
    """A ``findMessages`` record: exactly Evolution's fields, plus ``MessageUpdate`` statuses."""
    push = record.get("pushName")
    key = record["key"]
    if not push:
        ctx = record.get("contextInfo") or {}
        who = ctx.get("participant") or key.get("participant")
        push = YOU if key.get("fromMe") else (who.split("@")[0] if who else None)
    return {"id": record["id"], "key": key, "pushName": push, "messageType": record["messageType"],
            "message": record["message"], "messageTimestamp": record["messageTimestamp"],
            "instanceId": record["instanceId"], "source": record["source"],
            "contextInfo": record.get("contextInfo"), "MessageUpdate": [{"status": s} for s in updates]}
