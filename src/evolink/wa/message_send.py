"""Sending: 1:1 fan-out to every device of the peer and our own other devices, groups by sender
key, and resends on a peer's retry receipt (wa-messaging §5, §6.5).

Order of effects for one send, which is what keeps Signal state consistent across a crash: encrypt
for every device under the messaging lock, then ``store.record_outgoing(message, state changes)``
(one transaction), then put the stanza on the wire and wait (bounded) for the server's ack. A crash
after the record and before the ack is healed by sending again with the same ``message_id``: the
ratchet has moved on, so the resent ciphertexts are new, and the peers dedup by id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evolink.wa import bundles, jids, plaintext, usync
from evolink.wa.connection import Connection, ConnectionLost, IqError, QueryTimeout
from evolink.wa.e2e import E2EError
from evolink.wa.messaging import MAX_RESENDS, Messaging
from evolink.wa.store_port import OutgoingMessage, StateChanges
from evolink.wire.binary import Node
from evolink.wire.errors import DecodeError
from evolink.wire.proto.e2e_pb2 import Message

if TYPE_CHECKING:
    from evolink.wa.creds import Creds
    from evolink.wa.engine import Engine

log = logging.getLogger("evolink.wa.message_send")


class SendError(Exception):
    """The message could not be sent (not connected, no devices, server refusal, no ack in time)."""


class NotConnected(SendError):
    pass


@dataclass(frozen=True, slots=True)
class SendResult:
    id: str
    timestamp: int  # the server's `t` from its ack
    devices: int  # device copies put into the stanza


def _ready(engine: Engine) -> Connection:
    conn = engine.live_connection()
    if conn is None or not conn.creds.me_jid:
        raise NotConnected(f"Connection Closed: the engine is {engine.state}, not open")
    return conn


async def send_message(engine: Engine, to: str, message: Message, *, message_id: str | None = None,
                       within: float | None = None) -> SendResult:
    conn = _ready(engine)
    try:
        target = jids.parse(to)
    except DecodeError as exc:
        raise SendError(f"bad recipient JID: {exc}") from None
    if target.server not in (jids.PN_SERVER, jids.LID_SERVER, jids.GROUP_SERVER):
        raise SendError(f"cannot send to a {target.server} JID")
    chat = f"{target.user}@{target.server}"
    m = engine.messaging
    msg_id = message_id or jids.message_id(conn.creds.me_jid, engine.clock.time())
    ack, now, n = await _send_once(engine, conn, chat, msg_id, message, within)
    if _refused(ack):
        # A refused stanza reached nobody. The usual cause is a stale device list (a peer's device
        # changed while we were offline and missed its notification): forget the cached lists and
        # build the stanza once more from fresh ones. The ratchet moved on with the refused copies;
        # peers skip those message keys.
        log.info("server refused a send; retrying with fresh device lists",
                 extra={"id": msg_id, "error": ack.attrs.get("error")})
        m.forget_all_devices()
        ack, now, n = await _send_once(engine, conn, chat, msg_id, message, within)
    if _refused(ack):
        raise SendError(f"server refused {msg_id}: error {ack.attrs.get('error')}")
    t = ack.attrs.get("t", "")
    log.info("message sent", extra={"id": msg_id, "devices": n})
    return SendResult(msg_id, int(t) if t.isdigit() else now, n)


def _refused(ack: Node) -> bool:
    error = ack.attrs.get("error")
    return bool(error) and error != "0"


async def _send_once(engine: Engine, conn: Connection, chat: str, msg_id: str, message: Message,
                     within: float | None) -> tuple[Node, int, int]:
    """Encrypt, record, send, and wait for the server's ack (returned, refused or not)."""
    m = engine.messaging
    delivered = False
    try:
        # Device lists and group metadata are network round trips that touch no Signal state:
        # fetched before taking the lock, so receiving is never held up by them.
        devices, mode = await _targets(m, conn, chat)
        async with m.lock:
            if jids.is_group(chat):
                node, changes, n = await _group_stanza(m, conn, chat, msg_id, message, devices, mode)
            else:
                node, changes, n = await _dm_stanza(m, conn, chat, msg_id, message, devices)
            now = int(engine.clock.time())
            await m.store.record_outgoing(OutgoingMessage(msg_id, chat, message.SerializeToString(), now), changes)
        future = m.expect_ack(msg_id)
        try:
            await conn.send(node)
            ack = await asyncio.wait_for(asyncio.shield(future), within or engine.config.query_timeout)
        except TimeoutError:
            raise SendError(f"no server ack for {msg_id} within {within or engine.config.query_timeout:g}s") from None
        finally:
            m.drop_ack(msg_id)
        delivered = not _refused(ack)
        theirs = ack.attrs.get("phash")
        if theirs and theirs != node.attrs.get("phash"):
            # The server's device list differs from ours: refresh it before the next send (a
            # device we missed answers the skmsg it cannot read with a retry receipt).
            m.forget_all_devices()
    except ConnectionLost as exc:
        raise NotConnected(f"Connection Closed: {exc}") from None
    except (IqError, QueryTimeout, usync.UsyncError) as exc:
        raise SendError(f"could not prepare {msg_id}: {exc}") from None
    finally:
        if not delivered and jids.is_group(chat):
            # Who got our sender key was marked optimistically: unknown now, so distribute it to
            # every member device again with the next group message.
            m.skdm_sent.pop(chat, None)
    return ack, now, n


