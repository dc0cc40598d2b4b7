"""Chats and contacts fed by messages; ``findChats``/``findContacts``/``whatsappNumbers`` answers.

``touches(record)`` is pure: an Evolution message record (the ``data`` of ``MESSAGES_UPSERT`` or
``SEND_MESSAGE``) → what it does to its chat and contact. ``ChatBook.observe`` stores both in one
transaction and then publishes, as Evolution 2.3.7 does for the message path:

- contact new → ``CONTACTS_UPSERT`` with one object ``{remoteJid, pushName, profilePicUrl, instanceId}``
  (``pushName`` ``""`` for our own messages), known → ``CONTACTS_UPDATE`` with the same object;
- chat new → ``CHATS_UPSERT`` ``[{remoteJid, instanceId, name, unreadMessages}]``, known →
  ``CHATS_UPDATE`` ``[{remoteJid, instanceId}]`` (Baileys' ``chats.upsert``/``chats.update`` shapes).

Deltas (docs/gateway.md): a group's contact row is never renamed after whoever wrote last (Evolution
stores the sender's push name on the group's contact); an API send also creates its chat and contact
(Evolution creates none for a brand-new 1:1 chat); ``status@broadcast`` and newsletters touch nothing.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from evolink.clock.base import iso_utc
from evolink.gateway import names
from evolink.gateway.webhooks import EventPublisher, InstanceRef
from evolink.store.chat_models import ContactRow
from evolink.store.chats_repo import ChatStore, ChatTouch, ChatView, ContactTouch

log = logging.getLogger("evolink.gateway.chats")

_IGNORED_SUFFIXES = ("@broadcast", "@newsletter")


def touches(record: dict[str, Any]) -> tuple[ChatTouch, ContactTouch] | None:
    """What one message record does to its chat and contact (None: nothing)."""
    key = record.get("key")
    if not isinstance(key, dict):
        return None
    remote = key.get("remoteJid")
    if not isinstance(remote, str) or "@" not in remote or remote.endswith(_IGNORED_SUFFIXES):
        return None
    from_me = key.get("fromMe") is True
    is_group = remote.endswith("@g.us")
    ts = record.get("messageTimestamp")
    timestamp = ts if isinstance(ts, int) and not isinstance(ts, bool) and 0 <= ts < 2**31 else 0
    push = record.get("pushName") if isinstance(record.get("pushName"), str) else None
    peer_name = push if not from_me and not is_group and push else None
    chat = ChatTouch(remote, timestamp, 0 if from_me else 1, last_message=record, name=peer_name)
    contact = ContactTouch(remote, peer_name if peer_name else ("" if from_me or is_group else None))
    return chat, contact


class ChatBook:
    """Chat/contact bookkeeping of every instance, and the events it publishes."""

    def __init__(self, chats: ChatStore, publisher: EventPublisher) -> None:
        self.chats = chats
        self.publisher = publisher

    async def observe(self, ref: InstanceRef, record: dict[str, Any]) -> None:
        """Record the message's chat and contact (one transaction), then publish their events."""
        t = touches(record)
        if t is None:
            return
        chat, contact = t
        if chat.remote_jid.endswith("@g.us") and chat.name is None:
            group = await self.chats.get_group(ref.instance_id, chat.remote_jid)
            if group is not None and isinstance(group.get("subject"), str):
                chat = replace(chat, name=group["subject"])  # the chat is named after its group
        touched = await self.chats.record_message(ref.instance_id, chat, contact)
        contact_body = {"remoteJid": contact.remote_jid, "pushName": contact.push_name or "",
                        "profilePicUrl": None, "instanceId": ref.instance_id}
        if touched.contact_new:
            await self.publisher.publish(ref, names.CONTACTS_UPSERT, contact_body)
        else:
            await self.publisher.publish(ref, names.CONTACTS_UPDATE, contact_body)
        if touched.chat_new:
            await self.publisher.publish(ref, names.CHATS_UPSERT, [{
                "remoteJid": chat.remote_jid, "instanceId": ref.instance_id, "name": chat.name,
                "unreadMessages": chat.unread_increment}])
        else:
            await self.publisher.publish(ref, names.CHATS_UPDATE, [{"remoteJid": chat.remote_jid,
                                                                   "instanceId": ref.instance_id}])

    async def observe_update(self, ref: InstanceRef, update: dict[str, Any]) -> None:
        """After a ``MESSAGES_UPDATE``: a stored chat's unread count is reset and ``CHATS_UPSERT``
        ``[{remoteJid, instanceId, unreadMessages: 0}]`` follows, as Evolution 2.3.7 does (also for
        a delivery receipt of our own message)."""
        remote = update.get("remoteJid")
        if not isinstance(remote, str) or "@" not in remote:
            return
        if await self.chats.mark_chat_read(ref.instance_id, remote):
            await self.publisher.publish(ref, names.CHATS_UPSERT, [{"remoteJid": remote, "instanceId": ref.instance_id,
                                                                   "unreadMessages": 0}])

