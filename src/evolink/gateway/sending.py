"""API sends (sendText, sendReaction): record first, then the wire, then the events.

For one send, in order:

1. refuse at once when the instance is not open: 400 ``["Error: Connection Closed"]`` (Evolution's
   answer when its socket is closed; nothing is stored, nothing is queued for later);
2. the recipient: ``createJid`` rules, a malformed one answered like a number not on WhatsApp
   (400 ``[{"jid","exists":false,"number"}]``, Evolution's existence gate);
3. ``delay``: ``composing`` for the chat, wait, ``paused`` (20 s cycles) — before the send queue, so
   it never holds up another send;
4. the message row is stored with its final id (``3EB0…``, ``send_state=pending``, ``status=PENDING``);
5. in the instance's send queue (``send_queue.SendQueue``, minimum gap) the engine sends it with that
   id and waits for the server's ack; then ``send_state=sent``, ``SEND_MESSAGE`` (the response
   record) and ``MESSAGES_UPDATE`` ``SERVER_ACK`` (1:1) are queued for the webhooks.

A crash between 4 and the ack leaves ``pending``: on the next open the row is sent again **once**
with the same id (peers and the server dedup by id), then it is ``sent`` or ``failed``/``ERROR``.
A peer with no devices (not on WhatsApp) deletes the row and answers the existence 400.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf.json_format import ParseDict, ParseError

from evolink.clock.base import iso_utc
from evolink.gateway import evolution_record as rec
from evolink.gateway.jid_rules import MalformedJid, check_jid, create_jid, is_group
from evolink.gateway.messages import MESSAGES_UPDATE, MESSAGES_UPSERT, SEND_MESSAGE, InstanceMessages
from evolink.gateway.send_queue import SendQueue
from evolink.store.message_models import MessageRow
from evolink.store.message_repo import DuplicateMessage
from evolink.wa import jids
from evolink.wa.chatstate import ChatState
from evolink.wa.contacts import on_whatsapp
from evolink.wa.events import CallEvent, ConnectionState
from evolink.wa.message_send import NotConnected, SendError
from evolink.wire.proto.e2e_pb2 import Message

log = logging.getLogger("evolink.gateway.sending")

CALL = "call"
CONNECTION_CLOSED = "Error: Connection Closed"
TYPING_CYCLE = 20.0  # seconds of one composing/paused cycle (Evolution splits longer delays)
EXISTS_TTL = 86_400.0  # seconds a positive "is on WhatsApp" answer is reused for sends


class SendRefused(Exception):
    """The API answer for a send that did not happen: Evolution's status and message list."""

    def __init__(self, status: int, *messages: Any) -> None:
        super().__init__(*messages)
        self.status = status
        self.messages = messages


@dataclass(frozen=True, slots=True)
class Quoted:
    id: str
    remote_jid: str | None = None
    from_me: bool = False
    participant: str | None = None
    message: dict[str, Any] | None = None


def not_on_whatsapp(jid: str, number: str) -> SendRefused:
    return SendRefused(400, {"jid": jid, "exists": False, "number": number})


def resolve(number: str) -> str:
    """``number`` → recipient JID (Evolution's createJid); malformed → the existence 400."""
    jid = create_jid(number.strip())
    try:
        return check_jid(jid)
    except MalformedJid:
        raise not_on_whatsapp(jid, number) from None


def _secret(msg: Message) -> Message:
    msg.messageContextInfo.messageSecret = secrets.token_bytes(32)
    return msg


async def _may_have_left(engine: Any, msg_id: str) -> bool:
    """Whether the engine recorded the message for the wire (``MessageStore.record_outgoing``)."""
    store = getattr(getattr(engine, "messaging", None), "store", None)
    if store is None:
        return False
    try:
        return await store.load_outgoing(msg_id) is not None
    except Exception:  # cannot tell: assume it may have left (a resend with the same id is harmless)
        return True


