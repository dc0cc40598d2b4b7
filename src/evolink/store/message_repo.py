"""Evolution ``Message`` / ``MessageUpdate`` rows: insert, send bookkeeping, receipts, ``findMessages``.

Values in and out are plain dicts with Evolution's field names (``key``, ``pushName``, ``message``,
…); the gateway builds them (``gateway/evolution_record.py``). Content columns are sealed with the
instance's cipher, bound to (instance, "message", WhatsApp id).
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from evolink.store.db import Database
from evolink.store.message_models import MessageRow, MessageUpdateRow
from evolink.store.models import utcnow
from evolink.store.sealing import CredsCipher

_ALPHABET = string.ascii_lowercase + string.digits


def new_cuid() -> str:
    """A cuid-shaped id (``c`` + 24 base-36 characters) as Evolution's Prisma ids look."""
    return "c" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


class DuplicateMessage(Exception):
    """A message with this WhatsApp id is already stored for the instance."""


@dataclass(frozen=True, slots=True)
class MessageFilter:
    """``findMessages`` ``where`` (already validated)."""

    key_id: str | None = None
    from_me: bool | None = None  # only True filters (Evolution ignores false)
    remote_jid: str | None = None  # matches key.remoteJid or key.remoteJidAlt
    participant: str | None = None
    row_id: str | None = None
    message_type: str | None = None
    source: str | None = None
    ts_gte: int | None = None
    ts_lte: int | None = None