def _own_user(creds: Creds, lid_namespace: bool) -> str:
    own = creds.me_lid if lid_namespace and creds.me_lid else creds.me_jid
    assert own is not None
    return jids.non_ad(own)


def _is_own_device(creds: Creds, device: str) -> bool:
    return any(j and jids.same_device(j, device) for j in (creds.me_jid, creds.me_lid))


async def _ensure_sessions(m: Messaging, conn: Connection, devices: list[str], changes: StateChanges,
                           *, force: bool = False) -> list[str]:
    """Sessions for ``devices`` (fresh bundles for those without one); returns the devices that have one."""
    own = m.own_keys(conn.creds)
    missing = []
    for d in devices:
        addr = m.address(d)
        if force or (changes.sessions.get(addr) is None and await m.store.load_session(addr) is None):
            missing.append(d)
    if missing:
        fetched = await bundles.fetch(conn, [m.canonical(d) for d in missing], reason="identity" if force else None)
        for d in missing:
            bundle = fetched.get(m.canonical(d)) or fetched.get(d)
            if bundle is None:
                continue
            try:
                changes.sessions[m.address(d)] = m.cipher.session_from_bundle(own, bundle)
                changes.identities[m.address(d)] = bundle.identity
            except E2EError as exc:
                log.warning("bundle refused", extra={"device": d, "error": str(exc)})
    ready = []
    for d in devices:
        addr = m.address(d)
        if changes.sessions.get(addr) is not None or await m.store.load_session(addr) is not None:
            ready.append(d)
    return ready


async def _encrypt_for(m: Messaging, conn: Connection, device: str, data: bytes, changes: StateChanges,
                       ) -> Node:
    addr = m.address(device)
    record = changes.sessions.get(addr) or await m.store.load_session(addr)
    assert record is not None
    out = m.cipher.encrypt(m.own_keys(conn.creds), record, data)
    changes.sessions[addr] = out.record
    return Node("enc", {"v": "2", "type": out.kind}, out.ciphertext)


def stanza_type(message: Message) -> str:
    """The ``<message type>``: ``reaction`` for reactions (the server routes and counts them apart,
    Baileys ``getMessageType``), ``text`` for everything we send so far."""
    return "reaction" if message.HasField("reactionMessage") else "text"


def _stanza(msg_id: str, to: str, children: list[Node], creds: Creds, *, phash_of: list[str],
            extra: dict[str, str] | None = None) -> Node:
    if creds.account and any(e.attrs.get("type") == "pkmsg" for p in children if p.tag == "participants"
                             for t in p.children("to") for e in t.children("enc")):
        children.append(Node("device-identity", {}, creds.account))
    attrs = {"id": msg_id, "to": to, "type": "text", **(extra or {})}
    if phash_of:
        attrs["phash"] = jids.participant_hash(phash_of)
    return Node("message", attrs, children)


