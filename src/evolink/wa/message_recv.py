"""Receiving ``<message>``: decrypt every ``<enc>``, store, emit, then receipt (wa-messaging §6).

Order of effects for one stanza, which is what makes a crash lose nothing:

1. Already in the store (by id)? Then it was stored before a crash or a lost receipt: receipt again.
2. Decrypt the ``<enc>`` children in document order under the messaging lock (pkmsg/msg with the
   sender device's session, skmsg with the (group, sender) sender key), unpad, parse, unwrap
   ``deviceSentMessage``, process a ``senderKeyDistributionMessage``. Nothing is written yet.
3. ``store.save_incoming(message, state changes)``: one transaction for the message and the new
   Signal state (sessions, identities, sender keys, the consumed one-time pre-key).
4. Emit ``MessageEvent``; send the delivery receipt (which is also the server's ack).

A decryption failure stores nothing (the old session stays as it was: the Signal functions are
pure), emits ``UndecryptableEvent`` and sends a retry receipt (§6.4), at most
``MAX_RETRY_RECEIPTS`` per message id; past that the message is acked with error 500.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evolink.wa import jids, plaintext, prekeys
from evolink.wa.ack import NACK_INVALID_PROTOBUF, NACK_PARSING_ERROR, NACK_UNHANDLED_ERROR, ack_for
from evolink.wa.connection import Connection
from evolink.wa.e2e import E2EError
from evolink.wa.events import MessageEvent, UndecryptableEvent
from evolink.wa.messaging import MAX_RETRY_RECEIPTS, Messaging
from evolink.wa.store_port import StateChanges, StoredMessage
from evolink.wire.binary import Node
from evolink.wire.crypto import KeyPair
from evolink.wire.errors import DecodeError
from evolink.wire.proto.e2e_pb2 import Message

if TYPE_CHECKING:
    from evolink.wa.creds import Creds
    from evolink.wa.engine import Engine

log = logging.getLogger("evolink.wa.message_recv")


class StanzaError(ValueError):
    """The stanza lacks what we need to process it (acked with 487)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    chat: str  # non-AD user JID or group JID
    sender: str  # device JID that wrote the message
    sender_alt: str | None  # the sender in the other namespace (device copied), when known
    from_me: bool
    timestamp: int
    push_name: str | None
    is_group: bool
    offline: bool


def _user_alt(node: Node, names: tuple[str, ...]) -> str | None:
    for name in names:
        value = node.attrs.get(name)
        if value and "@" in value:
            return value
    return None


def envelope(node: Node, creds: Creds) -> Envelope:
    """Who wrote it, in which chat (Baileys ``decodeMessageNode``, whatsmeow ``parseMessageInfo``)."""
    a = node.attrs
    msg_id, sender_from, t = a.get("id"), a.get("from"), a.get("t", "0")
    if not msg_id or not sender_from:
        raise StanzaError("message without id or from")
    try:
        frm = jids.parse(sender_from)
    except DecodeError as exc:
        raise StanzaError(str(exc)) from None
    own_users = {jids.non_ad(j) for j in (creds.me_jid, creds.me_lid) if j}
    if jids.is_group(sender_from):
        participant = a.get("participant")
        if not participant or "@" not in participant:
            raise StanzaError("group message without participant")
        sender, chat, is_group = participant, sender_from, True
        alt = _user_alt(node, ("participant_pn",) if jids.is_lid(participant) else ("participant_lid",))
    else:
        sender, is_group = sender_from, False
        alt = _user_alt(node, ("sender_pn", "participant_pn", "peer_recipient_pn") if frm.server == jids.LID_SERVER
                        else ("sender_lid", "participant_lid", "peer_recipient_lid"))
        chat = f"{frm.user}@{frm.server}"
    try:
        from_me = jids.non_ad(sender) in own_users
    except DecodeError as exc:
        raise StanzaError(str(exc)) from None
    if not is_group and from_me:
        recipient = a.get("recipient")
        if recipient and "@" in recipient:
            chat = jids.non_ad(recipient)
        alt = None  # peer_recipient_* name the chat's alternate, not the sender's
    elif a.get("recipient") and not is_group:
        raise StanzaError("recipient present on a message not from us")
    if alt is not None:
        try:
            alt = jids.device_jid(alt, jids.parse(sender).device)  # copy the device, as whatsmeow does
        except DecodeError:
            alt = None
    return Envelope(msg_id, chat, sender, alt, from_me, int(t) if t.isdigit() else 0,
                    a.get("notify") or None, is_group, bool(a.get("offline")))