class MessageRepo:
    def __init__(self, db: Database, cipher: CredsCipher) -> None:
        self._db = db
        self._cipher = cipher

    # ------------------------------------------------------------------ sealing

    def _seal(self, value: Any, instance_id: str, key_id: str, part: str) -> str:
        return self._cipher.seal(json.dumps(value, separators=(",", ":")), f"{instance_id}|{part}|{key_id}")

    def _open(self, stored: str, instance_id: str, key_id: str, part: str) -> Any:
        return json.loads(self._cipher.open(stored, f"{instance_id}|{part}|{key_id}"))

    def build_row(self, instance_id: str, record: dict[str, Any], *, send_state: str | None = None,
                  announced: bool = True) -> MessageRow:
        key = record["key"]
        kid = str(key["id"])
        ctx = record.get("contextInfo")
        return MessageRow(
            id=new_cuid(), instance_id=instance_id, key_id=kid, remote_jid=str(key["remoteJid"]),
            remote_jid_alt=key.get("remoteJidAlt"), from_me=bool(key.get("fromMe")),
            participant=key.get("participant"), key=json.dumps(key, separators=(",", ":")),
            push_name=(record.get("pushName") or None), message_type=record["messageType"],
            message=self._seal(record["message"], instance_id, kid, "message"),
            context_info=None if ctx is None else self._seal(ctx, instance_id, kid, "context"),
            source=record["source"], message_timestamp=int(record["messageTimestamp"]),
            status=record["status"], send_state=send_state, send_attempts=0, announced=announced,
            created_at=utcnow())

    def record(self, row: MessageRow) -> dict[str, Any]:
        """The stored row as Evolution's message record (``findMessages`` fields, plus ``status``)."""
        return {
            "id": row.id, "key": json.loads(row.key), "pushName": row.push_name,
            "messageType": row.message_type,
            "message": self._open(row.message, row.instance_id, row.key_id, "message"),
            "messageTimestamp": row.message_timestamp, "instanceId": row.instance_id, "source": row.source,
            "contextInfo": (None if row.context_info is None
                            else self._open(row.context_info, row.instance_id, row.key_id, "context")),
            "status": row.status,
        }

    # ------------------------------------------------------------------ writes

    async def insert_in(self, s: AsyncSession, row: MessageRow) -> bool:
        """Insert inside the caller's transaction; False (nothing written) when the id is known."""
        known = await s.execute(select(MessageRow.id).where(MessageRow.instance_id == row.instance_id,
                                                            MessageRow.key_id == row.key_id))
        if known.first() is not None:
            return False
        s.add(row)
        await s.flush()
        return True

    async def insert(self, row: MessageRow) -> None:
        try:
            async with self._db.sessions.begin() as s:
                if not await self.insert_in(s, row):
                    raise DuplicateMessage(row.key_id)
        except IntegrityError:
            raise DuplicateMessage(row.key_id) from None

    async def set_send_state(self, instance_id: str, key_id: str, state: str, *, status: str | None = None,
                             timestamp: int | None = None, bump_attempts: bool = False) -> None:
        values: dict[str, Any] = {"send_state": state}
        if status is not None:
            values["status"] = status
        if timestamp is not None:
            values["message_timestamp"] = timestamp
        if bump_attempts:
            values["send_attempts"] = MessageRow.send_attempts + 1
        async with self._db.sessions.begin() as s:
            await s.execute(update(MessageRow).where(MessageRow.instance_id == instance_id,
                                                     MessageRow.key_id == key_id).values(**values))

    async def delete(self, instance_id: str, key_id: str) -> None:
        async with self._db.sessions.begin() as s:
            await s.execute(delete(MessageRow).where(MessageRow.instance_id == instance_id,
                                                     MessageRow.key_id == key_id))

    async def mark_announced_many(self, instance_id: str, key_ids: list[str]) -> None:
        async with self._db.sessions.begin() as s:
            await s.execute(update(MessageRow).where(MessageRow.instance_id == instance_id,
                                                     MessageRow.key_id.in_(key_ids)).values(announced=True))

    async def add_update(self, instance_id: str, key_id: str, status: str, *, participant: str | None = None,
                         ) -> MessageRow | None:
        """Record a receipt for a stored message; None (nothing written) when the message is unknown."""
        async with self._db.sessions.begin() as s:
            row = (await s.execute(select(MessageRow).where(MessageRow.instance_id == instance_id,
                                                            MessageRow.key_id == key_id))).scalar_one_or_none()
            if row is None:
                return None
            s.add(MessageUpdateRow(id=new_cuid(), message_id=row.id, instance_id=instance_id, key_id=key_id,
                                   remote_jid=row.remote_jid, from_me=row.from_me, participant=participant,
                                   status=status, created_at=utcnow()))
            return row

    # ------------------------------------------------------------------ reads

    async def get(self, instance_id: str, key_id: str) -> MessageRow | None:
        async with self._db.sessions() as s:
            q = select(MessageRow).where(MessageRow.instance_id == instance_id, MessageRow.key_id == key_id)
            return (await s.execute(q)).scalar_one_or_none()

    async def pending_sends(self, instance_id: str) -> list[MessageRow]:
        async with self._db.sessions() as s:
            q = (select(MessageRow).where(MessageRow.instance_id == instance_id, MessageRow.send_state == "pending")
                 .order_by(MessageRow.created_at))
            return list((await s.execute(q)).scalars())

    async def unannounced(self, instance_id: str) -> list[MessageRow]:
        async with self._db.sessions() as s:
            q = (select(MessageRow).where(MessageRow.instance_id == instance_id, MessageRow.announced.is_(False))
                 .order_by(MessageRow.message_timestamp, MessageRow.created_at))
            return list((await s.execute(q)).scalars())

    async def find(self, instance_id: str, f: MessageFilter, *, page: int, size: int,
                   ) -> tuple[int, list[tuple[MessageRow, list[str]]]]:
        conds: list[Any] = [MessageRow.instance_id == instance_id]
        if f.key_id is not None:
            conds.append(MessageRow.key_id == f.key_id)
        if f.from_me:
            conds.append(MessageRow.from_me.is_(True))
        if f.remote_jid is not None:
            conds.append(or_(MessageRow.remote_jid == f.remote_jid, MessageRow.remote_jid_alt == f.remote_jid))
        if f.participant is not None:
            conds.append(MessageRow.participant == f.participant)
        if f.row_id is not None:
            conds.append(MessageRow.id == f.row_id)
        if f.message_type is not None:
            conds.append(MessageRow.message_type == f.message_type)
        if f.source is not None:
            conds.append(MessageRow.source == f.source)
        if f.ts_gte is not None:
            conds.append(MessageRow.message_timestamp >= f.ts_gte)
        if f.ts_lte is not None:
            conds.append(MessageRow.message_timestamp <= f.ts_lte)
        async with self._db.sessions() as s:
            total = int((await s.execute(select(func.count()).select_from(MessageRow).where(*conds))).scalar_one())
            q = (select(MessageRow).where(*conds)
                 .order_by(MessageRow.message_timestamp.desc(), MessageRow.created_at.desc())
                 .offset((page - 1) * size).limit(size))
            rows = list((await s.execute(q)).scalars())
            updates: dict[str, list[str]] = {r.id: [] for r in rows}
            if rows:
                uq = (select(MessageUpdateRow.message_id, MessageUpdateRow.status)
                      .where(MessageUpdateRow.message_id.in_(list(updates)))
                      .order_by(MessageUpdateRow.created_at))
                for mid, status in (await s.execute(uq)).all():
                    updates[mid].append(status)
        return total, [(r, updates[r.id]) for r in rows]