async def _targets(m: Messaging, conn: Connection, chat: str) -> tuple[list[str], str]:
    """Every device to encrypt for (never our own) and, for a group, its addressing mode."""
    creds = conn.creds
    if jids.is_group(chat):
        members, mode = await group_participants(conn, chat, m)
        own_user = _own_user(creds, mode == "lid")
        if own_user not in members:
            members.append(own_user)
        return [d for d in await usync.devices(m, conn, members) if not _is_own_device(creds, d)], mode
    own_user = _own_user(creds, jids.is_lid(chat))
    devices = [d for d in await usync.devices(m, conn, [chat, own_user]) if not _is_own_device(creds, d)]
    if not any(jids.non_ad(d) == chat for d in devices):
        raise SendError(f"{chat} has no devices")
    return devices, ""


async def _dm_stanza(m: Messaging, conn: Connection, chat: str, msg_id: str, message: Message,
                     devices: list[str]) -> tuple[Node, StateChanges, int]:
    creds = conn.creds
    own_user = _own_user(creds, jids.is_lid(chat))
    changes = StateChanges()
    ready = await _ensure_sessions(m, conn, devices, changes)
    plain = plaintext.encode(message)
    own_plain = plaintext.encode(plaintext.device_sent(message, chat))
    tos = []
    for d in ready:
        mine = jids.non_ad(d) == own_user
        tos.append(Node("to", {"jid": d}, [await _encrypt_for(m, conn, d, own_plain if mine else plain, changes)]))
    if not any(jids.non_ad(t.attrs["jid"]) == chat for t in tos):
        raise SendError(f"no session could be built with any device of {chat}")
    node = _stanza(msg_id, chat, [Node("participants", {}, tos)], creds, phash_of=ready,
                   extra={"type": stanza_type(message)})
    return node, changes, len(tos)


async def group_participants(conn: Connection, group: str, m: Messaging) -> tuple[list[str], str]:
    """Member user JIDs (in the group's addressing namespace) and the addressing mode (``w:g2``)."""
    reply = await conn.query(Node("iq", {"to": group, "type": "get", "xmlns": "w:g2"},
                                  [Node("query", {"request": "interactive"})]))
    g = reply.child("group")
    if g is None:
        raise SendError(f"no metadata for {group}")
    mode = g.attrs.get("addressing_mode", "pn")
    members = []
    for p in g.children("participant"):
        jid = p.attrs.get("jid", "")
        if "@" not in jid:
            continue
        members.append(jids.non_ad(jid))
        if jids.is_lid(jid):
            m.learn_pair(p.attrs.get("phone_number"), jid)
        else:
            m.learn_pair(jid, p.attrs.get("lid"))
    return members, mode


async def _group_stanza(m: Messaging, conn: Connection, group: str, msg_id: str, message: Message,
                        devices: list[str], mode: str) -> tuple[Node, StateChanges, int]:
    creds = conn.creds
    lid_mode = mode == "lid"
    own_device = (creds.me_lid and jids.device_jid(creds.me_lid, jids.parse(creds.me_jid or "").device)
                  if lid_mode else creds.me_jid)
    assert own_device is not None
    changes = StateChanges()
    key = (group, jids.signal_address(own_device))
    group_out = m.cipher.group_encrypt(await m.store.load_sender_key(*key), plaintext.encode(message))
    changes.sender_keys[key] = group_out.record
    have = m.skdm_sent.setdefault(group, set())
    need = [d for d in devices if d not in have]
    tos = []
    if need:
        ready = await _ensure_sessions(m, conn, need, changes)
        skdm = plaintext.encode(plaintext.distribution_message(group, group_out.distribution))
        for d in ready:
            tos.append(Node("to", {"jid": d}, [await _encrypt_for(m, conn, d, skdm, changes)]))
    children = [Node("participants", {}, tos)] if tos else []
    children.append(Node("enc", {"v": "2", "type": "skmsg"}, group_out.ciphertext))
    node = _stanza(msg_id, group, children, creds, phash_of=devices,
                   extra={"addressing_mode": mode, "type": stanza_type(message)})
    # Who has our key is only known once the server took the stanza; marked optimistically here and
    # cleared on a retry receipt for the group (as Baileys does with sender-key-memory).
    have.update(t.attrs["jid"] for t in tos)
    return node, changes, len(tos)