def receipt_for(node: Node, env: Envelope) -> Node:
    """The delivery receipt (it replaces the ack): ``type="sender"`` for our own devices' messages."""
    a = node.attrs
    out = {"id": env.id, "to": a["from"]}
    if a.get("participant"):
        out["participant"] = a["participant"]
    if a.get("recipient"):
        out["recipient"] = a["recipient"]
    if env.from_me:
        out["type"] = "sender"
    elif a.get("category") == "peer":
        out["type"] = "peer_msg"
    return Node("receipt", out)


def handle(engine: Engine, conn: Connection, node: Node) -> None:
    conn.spawn(receive(engine, conn, node), "message")


async def receive(engine: Engine, conn: Connection, node: Node) -> None:
    m = engine.messaging
    creds = conn.creds
    me = creds.me_jid
    try:
        env = envelope(node, creds)
    except StanzaError as exc:
        log.warning("message refused: %s", exc)
        await conn.send(ack_for(node, error=NACK_PARSING_ERROR, me=me))
        return
    m.learn_pair(env.sender if not jids.is_lid(env.sender) else env.sender_alt,
                 env.sender if jids.is_lid(env.sender) else env.sender_alt)
    if env.from_me and env.push_name:
        # the server names the writer in `notify`: on our own devices' messages that is our push name
        await engine.learn_push_name(env.push_name, "own-message")
    async with m.lock:
        if await m.store.has_incoming(env.id):
            log.debug("redelivered message already stored", extra={"id": env.id})
            await conn.send(receipt_for(node, env))
            return
        try:
            message, changes = await _decrypt_all(m, creds, env, node)
        except E2EError as exc:
            await _failed(engine, conn, node, env, exc.reason)
            return
        except plaintext.PlaintextError as exc:
            log.warning("undecodable plaintext", extra={"id": env.id, "error": str(exc)})
            await conn.send(ack_for(node, error=NACK_INVALID_PROTOBUF, me=me))
            return
        if message is None:  # no <enc> we can handle (e.g. <unavailable>, msmsg)
            await conn.send(ack_for(node, me=me))
            return
        stored = StoredMessage(env.id, env.chat, env.sender, env.sender_alt, env.from_me, env.timestamp,
                               env.push_name, message.SerializeToString())
        new = await m.store.save_incoming(stored, changes)
        # The store now refuses these ids for ever: their private halves are dead weight in creds
        # (which would otherwise grow by a batch per refill). Dropped in memory; persisted with the
        # next creds save — a crash before it only keeps a key the store already refuses.
        for key_id in changes.consumed_pre_keys:
            creds.pre_keys.pop(key_id, None)
    if new and _has_content(message):
        pn, lid = (env.sender_alt, env.sender) if jids.is_lid(env.sender) else (env.sender, env.sender_alt)
        engine.emit(MessageEvent(env.id, env.chat, env.sender, pn, lid, env.from_me, env.timestamp,
                                 env.push_name, message, env.offline))
    await conn.send(receipt_for(node, env))


def _has_content(msg: Message) -> bool:
    """Anything besides messageContextInfo (unknown fields count: a message kind we do not model)."""
    rest = Message()
    rest.CopyFrom(msg)
    rest.ClearField("messageContextInfo")
    return rest.ByteSize() > 0