def json_to_message(data: dict[str, Any]) -> Message | None:
    """A stored/quoted message JSON (Evolution's flattened form) back to a protobuf."""
    data = {k: v for k, v in data.items() if k in Message.DESCRIPTOR.fields_by_name}
    try:
        return ParseDict(data, Message(), ignore_unknown_fields=True)
    except (ParseError, TypeError, ValueError):
        return None


class InstanceSender:
    def __init__(self, messages: InstanceMessages) -> None:
        self.m = messages
        self.queue = SendQueue(messages.hub.send_min_gap)
        self._inflight: set[str] = set()  # ids this process is sending now (never "crash leftovers")
        self._tasks: set[asyncio.Task[None]] = set()
        self._exists: OrderedDict[str, tuple[str, float]] = OrderedDict()  # jid -> (server's jid, when)

    @property
    def rt(self) -> Any:
        return self.m.rt

    def _engine(self) -> Any:
        engine = self.rt.engine
        if engine is None or self.rt.state != ConnectionState.OPEN:
            raise SendRefused(400, CONNECTION_CLOSED)
        return engine

    # ------------------------------------------------------------------ routes

    async def send_text(self, *, number: str, text: str, delay: int | None = None, quoted: Quoted | None = None,
                        mentioned: list[str] | None = None, mentions_everyone: bool = False) -> dict[str, Any]:
        if not text.strip():
            raise SendRefused(400, "Text is required")
        engine = self._engine()
        jid = await self._existing(engine, resolve(number), number)
        mentions: list[str] = []
        if is_group(jid):
            if mentions_everyone:
                mentions = await self._members(engine, jid)
            elif mentioned:
                mentions = [j for j in (create_jid(x) for x in mentioned) if not is_group(j)]
        if delay:
            await self._typing(engine, jid, delay)
        context: dict[str, Any] = {}
        quote = await self._quote(quoted, jid) if quoted is not None else None
        msg = Message()
        if quote is None and not mentions:
            msg.conversation = text
        else:
            ext = msg.extendedTextMessage
            ext.text = text
            if mentions:
                ext.contextInfo.mentionedJid.extend(mentions)
            if quote is not None:
                stanza_id, participant, quoted_msg, remote = quote
                ext.contextInfo.stanzaId = stanza_id
                ext.contextInfo.participant = participant
                if quoted_msg is not None:
                    ext.contextInfo.quotedMessage.CopyFrom(quoted_msg)
                if remote and remote != jid:
                    ext.contextInfo.remoteJid = remote
        if not is_group(jid) and quote is None:
            # The contextInfo Evolution's 1:1 sends carry (its record shows it; ours is the same shape).
            now = int(self.m.hub.clock.time())
            context = {"mentionedJid": [], "groupMentions": [],
                       "ephemeralSettingTimestamp": {"low": now - 172800, "high": 0, "unsigned": False},
                       "disappearingMode": {"initiator": 0}}
        return await self._send(engine, jid, number, _secret(msg), context or None)

    async def send_reaction(self, *, key: dict[str, Any], reaction: str) -> dict[str, Any]:
        engine = self._engine()
        remote = str(key["remoteJid"])
        jid = await self._existing(engine, resolve(remote), remote)
        msg = Message()
        r = msg.reactionMessage
        r.key.remoteJid = jid
        r.key.fromMe = bool(key["fromMe"])
        r.key.id = str(key["id"])
        if key.get("participant"):
            r.key.participant = str(key["participant"])
        r.text = reaction
        r.senderTimestampMs = int(self.m.hub.clock.time() * 1000)
        return await self._send(engine, jid, remote, msg, None)

    async def mark_read(self, keys: list[dict[str, Any]]) -> None:
        """Read receipts for received messages, one per chat (fromMe and @lid keys are dropped)."""
        engine = self._engine()
        by_chat: dict[str, list[str]] = {}
        for k in keys:
            chat = str(k["remoteJid"])
            if k.get("fromMe") or not (chat.endswith("@g.us") or chat.endswith("@s.whatsapp.net")):
                continue
            by_chat.setdefault(chat, []).append(str(k["id"]))
        for chat, ids in by_chat.items():
            try:
                await engine.send_read_receipt(chat, ids)
            except NotConnected:  # Evolution: 500 ["Read messages fail", …]; a closed socket is no 500 here
                raise SendRefused(400, "Read messages fail", CONNECTION_CLOSED) from None
            except Exception as exc:
                raise SendRefused(400, "Read messages fail", f"Error: {exc}") from None

    # ------------------------------------------------------------------ the send itself

    async def _send(self, engine: Any, jid: str, number: str, msg: Message,
                    context: dict[str, Any] | None, *, event: str = SEND_MESSAGE) -> dict[str, Any]:
        hub = self.m.hub
        own = getattr(self.rt, "wuid", None)
        msg_id = jids.message_id(own, hub.clock.time())
        key = {"remoteJid": jid, "fromMe": True, "id": msg_id}
        record = rec.build(instance_id=self.rt.instance_id, key=key, push_name=rec.YOU, status=rec.Status.PENDING,
                           message=msg, timestamp=int(hub.clock.time()), context_override=context)
        row = self.m.repo.build_row(self.rt.instance_id, record, send_state="pending")
        row.send_attempts = 1
        self._inflight.add(msg_id)
        try:
            try:
                await self.m.repo.insert(row)
            except DuplicateMessage:  # a 72-bit random id collided: refuse rather than overwrite
                raise SendRefused(400, "Error: message id collision, send again") from None
            acked = await self._wire(engine, row, jid, number, msg)
        finally:
            self._inflight.discard(msg_id)
        await hub.publisher.publish(self.rt.ref, event, record)
        await hub.notify("outgoing", record)
        if acked:
            await self.m.record_update(msg_id, rec.Status.SERVER_ACK)
        return record

    async def _wire(self, engine: Any, row: MessageRow, jid: str, number: str, msg: Message) -> bool:
        """Hand the message to the engine; True once the server acked it.

        When the engine fails, what happens to the row depends on whether the stanza may have left:
        the engine records a message (its store's outgoing copy) right before it goes on the wire.
        - not recorded: nothing left → the row is deleted and the API answers the error (not on
          WhatsApp, Connection Closed, …): nothing stored half-way;
        - the server answered with an error → ``ERROR``, 400;
        - recorded, then the connection was lost or no ack came: it may have been delivered → the
          row stays ``pending`` and the answer is 201 ``PENDING`` (Evolution answers as soon as its
          stanza is written); the next open sends it once more with the same id (dedup by id).
        """
        repo = self.m.repo
        iid = self.rt.instance_id
        try:
            async with self.queue.slot():
                await engine.send_message(jid, msg, message_id=row.key_id)
        except SendError as exc:
            text = str(exc)
            if text.startswith("server refused"):
                await repo.set_send_state(iid, row.key_id, "failed", status=rec.Status.ERROR)
                await self._error_update(row)
                raise SendRefused(400, f"Error: {exc}") from None
            if await _may_have_left(engine, row.key_id):
                log.warning("send not confirmed; kept for one resend on the next open: %s", exc,
                            extra={"instance": self.rt.name, "id": row.key_id})
                return False
            await repo.delete(iid, row.key_id)
            if isinstance(exc, NotConnected):
                raise SendRefused(400, CONNECTION_CLOSED) from None
            if "has no devices" in text:
                raise not_on_whatsapp(jid, number) from None
            raise SendRefused(400, f"Error: {exc}") from None
        await repo.set_send_state(iid, row.key_id, "sent")
        return True

    async def _existing(self, engine: Any, jid: str, number: str) -> str:
        """Evolution's existence gate before any typing or storing: a phone JID is looked up (usync
        contact query, positive answers cached for ``EXISTS_TTL``); the server's JID is used. LIDs and
        groups pass (Evolution assumes LIDs exist; a group is checked by the send itself). An engine
        without the lookup (tests' fakes) relies on the send's own device lookup."""
        if not jid.endswith("@s.whatsapp.net") or not hasattr(engine, "live_connection"):
            return jid
        now = self.m.hub.clock.time()
        cached = self._exists.get(jid)
        if cached is not None and now - cached[1] < EXISTS_TTL:
            return cached[0]
        try:
            (found,) = await on_whatsapp(engine, [jid.split("@", 1)[0]])
        except NotConnected:
            raise SendRefused(400, CONNECTION_CLOSED) from None
        except (SendError, ValueError) as exc:
            raise SendRefused(400, f"Error: {exc}") from None
        if not found.exists:
            raise not_on_whatsapp(jid, number)
        self._exists[jid] = (found.jid, now)
        while len(self._exists) > 10_000:
            self._exists.popitem(last=False)
        return found.jid

    async def _typing(self, engine: Any, jid: str, delay_ms: int) -> None:
        remaining = delay_ms / 1000
        while remaining > 0:
            step = min(remaining, TYPING_CYCLE)
            try:
                await engine.send_chat_state(jid, ChatState.COMPOSING)
                await asyncio.sleep(step)  # the requested delay itself
                await engine.send_chat_state(jid, ChatState.PAUSED)
            except NotConnected:
                raise SendRefused(400, CONNECTION_CLOSED) from None
            remaining -= step

    async def _members(self, engine: Any, group: str) -> list[str]:
        try:
            return list(await engine.group_members(group))
        except NotConnected:
            raise SendRefused(400, CONNECTION_CLOSED) from None
        except Exception as exc:
            raise SendRefused(400, f"Error: {exc}") from None

    async def _quote(self, q: Quoted, chat: str) -> tuple[str, str, Message | None, str | None] | None:
        """(stanzaId, participant, quoted message, remoteJid) or None when the quoted message is unknown
        (Evolution then sends without the quote, no error)."""
        data = q.message
        remote = q.remote_jid
        from_me, participant = q.from_me, q.participant
        if data is None:
            row = await self.m.repo.get(self.rt.instance_id, q.id)
            if row is None:
                return None
            stored = self.m.repo.record(row)
            data, remote, from_me = stored["message"], row.remote_jid, row.from_me
            participant = participant or row.participant
        quoted_msg = json_to_message(data) if isinstance(data, dict) else None
        own = getattr(self.rt, "wuid", None)
        author = own if from_me and own else (participant or remote or chat)
        return q.id, author, quoted_msg, remote

    # ------------------------------------------------------------------ calls

    async def on_call(self, ev: CallEvent) -> None:
        """``rejectCall`` rejects an offer; a non-blank ``msgCall`` is sent to the caller (announced as
        ``MESSAGES_UPSERT`` ``fromMe``, no ``SEND_MESSAGE``, as Evolution); ``CALL`` is emitted either way."""
        setting = await self.m.settings()
        engine = self.rt.engine
        if ev.status == "offer" and setting is not None and engine is not None and self.rt.state == ConnectionState.OPEN:
            if setting.reject_call:
                try:
                    await engine.reject_call(ev.call_id, ev.caller)
                except Exception as exc:
                    log.info("call not rejected: %s", exc, extra={"instance": self.rt.name})
            if setting.msg_call.strip():
                task = asyncio.create_task(self._answer_call(engine, ev.caller, setting.msg_call),
                                           name=f"msgcall-{self.rt.name}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        data: dict[str, Any] = {"chatId": ev.chat, "from": ev.caller, "id": ev.call_id,
                                "date": iso_utc(datetime.fromtimestamp(ev.timestamp, UTC)),
                                "offline": ev.offline, "status": ev.status}
        if ev.status == "offer":
            data.update(isVideo=ev.is_video, isGroup=ev.is_group)
            if ev.group_jid:
                data["groupJid"] = ev.group_jid
        await self.m.hub.publisher.publish(self.rt.ref, CALL, data)

    async def _answer_call(self, engine: Any, caller: str, text: str) -> None:
        msg = Message()
        msg.conversation = text
        try:
            await self._send(engine, check_jid(jids.non_ad(caller)), caller, _secret(msg), None, event=MESSAGES_UPSERT)
        except (SendRefused, MalformedJid) as exc:
            log.info("msgCall answer not sent: %s", exc, extra={"instance": self.rt.name})

    # ------------------------------------------------------------------ after a crash

    async def resend_pending(self) -> int:
        """Sends a crash left between record and ack: once more with the same id, then final."""
        engine = self.rt.engine
        repo = self.m.repo
        iid = self.rt.instance_id
        done = 0
        for row in await repo.pending_sends(iid):
            if row.key_id in self._inflight:
                continue
            if row.send_attempts >= 2:
                await repo.set_send_state(iid, row.key_id, "failed", status=rec.Status.ERROR)
                await self._error_update(row)
                continue
            record = repo.record(row)
            msg = self._rebuild(record)
            if msg is None or engine is None:
                await repo.set_send_state(iid, row.key_id, "failed", status=rec.Status.ERROR)
                await self._error_update(row)
                continue
            await repo.set_send_state(iid, row.key_id, "pending", bump_attempts=True)
            try:
                async with self.queue.slot():
                    await engine.send_message(row.remote_jid, msg, message_id=row.key_id)
            except NotConnected:
                log.info("resend deferred: not connected", extra={"instance": self.rt.name, "id": row.key_id})
                return done  # stays pending with its attempt counted: the next open makes it final
            except SendError as exc:
                log.warning("resend failed: %s", exc, extra={"instance": self.rt.name, "id": row.key_id})
                await repo.set_send_state(iid, row.key_id, "failed", status=rec.Status.ERROR)
                await self._error_update(row)
                continue
            await repo.set_send_state(iid, row.key_id, "sent")
            log.info("resent after restart", extra={"instance": self.rt.name, "id": row.key_id})
            await self.m.hub.publisher.publish(self.rt.ref, SEND_MESSAGE, {k: v for k, v in record.items()
                                                                         if k != "id"})
            await self.m.record_update(row.key_id, rec.Status.SERVER_ACK)
            done += 1
        return done

    async def _error_update(self, row: MessageRow) -> None:
        await self.m.hub.publisher.publish(self.rt.ref, MESSAGES_UPDATE, {
            "keyId": row.key_id, "remoteJid": row.remote_jid, "fromMe": True, "status": rec.Status.ERROR,
            "instanceId": row.instance_id, "messageId": row.id})

    @staticmethod
    def _rebuild(record: dict[str, Any]) -> Message | None:
        data = dict(record["message"])
        ctx = record.get("contextInfo")
        if "conversation" in data and ctx and any(k in ctx for k in ("stanzaId", "mentionedJid")) and \
                (ctx.get("stanzaId") or ctx.get("mentionedJid")):
            text = data.pop("conversation")
            keep = {k: v for k, v in ctx.items() if k in ("stanzaId", "participant", "quotedMessage",
                                                          "remoteJid", "mentionedJid")}
            data["extendedTextMessage"] = {"text": text, "contextInfo": keep}
        return json_to_message(data)

    async def after_open(self) -> None:
        """On every open: ``alwaysOnline`` presence, then crash leftovers (announce, resend once)."""
        try:
            setting = await self.m.settings()
            engine = self.rt.engine
            if setting is not None and setting.always_online and engine is not None:
                try:
                    await engine.send_presence("available")
                except Exception as exc:
                    log.info("alwaysOnline presence not sent: %s", exc, extra={"instance": self.rt.name})
            await self.m.announce_pending()
            await self.resend_pending()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("after-open message work failed", extra={"instance": self.rt.name})
