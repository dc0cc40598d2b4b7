"""Messages through the gateway (issue 11): received messages and receipts in, Evolution events out.

One ``MessageHub`` per gateway (shared repo, publisher, observers); one ``InstanceMessages`` per
instance. Order of effects for a received message, which is what makes it durable:

1. the engine hands it to its store port (``SqlMessageStore.save_incoming``); the Evolution
   ``Message`` row is written **in the same transaction** (``row_hook``) with ``announced=False``;
2. the engine receipts it to the server only after that commit;
3. ``on_message`` (from the ``MessageEvent``) sends the read receipt when ``readMessages`` is on,
   puts ``MESSAGES_UPSERT`` in the durable webhook outbox, then marks the row announced;
4. a crash between 1 and 3 leaves ``announced=False``: ``on_open`` announces it on the next start
   (at-least-once, same message id).

Observers (``MessageHub.observers``) are called with ``("incoming" | "outgoing", record)`` for every
stored message after its event was queued (other modules, e.g. chats/contacts, hook in here).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from evolink.clock import Clock
from evolink.gateway import evolution_record as rec
from evolink.gateway.jid_rules import bare, is_group
from evolink.gateway.webhooks import EventPublisher, InstanceRef
from evolink.store import Store
from evolink.store.message_models import MessageRow
from evolink.store.message_repo import DuplicateMessage, MessageRepo
from evolink.store.models import Setting
from evolink.wa import plaintext
from evolink.wa.events import ConnectionState, MessageEvent, ReceiptEvent, ReceiptType
from evolink.wa.store_port import StoredMessage

log = logging.getLogger("evolink.gateway.messages")

MESSAGES_UPSERT = "messages.upsert"
MESSAGES_UPDATE = "messages.update"
SEND_MESSAGE = "send.message"

MessageObserver = Callable[[str, dict[str, Any]], Awaitable[None]]

# Receipt types → Evolution status (Baileys: sender → SERVER_ACK, none → DELIVERY_ACK, read/read-self → READ).
RECEIPT_STATUS: dict[ReceiptType, str] = {
    ReceiptType.SENDER: rec.Status.SERVER_ACK, ReceiptType.DELIVERED: rec.Status.DELIVERY_ACK,
    ReceiptType.READ: rec.Status.READ, ReceiptType.READ_SELF: rec.Status.READ,
    ReceiptType.PLAYED: rec.Status.PLAYED, ReceiptType.PLAYED_SELF: rec.Status.PLAYED,
}
# A status never goes back: a server ack that is handled after the delivery receipt is dropped.
_RANK = {rec.Status.SERVER_ACK: 1, rec.Status.DELIVERY_ACK: 2, rec.Status.READ: 3, rec.Status.PLAYED: 4}
_SKIPPED_KINDS = {"protocolMessage", "unknown", "senderKeyDistributionMessage"}
_DEDUP_SIZE = 4096


class RuntimeView(Protocol):
    """What the message pipeline needs from an instance runtime."""

    name: str
    instance_id: str

    @property
    def state(self) -> ConnectionState: ...

    @property
    def ref(self) -> InstanceRef: ...

    @property
    def engine(self) -> Any: ...


@dataclass
class MessageHub:
    repo: MessageRepo
    publisher: EventPublisher
    store: Store
    clock: Clock
    send_min_gap: float = 0.0  # seconds (EVOLINK_SEND_MIN_GAP_MS / 1000)
    observers: list[MessageObserver] = field(default_factory=list)

    async def notify(self, kind: str, record: dict[str, Any]) -> None:
        for observer in list(self.observers):
            try:
                await observer(kind, record)
            except Exception:  # an observer must never break the message path
                log.exception("message observer failed")


def incoming_record(instance_id: str, m: StoredMessage | MessageEvent) -> dict[str, Any] | None:
    """Evolution's record for a received message, or None when Evolution would not show it."""
    if isinstance(m, StoredMessage):
        message = plaintext.parse(m.message)
        alt = m.sender_alt
    else:
        message = m.message
        alt = m.sender_pn if m.sender.endswith("@lid") else m.sender_lid
    key = rec.incoming_key(message_id=m.id, chat=m.chat, sender=m.sender, sender_alt=alt, from_me=m.from_me)
    status = rec.Status.SERVER_ACK if m.from_me else rec.Status.DELIVERY_ACK
    record = rec.build(instance_id=instance_id, key=key, push_name=m.push_name, status=status, message=message,
                       timestamp=m.timestamp)
    if record["messageType"] in _SKIPPED_KINDS:
        return None
    return record


