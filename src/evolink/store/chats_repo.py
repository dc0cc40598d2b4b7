"""Data access for chats, contacts and groups (tables of ``chat_models``, migration 0008).

Each call is one short transaction. ``record_message`` upserts the chat and the contact a message
touches together, so a crash never leaves one without the other; it answers which of them were new
(the caller turns that into ``CHATS_UPSERT`` vs ``CHATS_UPDATE`` and ``CONTACTS_UPSERT`` vs
``CONTACTS_UPDATE``). A concurrent insert of the same (instance, JID) is retried once as an update.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from evolink.store.chat_models import ChatRow, ContactRow, GroupRow
from evolink.store.db import Database
from evolink.store.models import new_id, utcnow
from evolink.store.sealing import CredsCipher, SealError


@dataclass(frozen=True, slots=True)
class ChatTouch:
    """What one message does to its chat."""

    remote_jid: str
    timestamp: int
    unread_increment: int  # 1 for an incoming message, else 0
    last_message: dict[str, Any] | None = None
    name: str | None = None  # a new name for the chat (push name of a 1:1 peer, group subject), if any


@dataclass(frozen=True, slots=True)
class ContactTouch:
    remote_jid: str
    push_name: str | None  # None keeps the stored name


@dataclass(frozen=True, slots=True)
class Touched:
    chat_new: bool
    contact_new: bool | None  # None: no contact touched


@dataclass(frozen=True, slots=True)
class ChatView:
    id: str
    remote_jid: str
    name: str | None
    unread_messages: int
    last_message_at: int | None
    last_message: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    contact: ContactRow | None


class ChatStore:
    def __init__(self, db: Database, cipher: CredsCipher | None = None,
                 now: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.cipher = cipher or CredsCipher(None)
        self._now = now

    # --- sealing of the last message (it carries the text) -------------------------------------

    def _seal(self, instance_id: str, jid: str, record: dict[str, Any]) -> str:
        return self.cipher.seal(json.dumps(record, separators=(",", ":")), f"{instance_id}|chat|{jid}")

    def _open(self, instance_id: str, jid: str, stored: str | None) -> dict[str, Any] | None:
        if stored is None:
            return None
        try:
            value = json.loads(self.cipher.open(stored, f"{instance_id}|chat|{jid}"))
        except (SealError, ValueError):
            return None  # unreadable with this key: shown as no last message, never a 500
        return value if isinstance(value, dict) else None

    # --- writes ----------------------------------------------------------------------------------

    async def record_message(self, instance_id: str, chat: ChatTouch, contact: ContactTouch | None) -> Touched:
        for attempt in (1, 2):
            try:
                async with self.db.sessions.begin() as s:
                    chat_new = await self._touch_chat(s, instance_id, chat)
                    contact_new = None if contact is None else await self._touch_contact(s, instance_id, contact)
                return Touched(chat_new, contact_new)
            except IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _touch_chat(self, s: AsyncSession, iid: str, t: ChatTouch) -> bool:
        now = self._now()
        row = (await s.execute(select(ChatRow).where(ChatRow.instance_id == iid,
                                                     ChatRow.remote_jid == t.remote_jid))).scalar_one_or_none()
        sealed = self._seal(iid, t.remote_jid, t.last_message) if t.last_message is not None else None
        if row is None:
            s.add(ChatRow(id=new_id(), instance_id=iid, remote_jid=t.remote_jid, name=_cut(t.name, 100),
                          unread_messages=t.unread_increment, last_message_at=t.timestamp, last_message=sealed,
                          created_at=now, updated_at=now))
            await s.flush()
            return True
        row.unread_messages += t.unread_increment
        if t.name:
            row.name = _cut(t.name, 100)
        if sealed is not None and (row.last_message_at is None or t.timestamp >= row.last_message_at):
            row.last_message_at, row.last_message = t.timestamp, sealed
        row.updated_at = now
        return False

    async def _touch_contact(self, s: AsyncSession, iid: str, t: ContactTouch) -> bool:
        now = self._now()
        row = (await s.execute(select(ContactRow).where(ContactRow.instance_id == iid,
                                                        ContactRow.remote_jid == t.remote_jid))).scalar_one_or_none()
        if row is None:
            s.add(ContactRow(id=new_id(), instance_id=iid, remote_jid=t.remote_jid, push_name=_cut(t.push_name, 100),
                             created_at=now, updated_at=now))
            await s.flush()
            return True
        if t.push_name:
            row.push_name = _cut(t.push_name, 100)
        row.updated_at = now
        return False

    async def mark_chat_read(self, instance_id: str, remote_jid: str) -> bool:
        async with self.db.sessions.begin() as s:
            row = (await s.execute(select(ChatRow).where(ChatRow.instance_id == instance_id,
                                                         ChatRow.remote_jid == remote_jid))).scalar_one_or_none()
            if row is None:
                return False
            row.unread_messages = 0
            return True

    async def save_groups(self, instance_id: str, groups: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
        """Upsert (jid, subject, metadata) rows; answers the JIDs that were not stored before."""
        now = self._now()
        new: list[str] = []
        async with self.db.sessions.begin() as s:
            for jid, subject, meta in groups:
                row = await s.get(GroupRow, {"instance_id": instance_id, "group_jid": jid})
                text = json.dumps(meta, separators=(",", ":"))
                if row is None:
                    s.add(GroupRow(instance_id=instance_id, group_jid=jid, subject=_cut(subject, 100) or "",
                                   metadata_json=text, updated_at=now))
                    new.append(jid)
                else:
                    row.subject, row.metadata_json, row.updated_at = _cut(subject, 100) or "", text, now
        return new

    # --- reads -----------------------------------------------------------------------------------

    async def find_chats(self, instance_id: str, *, remote_jid: str | None = None, ts_gte: int | None = None,
                         ts_lte: int | None = None, take: int | None = None, skip: int | None = None
                         ) -> list[ChatView]:
        q = (select(ChatRow, ContactRow)
             .outerjoin(ContactRow, (ContactRow.instance_id == ChatRow.instance_id)
                        & (ContactRow.remote_jid == ChatRow.remote_jid))
             .where(ChatRow.instance_id == instance_id))
        if remote_jid is not None:
            q = q.where(ChatRow.remote_jid == remote_jid)
        if ts_gte is not None:
            q = q.where(ChatRow.last_message_at >= ts_gte)
        if ts_lte is not None:
            q = q.where(ChatRow.last_message_at <= ts_lte)
        q = q.order_by(ChatRow.updated_at.desc(), ChatRow.id)
        if skip:
            q = q.offset(skip)
        if take is not None:
            q = q.limit(take)
        async with self.db.sessions() as s:
            rows = (await s.execute(q)).all()
        return [ChatView(c.id, c.remote_jid, c.name, c.unread_messages, c.last_message_at,
                         self._open(instance_id, c.remote_jid, c.last_message), c.created_at, c.updated_at, k)
                for c, k in rows]

    async def find_contacts(self, instance_id: str, *, remote_jid: str | None = None, contact_id: str | None = None,
                            push_name: str | None = None, take: int | None = None, skip: int | None = None
                            ) -> list[ContactRow]:
        q = select(ContactRow).where(ContactRow.instance_id == instance_id)
        if remote_jid is not None:
            q = q.where(ContactRow.remote_jid == remote_jid)
        if contact_id is not None:
            q = q.where(ContactRow.id == contact_id)
        if push_name is not None:
            q = q.where(ContactRow.push_name == push_name)
        q = q.order_by(ContactRow.created_at, ContactRow.id)
        if skip:
            q = q.offset(skip)
        if take is not None:
            q = q.limit(take)
        async with self.db.sessions() as s:
            return list((await s.execute(q)).scalars().all())

    async def contact_names(self, instance_id: str, jids: list[str]) -> dict[str, str]:
        if not jids:
            return {}
        async with self.db.sessions() as s:
            rows = (await s.execute(select(ContactRow.remote_jid, ContactRow.push_name).where(
                ContactRow.instance_id == instance_id, ContactRow.remote_jid.in_(jids)))).all()
        return {j: n for j, n in rows if n}

    async def list_groups(self, instance_id: str) -> list[dict[str, Any]]:
        async with self.db.sessions() as s:
            rows = (await s.execute(select(GroupRow.metadata_json).where(GroupRow.instance_id == instance_id)
                                    .order_by(GroupRow.group_jid))).scalars().all()
        return [json.loads(r) for r in rows]

    async def get_group(self, instance_id: str, jid: str) -> dict[str, Any] | None:
        async with self.db.sessions() as s:
            row = await s.get(GroupRow, {"instance_id": instance_id, "group_jid": jid})
        return None if row is None else dict(json.loads(row.metadata_json))


def _cut(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]