async def _decrypt_all(m: Messaging, creds: Creds, env: Envelope, node: Node
                       ) -> tuple[Message | None, StateChanges]:
    changes = StateChanges()
    merged: Message | None = None
    own = m.own_keys(creds)
    address = m.address(env.sender)
    for enc in node.children("enc"):
        kind = enc.attrs.get("type", "")
        data = enc.content
        if not isinstance(data, bytes):
            raise E2EError(f"<enc type={kind}> without binary content")
        if kind in ("pkmsg", "msg"):
            record = changes.sessions.get(address) or await m.store.load_session(address)
            result = m.cipher.decrypt(own, kind, record, data, lambda kid: creds.pre_keys.get(kid))
            if result.used_pre_key_id is not None:
                if await m.store.is_pre_key_consumed(result.used_pre_key_id):
                    raise E2EError(f"one-time pre-key {result.used_pre_key_id} was used already")
                changes.consumed_pre_keys.add(result.used_pre_key_id)
            if result.remote_identity is not None:
                changes.identities[address] = result.remote_identity
            changes.sessions[address] = result.record
            padded = result.plaintext
        elif kind == "skmsg":
            if not env.is_group:
                raise E2EError("skmsg outside a group")
            key = (env.chat, address)
            sk = changes.sender_keys.get(key) or await m.store.load_sender_key(*key)
            padded, new_sk = m.cipher.group_decrypt(sk, data)
            changes.sender_keys[key] = new_sk
        else:
            log.info("enc type %r not supported; skipped", kind[:16])
            continue
        msg = plaintext.parse(plaintext.unpad(padded))
        if msg.HasField("deviceSentMessage") and env.from_me:
            inner = Message()
            inner.CopyFrom(msg.deviceSentMessage.message)
            if msg.HasField("messageContextInfo"):
                inner.messageContextInfo.CopyFrom(msg.messageContextInfo)
            msg = inner
        if msg.HasField("senderKeyDistributionMessage"):
            skdm = msg.senderKeyDistributionMessage
            if env.is_group and skdm.groupId == env.chat:
                key = (env.chat, address)
                sk = changes.sender_keys.get(key) or await m.store.load_sender_key(*key)
                changes.sender_keys[key] = m.cipher.process_distribution(
                    sk, skdm.axolotlSenderKeyDistributionMessage)
            else:
                log.warning("sender key distribution outside its group ignored", extra={"id": env.id})
            msg.ClearField("senderKeyDistributionMessage")
        if merged is None:
            merged = msg
        else:
            merged.MergeFrom(msg)
    return merged, changes


async def _failed(engine: Engine, conn: Connection, node: Node, env: Envelope, reason: str) -> None:
    m = engine.messaging
    count = m.retries.bump(env.id)
    log.warning("could not decrypt", extra={"id": env.id, "reason": reason, "retry": count})
    engine.emit(UndecryptableEvent(env.id, env.chat, env.sender, reason, count))
    if count > MAX_RETRY_RECEIPTS:
        await conn.send(ack_for(node, error=NACK_UNHANDLED_ERROR, me=conn.creds.me_jid))
        return
    await conn.send(await retry_receipt(engine, conn, node, env, count))


async def retry_receipt(engine: Engine, conn: Connection, node: Node, env: Envelope, count: int) -> Node:
    """``<receipt type="retry">`` (§6.4); from the second retry on it carries our keys and a fresh
    one-time pre-key (never uploaded, kept in creds so the peer's pkmsg can use it)."""
    creds = conn.creds
    a = node.attrs
    attrs = {"id": env.id, "to": a["from"], "type": "retry"}
    for name in ("participant", "recipient"):
        if a.get(name):
            attrs[name] = a[name]
    children = [
        Node("retry", {"count": str(count), "id": env.id, "t": a.get("t", "0"), "v": "1"}),
        Node("registration", {}, creds.registration_id.to_bytes(4, "big")),
    ]
    if count > 1:
        async with engine.messaging.prekey_lock:
            key_id = creds.next_pre_key_id
            pair = KeyPair.generate()
            creds.pre_keys[key_id] = pair.private
            creds.next_pre_key_id = key_id + 1 if key_id < prekeys.MAX_PRE_KEY_ID else 1
            await engine.save_creds(creds)
        keys = [
            Node("type", {}, b"\x05"),
            Node("identity", {}, creds.identity_public),
            Node("key", {}, [Node("id", {}, key_id.to_bytes(3, "big")), Node("value", {}, pair.public)]),
            Node("skey", {}, [Node("id", {}, creds.signed_pre_key_id.to_bytes(3, "big")),
                              Node("value", {}, creds.signed_pre_key_public),
                              Node("signature", {}, creds.signed_pre_key_signature)]),
        ]
        if creds.account:
            keys.append(Node("device-identity", {}, creds.account))
        children.append(Node("keys", {}, keys))
    return Node("receipt", attrs, children)