def is_broadcast(jid: str) -> bool:
    return jid.endswith("@broadcast")


def ignored(chat: str, setting: Setting | None) -> bool:
    """Evolution drops group chats with ``groupsIgnore`` and status/broadcast lists unless ``readStatus``."""
    if is_group(chat):
        return setting is not None and setting.groups_ignore
    if is_broadcast(chat):
        return setting is None or not setting.read_status
    return False


class InstanceMessages:
    def __init__(self, hub: MessageHub, runtime: RuntimeView) -> None:
        self.hub = hub
        self.rt = runtime
        self._seen_updates: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._best: OrderedDict[str, int] = OrderedDict()  # key id -> highest status rank seen
        self._fresh: OrderedDict[str, dict[str, Any]] = OrderedDict()  # records the row hook just wrote
        self._to_mark: set[str] = set()
        self._recent: OrderedDict[str, None] = OrderedDict()  # announced by this process
        self._marker: asyncio.Task[None] | None = None

    @property
    def repo(self) -> MessageRepo:
        return self.hub.repo

    # ------------------------------------------------------------------ settings

    async def settings(self) -> Setting | None:
        """Re-read per event, as Evolution re-reads its settings per event batch."""
        try:
            return await self.hub.store.get_setting(self.rt.instance_id)
        except Exception:
            log.exception("could not read settings", extra={"instance": self.rt.name})
            return None

    # ------------------------------------------------------------------ engine store hook

    async def row_hook(self, s: AsyncSession, stored: StoredMessage) -> None:
        """Inside the engine store's transaction: write Evolution's Message row (announced=False)."""
        try:
            record = incoming_record(self.rt.instance_id, stored)
        except plaintext.PlaintextError:
            return
        if record is None:
            return
        if is_group(stored.chat) or is_broadcast(stored.chat):
            setting = (await s.execute(select(Setting).where(Setting.instance_id == self.rt.instance_id))
                       ).scalar_one_or_none()
            if ignored(stored.chat, setting):
                return
        row = self.repo.build_row(self.rt.instance_id, record, announced=False)
        if await self.repo.insert_in(s, row):
            # on_message announces from this copy (no read back); a rollback means no MessageEvent
            self._fresh[stored.id] = {"id": row.id, **record}
            while len(self._fresh) > _DEDUP_SIZE:
                self._fresh.popitem(last=False)

    # ------------------------------------------------------------------ events from the engine

    async def on_event(self, ev: Any) -> None:
        if isinstance(ev, MessageEvent):
            await self.on_message(ev)
        elif isinstance(ev, ReceiptEvent):
            await self.on_receipt(ev)

    async def on_message(self, ev: MessageEvent) -> None:
        fresh = self._fresh.pop(ev.id, None)
        if fresh is not None:
            await self.announce_record(fresh)
            return
        row = await self.repo.get(self.rt.instance_id, ev.id)
        if row is None:  # an engine without the gateway's store (or a row the hook skipped)
            record = incoming_record(self.rt.instance_id, ev)
            if record is None:
                return
            if ignored(ev.chat, await self.settings()):
                return
            row = self.repo.build_row(self.rt.instance_id, record, announced=False)
            try:
                await self.repo.insert(row)
            except DuplicateMessage:
                row = await self.repo.get(self.rt.instance_id, ev.id)
                if row is None:
                    return
        if not row.announced and row.key_id not in self._recent:  # _recent: marks not yet written
            await self.announce(row)

    async def announce(self, row: MessageRow) -> None:
        await self.announce_record(self.repo.record(row))

    async def announce_record(self, record: dict[str, Any]) -> None:
        key = record["key"]
        setting = await self.settings()
        if setting is not None and setting.read_messages and not key.get("fromMe"):
            await self._auto_read(str(key["remoteJid"]), str(key["id"]), key.get("participant"))
        await self.hub.publisher.publish(self.rt.ref, MESSAGES_UPSERT, rec.event_view(record))
        self._recent[str(key["id"])] = None
        while len(self._recent) > _DEDUP_SIZE:
            self._recent.popitem(last=False)
        self._mark_announced(str(key["id"]))
        await self.hub.notify("incoming", record)

    def _mark_announced(self, key_id: str) -> None:
        """Marks are written in batches by one task (a crash before the write only re-announces:
        at-least-once with the same id)."""
        self._to_mark.add(key_id)
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._write_marks(), name=f"announced-{self.rt.name}")

    async def _write_marks(self) -> None:
        while self._to_mark:
            ids, self._to_mark = sorted(self._to_mark), set()
            try:
                await self.repo.mark_announced_many(self.rt.instance_id, ids)
            except Exception:
                log.exception("could not mark messages announced", extra={"instance": self.rt.name})

    async def flush(self) -> None:
        """Wait until every announcement mark is written (tests, shutdown)."""
        while self._marker is not None and not self._marker.done():
            await self._marker

    async def _auto_read(self, chat: str, key_id: str, participant: str | None) -> None:
        engine = self.rt.engine
        if engine is None or self.rt.state != ConnectionState.OPEN:
            return
        try:
            await engine.send_read_receipt(chat, [key_id], participant=participant)
        except Exception as exc:  # best effort, as Baileys' readMessages is
            log.info("auto read receipt not sent: %s", exc, extra={"instance": self.rt.name})

    async def on_receipt(self, ev: ReceiptEvent) -> None:
        status = RECEIPT_STATUS.get(ev.type)
        if status is None:
            return
        for key_id in ev.ids:
            await self.record_update(key_id, status, participant=bare(ev.sender) if is_group(ev.chat) else None)

    async def record_update(self, key_id: str, status: str, *, participant: str | None = None) -> None:
        """Store a status change and emit MESSAGES_UPDATE (1:1 chats only, as Evolution)."""
        dedup = (key_id, status)
        if dedup in self._seen_updates:
            return
        rank = _RANK.get(status, 0)
        if rank and rank < self._best.get(key_id, 0):
            return
        row = await self.repo.add_update(self.rt.instance_id, key_id, status, participant=participant)
        if row is None:
            return  # Evolution drops updates of messages it does not have
        self._seen_updates[dedup] = None
        while len(self._seen_updates) > _DEDUP_SIZE:
            self._seen_updates.popitem(last=False)
        if rank:
            self._best[key_id] = max(rank, self._best.get(key_id, 0))
            while len(self._best) > _DEDUP_SIZE:
                self._best.popitem(last=False)
        if is_group(row.remote_jid):
            return
        data: dict[str, Any] = {"keyId": key_id, "remoteJid": row.remote_jid, "fromMe": row.from_me}
        if participant:
            data["participant"] = participant
        data.update(status=status, instanceId=self.rt.instance_id, messageId=row.id)
        await self.hub.publisher.publish(self.rt.ref, MESSAGES_UPDATE, data)

    # ------------------------------------------------------------------ open

    async def announce_pending(self) -> int:
        """Announce rows a crash left unannounced (at-least-once into the outbox)."""
        rows = await self.repo.unannounced(self.rt.instance_id)
        for row in rows:
            await self.announce(row)
        return len(rows)
