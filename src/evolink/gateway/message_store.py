"""The engine's ``MessageStore`` (evolink.wa.store_port) on the gateway database.

Signal records and message bodies are sealed with the instance's ``CredsCipher``; the associated
data names instance, table and key, so a blob copied to another row does not open. ``save_incoming``
and ``record_outgoing`` write the message and its Signal state changes in one transaction; a known
message id makes ``save_incoming`` change nothing and answer False.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from evolink.store.db import Database
from evolink.store.messaging_models import (
    ConsumedPreKey,
    DeviceList,
    InboundMessage,
    OutboundMessage,
    SignalIdentity,
    SignalSenderKey,
    SignalSession,
)
from evolink.store.sealing import CredsCipher
from evolink.wa.store_port import OutgoingMessage, StateChanges, StoredMessage

IncomingHook = Callable[[AsyncSession, StoredMessage], Awaitable[None]]


class SqlMessageStore:
    def __init__(self, db: Database, cipher: CredsCipher, instance_id: str, *,
                 on_incoming: IncomingHook | None = None) -> None:
        self._db = db
        self._cipher = cipher
        self.instance_id = instance_id
        # Called inside save_incoming's transaction (the gateway writes Evolution's Message row there,
        # so the row, the engine's copy and the Signal state commit together).
        self._on_incoming = on_incoming

    # ------------------------------------------------------------------ sealing

    def _seal(self, data: bytes, *context: str) -> str:
        return self._cipher.seal(base64.b64encode(data).decode(), "|".join((self.instance_id, *context)))

    def _open(self, stored: str, *context: str) -> bytes:
        return base64.b64decode(self._cipher.open(stored, "|".join((self.instance_id, *context))))

    # ------------------------------------------------------------------ Signal state

    async def load_session(self, address: str) -> bytes | None:
        row = await self._get(SignalSession, address=address)
        return None if row is None else self._open(row.record, "session", address)

    async def load_identity(self, address: str) -> bytes | None:
        row = await self._get(SignalIdentity, address=address)
        return None if row is None else self._open(row.key, "identity", address)

    async def load_sender_key(self, group: str, address: str) -> bytes | None:
        row = await self._get(SignalSenderKey, group_jid=group, address=address)
        return None if row is None else self._open(row.record, "sender_key", group, address)

    async def is_pre_key_consumed(self, key_id: int) -> bool:
        return await self._get(ConsumedPreKey, key_id=key_id) is not None

    async def apply(self, changes: StateChanges) -> None:
        async with self._db.sessions.begin() as s:
            await self._apply(s, changes)

    async def _get(self, model: Any, **key: Any) -> Any:
        async with self._db.sessions() as s:
            return await s.get(model, {"instance_id": self.instance_id, **key})

    async def _apply(self, s: AsyncSession, changes: StateChanges) -> None:
        iid = self.instance_id
        for address, record in changes.sessions.items():
            if record is None:
                await s.execute(delete(SignalSession).where(SignalSession.instance_id == iid,
                                                            SignalSession.address == address))
            else:
                await s.merge(SignalSession(instance_id=iid, address=address,
                                            record=self._seal(record, "session", address)))
        for address, key in changes.identities.items():
            await s.merge(SignalIdentity(instance_id=iid, address=address, key=self._seal(key, "identity", address)))
        for (group, address), sk in changes.sender_keys.items():
            if sk is None:
                await s.execute(delete(SignalSenderKey).where(
                    SignalSenderKey.instance_id == iid, SignalSenderKey.group_jid == group,
                    SignalSenderKey.address == address))
            else:
                await s.merge(SignalSenderKey(instance_id=iid, group_jid=group, address=address,
                                              record=self._seal(sk, "sender_key", group, address)))
        for key_id in changes.consumed_pre_keys:
            await s.merge(ConsumedPreKey(instance_id=iid, key_id=key_id))

    # ------------------------------------------------------------------ device lists

    async def load_devices(self, user: str) -> tuple[list[str], float] | None:
        row = await self._get(DeviceList, user_jid=user)
        return None if row is None else (list(json.loads(row.devices)), row.fetched_at)

    async def save_devices(self, user: str, devices: list[str], fetched_at: float) -> None:
        async with self._db.sessions.begin() as s:
            await s.merge(DeviceList(instance_id=self.instance_id, user_jid=user, devices=json.dumps(devices),
                                     fetched_at=fetched_at))

    # ------------------------------------------------------------------ messages

    async def save_incoming(self, message: StoredMessage, changes: StateChanges) -> bool:
        try:
            async with self._db.sessions.begin() as s:
                if await s.get(InboundMessage, {"instance_id": self.instance_id, "message_id": message.id}):
                    return False
                s.add(InboundMessage(
                    instance_id=self.instance_id, message_id=message.id, chat=message.chat, sender=message.sender,
                    sender_alt=message.sender_alt, from_me=message.from_me, timestamp=message.timestamp,
                    push_name=message.push_name, message=self._seal(message.message, "inbound", message.id)))
                await s.flush()
                await self._apply(s, changes)
                if self._on_incoming is not None:
                    await self._on_incoming(s, message)
        except IntegrityError:  # a concurrent save of the same id won: nothing of ours was written
            return False
        return True

    async def has_incoming(self, message_id: str) -> bool:
        return await self._get(InboundMessage, message_id=message_id) is not None

    async def load_incoming(self, message_id: str) -> StoredMessage | None:
        row = await self._get(InboundMessage, message_id=message_id)
        if row is None:
            return None
        return StoredMessage(row.message_id, row.chat, row.sender, row.sender_alt, row.from_me, row.timestamp,
                             row.push_name, self._open(row.message, "inbound", row.message_id))

    async def list_incoming(self) -> list[str]:
        async with self._db.sessions() as s:
            q = select(InboundMessage.message_id).where(InboundMessage.instance_id == self.instance_id)
            return list((await s.execute(q)).scalars())

    async def record_outgoing(self, message: OutgoingMessage, changes: StateChanges) -> None:
        async with self._db.sessions.begin() as s:
            await s.merge(OutboundMessage(instance_id=self.instance_id, message_id=message.id, chat=message.chat,
                                          message=self._seal(message.message, "outbound", message.id),
                                          timestamp=message.timestamp))
            await self._apply(s, changes)

    async def load_outgoing(self, message_id: str) -> OutgoingMessage | None:
        row = await self._get(OutboundMessage, message_id=message_id)
        if row is None:
            return None
        return OutgoingMessage(row.message_id, row.chat, self._open(row.message, "outbound", row.message_id),
                               row.timestamp)