# ------------------------------------------------------------------------------ response shapes


def _epoch_iso(seconds: int) -> str:
    return iso_utc(datetime.fromtimestamp(seconds, tz=UTC))


_MEDIA_KEEP = {"imageMessage": ("caption",), "videoMessage": ("caption",), "audioMessage": ("seconds",),
               "stickerMessage": (), "documentMessage": ("caption", "name")}


def clean_last_message(record: dict[str, Any]) -> dict[str, Any]:
    """Evolution's ``cleanMessageData``: no ``base64``, media reduced to caption/seconds/name."""
    out = dict(record)
    message = out.get("message")
    if isinstance(message, dict):
        message = dict(message)
        message.pop("base64", None)
        for kind, keep in _MEDIA_KEEP.items():
            media = message.get(kind)
            if isinstance(media, dict):
                message[kind] = {k: media[k] for k in keep if k in media}
        out["message"] = message
    return out


def last_message_json(record: dict[str, Any], instance_id: str) -> dict[str, Any]:
    key = record.get("key") if isinstance(record.get("key"), dict) else {}
    assert isinstance(key, dict)
    return clean_last_message({
        "id": record.get("id"), "key": key,
        "pushName": "Você" if key.get("fromMe") is True else record.get("pushName"),
        "participant": key.get("participant"), "messageType": record.get("messageType"),
        "message": record.get("message"), "contextInfo": record.get("contextInfo"),
        "source": record.get("source"), "messageTimestamp": record.get("messageTimestamp"),
        "instanceId": instance_id, "sessionId": None, "status": record.get("status"),
    })


def chat_json(view: ChatView, instance_id: str, now: datetime) -> dict[str, Any]:
    """One ``findChats`` element (Evolution's field names and order)."""
    contact = view.contact
    if view.remote_jid.endswith("@g.us"):
        push = view.name or (contact.push_name if contact is not None else None)
    else:
        push = view.name
    updated = _epoch_iso(view.last_message_at) if view.last_message_at else iso_utc(view.updated_at)
    expires = view.created_at + timedelta(hours=24)
    out: dict[str, Any] = {
        "id": contact.id if contact is not None else None, "remoteJid": view.remote_jid, "pushName": push,
        "profilePicUrl": contact.profile_pic_url if contact is not None else None, "updatedAt": updated,
        "windowStart": iso_utc(view.created_at), "windowExpires": iso_utc(expires), "windowActive": expires > now,
    }
    if view.last_message is not None:
        out["lastMessage"] = last_message_json(view.last_message, instance_id)
    out["unreadCount"] = view.unread_messages
    out["isSaved"] = contact is not None
    return out


def contact_json(row: ContactRow) -> dict[str, Any]:
    """One ``findContacts`` element: the Contact row plus ``isGroup``, ``isSaved`` and ``type``."""
    is_group = row.remote_jid.endswith("@g.us")
    is_saved = bool(row.push_name) or bool(row.profile_pic_url)
    return {"id": row.id, "remoteJid": row.remote_jid, "pushName": row.push_name,
            "profilePicUrl": row.profile_pic_url, "createdAt": iso_utc(row.created_at),
            "updatedAt": iso_utc(row.updated_at), "instanceId": row.instance_id, "isGroup": is_group,
            "isSaved": is_saved, "type": "group" if is_group else "contact" if is_saved else "group_member"}