async def resend_on_retry(engine: Engine, conn: Connection, receipt: Node) -> None:
    """A peer could not decrypt one of our messages: rebuild its session and resend (§6.5), at most
    ``MAX_RESENDS`` times per (message id, device). Failures are logged, never raised."""
    try:
        await _resend(engine, conn, receipt)
    except (SendError, IqError, QueryTimeout, E2EError, usync.UsyncError, DecodeError) as exc:
        log.warning("resend after retry receipt failed: %s", exc, extra={"id": receipt.attrs.get("id")})


async def _resend(engine: Engine, conn: Connection, receipt: Node) -> None:
    m = engine.messaging
    creds = conn.creds
    a = receipt.attrs
    msg_id = a.get("id", "")
    requester = a.get("participant") or a.get("from", "")
    if "@" not in requester or jids.is_group(requester):
        return
    if m.resends.bump(f"{msg_id}|{requester}") > MAX_RESENDS:
        log.info("resend limit reached", extra={"id": msg_id})
        return
    sent = await m.store.load_outgoing(msg_id)
    if sent is None:
        log.info("retry receipt for a message we do not have", extra={"id": msg_id})
        return
    message = plaintext.parse(sent.message)
    retry = receipt.child("retry")
    count = retry.attrs.get("count", "1") if retry is not None else "1"
    group = jids.is_group(sent.chat)
    async with m.lock:
        changes = StateChanges()
        keys = receipt.child("keys")
        bundle = bundles.parse_bundle(keys) if keys is not None else None
        if bundle is not None:
            reg = receipt.child("registration")
            if reg is not None and isinstance(reg.content, bytes) and len(reg.content) == 4:
                bundle = dataclasses.replace(bundle, registration_id=int.from_bytes(reg.content, "big"))
            changes.sessions[m.address(requester)] = m.cipher.session_from_bundle(m.own_keys(creds), bundle)
        elif not await _ensure_sessions(m, conn, [requester], changes, force=True):
            raise SendError(f"no key bundle for {requester}")
        if group:
            m.skdm_sent.pop(sent.chat, None)
            own_device = creds.me_lid if a.get("addressing_mode") == "lid" and creds.me_lid else creds.me_jid
            sk = await m.store.load_sender_key(sent.chat, jids.signal_address(jids.device_jid(
                own_device or "", jids.parse(creds.me_jid or "").device)))
            if sk is not None:
                # A fresh distribution of our current key, carried with the content in one 1:1 <enc>.
                out = m.cipher.group_encrypt(sk, plaintext.pad(b""))  # steps a copy; its record is dropped
                message.senderKeyDistributionMessage.groupId = sent.chat
                message.senderKeyDistributionMessage.axolotlSenderKeyDistributionMessage = out.distribution
        elif jids.non_ad(requester) in {jids.non_ad(j) for j in (creds.me_jid, creds.me_lid) if j}:
            message = plaintext.device_sent(message, sent.chat)
        enc = await _encrypt_for(m, conn, requester, plaintext.encode(message), changes)
        enc.attrs["count"] = count
        await m.store.apply(changes)
    attrs = {"id": msg_id, "type": stanza_type(message)}
    if group:
        attrs.update(to=sent.chat, participant=requester)
    else:
        attrs.update(to=requester, device_fanout="false")
        if jids.non_ad(requester) != sent.chat and jids.non_ad(requester) in {
                jids.non_ad(j) for j in (creds.me_jid, creds.me_lid) if j}:
            attrs["recipient"] = sent.chat
    children = [enc]
    if creds.account:
        children.append(Node("device-identity", {}, creds.account))
    await conn.send(Node("message", attrs, children))
    log.info("resent after retry receipt", extra={"id": msg_id, "count": count})

