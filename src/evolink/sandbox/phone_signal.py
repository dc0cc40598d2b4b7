"""The simulated phone (device 0) as a full Signal participant, on ``evolink.signal``.

Receiving: every stanza routed to device 0 is decrypted in document order (1:1 ``pkmsg``/``msg``
with the sender device's session, then ``skmsg`` with the (group, author) sender key), unpadded,
parsed as ``Message``; a ``deviceSentMessage`` is unwrapped and an SKDM processed. The phone then
sends the delivery receipt (no type), like an active phone. A failure is recorded with its error
(``text`` is null) and answered with a retry receipt — the session is never replaced by garbage.

Sending (admin): to a user (PN or LID JID) it encrypts for every device of the recipient and every
companion of its own account (those get the ``deviceSentMessage`` wrap), opening sessions from
fetched bundles (one one-time pre-key each, as a client would); to a group it sends the SKDM to
every member device over 1:1 plus one ``skmsg``. The stanza goes through the same router code as a
client's, so it gets the same checks and ack.

Sessions and sender keys are keyed by the peer's **LID** address (like Baileys 7), whatever
namespace a stanza used.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evolink import signal
from evolink.sandbox import messages, prekeys, receipts
from evolink.sandbox.directory import GROUP_SERVER, Address, parse_jid
from evolink.sandbox.errors import AdminError
from evolink.sandbox.phone_keys import PhoneKeys
from evolink.sandbox.router import Router
from evolink.wire.binary import Node
from evolink.wire.crypto import KeyPair
from evolink.wire.errors import ProtoError
from evolink.wire.proto import e2e_pb2, parse

log = logging.getLogger("evolink.sandbox.phone")

MAX_RECEIVED = 1000
MAX_TEXT = 65_536


@dataclass(frozen=True, slots=True)
class Received:
    id: str
    chat: str  # the chat JID (sender's user JID for 1:1, the group JID for groups)
    sender: str  # the sending device's JID, as the stanza named it
    t: int
    text: str | None
    from_me: bool
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "chat": self.chat, "sender": self.sender, "t": self.t, "text": self.text,
                "from_me": self.from_me, "error": self.error}


def new_message_id() -> str:
    return "3EB0" + secrets.token_hex(9).upper()


class PhoneSignal:
    def __init__(self, router: Router, keys: PhoneKeys, identity_private: Callable[[str], bytes]) -> None:
        self.router = router
        self.keys = keys
        self._identity_private = identity_private
        self.received: dict[str, deque[Received]] = {}

    # ----------------------------------------------------------------------------- helpers
    def _identity(self, phone: str) -> signal.IdentityKeyPair:
        return signal.IdentityKeyPair.from_key_pair(KeyPair.from_private(self._identity_private(phone)))

    def _registration_id(self, phone: str) -> int:
        bundle = self.router.sv.routing.get_bundle(phone, 0)
        assert bundle is not None
        return bundle.registration_id

    @staticmethod
    def _address(addr: Address) -> signal.ProtocolAddress:
        return signal.jid_to_address(addr.jid(lid_form=True))

    def _session(self, phone: str, addr: Address) -> signal.SessionRecord | None:
        raw = self.keys.record(phone, "session", str(self._address(addr)))
        return None if raw is None else signal.SessionRecord.from_bytes(raw)

    def _sender_key(self, phone: str, name: signal.SenderKeyName) -> signal.SenderKeyRecord | None:
        raw = self.keys.record(phone, "sender_key", str(name))
        return None if raw is None else signal.SenderKeyRecord.from_bytes(raw)

    # ---------------------------------------------------------------------------- receiving
    def receive(self, phone: str, node: Node) -> None:
        if node.tag != "message":
            return  # receipts to the phone need no action
        sv = self.router.sv
        group = node.attrs.get("from", "") if node.attrs.get("from", "").endswith("@g.us") else None
        sender_jid = node.attrs.get("participant") if group else node.attrs.get("from")
        author = sv.directory.resolve(sender_jid)
        text: str | None = None
        error: str | None = None
        from_me = author is not None and author.phone == phone
        if author is None:
            error = "unknown sender"
        else:
            try:
                text = self._decrypt_all(phone, author, group, node)
            except (signal.SignalError, ProtoError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:200]
        chat = group or node.attrs.get("recipient") or (author.user_jid if author else sender_jid or "")
        entry = Received(node.attrs.get("id", ""), chat, sender_jid or "", int(node.attrs.get("t", "0") or 0),
                         text, from_me, error)
        self.received.setdefault(phone, deque(maxlen=MAX_RECEIVED)).append(entry)
        self._receipt(phone, node, retry=error is not None)

    def _decrypt_all(self, phone: str, author: Address, group: str | None, node: Node) -> str | None:
        text: str | None = None
        for enc in node.children("enc"):
            body = enc.content if isinstance(enc.content, bytes) else b""
            kind = enc.attrs.get("type")
            if kind == "skmsg":
                if group is None:
                    raise signal.InvalidMessage("skmsg outside a group")
                name = signal.SenderKeyName(group, self._address(author))
                record, plain = signal.group_decrypt(self._sender_key(phone, name), body)
                self.keys.set_record(phone, "sender_key", str(name), record.to_bytes())
            elif kind in ("pkmsg", "msg"):
                plain = self._decrypt_direct(phone, author, kind, body)
            else:
                continue
            message = parse(e2e_pb2.Message, signal.unpad(plain))
            if message.HasField("deviceSentMessage"):
                message = message.deviceSentMessage.message
            if message.HasField("senderKeyDistributionMessage"):
                skdm = message.senderKeyDistributionMessage
                if skdm.groupId:
                    name = signal.SenderKeyName(skdm.groupId, self._address(author))
                    record = signal.process_sender_key_distribution(
                        self._sender_key(phone, name), skdm.axolotlSenderKeyDistributionMessage)
                    self.keys.set_record(phone, "sender_key", str(name), record.to_bytes())
            found = message.conversation or (message.extendedTextMessage.text
                                             if message.HasField("extendedTextMessage") else "")
            text = found or text
        return text

    def _decrypt_direct(self, phone: str, author: Address, kind: str, body: bytes) -> bytes:
        identity = self._identity(phone)
        current = self._session(phone, author)
        if kind == "pkmsg":
            def prekey(key_id: int) -> signal.PreKeyRecord | None:
                private = self.keys.private(phone, "opk", key_id)
                return None if private is None else signal.PreKeyRecord(key_id, KeyPair.from_private(private))

            def signed(key_id: int) -> signal.SignedPreKeyRecord | None:
                private = self.keys.private(phone, "spk", key_id)
                bundle = self.router.sv.routing.get_bundle(phone, 0)
                if private is None or bundle is None or bundle.spk_id != key_id:
                    return None
                return signal.SignedPreKeyRecord(key_id, KeyPair.from_private(private), bundle.spk_sig)

            result = signal.decrypt_pkmsg(current, identity, self._registration_id(phone), body, prekey, signed)
            if result.used_pre_key_id is not None:
                self.keys.drop_prekey(phone, result.used_pre_key_id)
        else:
            result = signal.decrypt_msg(current, identity, body)
        self.keys.set_record(phone, "session", str(self._address(author)), result.record.to_bytes())
        return result.plaintext

    def _receipt(self, phone: str, node: Node, *, retry: bool) -> None:
        attrs = {"id": node.attrs.get("id", ""), "to": node.attrs.get("from", "")}
        if "participant" in node.attrs:
            attrs["participant"] = node.attrs["participant"]
        content = None
        if retry:
            attrs["type"] = "retry"
            content = [Node("retry", {"count": "1", "id": attrs["id"], "t": node.attrs.get("t", "0"), "v": "1"}),
                       Node("registration", {}, self._registration_id(phone).to_bytes(4, "big"))]
        receipts.route(self.router, phone, 0, Node("receipt", attrs, content))

    def mark_read(self, phone: str, ids: list[str]) -> int:
        """Send read receipts for received messages (by id); returns how many were found."""
        by_id = {r.id: r for r in self.received.get(phone, ())}
        found = [by_id[i] for i in ids if i in by_id and not by_id[i].from_me]
        for r in found:
            attrs = {"id": r.id, "to": r.chat, "type": "read", "t": str(self.router.sv.host.clock.unix())}
            if r.chat.endswith("@g.us"):
                attrs["participant"] = r.sender
            receipts.route(self.router, phone, 0, Node("receipt", attrs))
        return len(found)

    # ------------------------------------------------------------------------------ sending
    def send_text(self, phone: str, to: object, text: object) -> dict[str, Any]:
        if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT:
            raise AdminError(400, "invalid_text", f"text must be 1..{MAX_TEXT} characters")
        jid = parse_jid(to if isinstance(to, str) else None)
        if jid is None:
            raise AdminError(400, "invalid_jid", "to must be a user (PN or LID) or group JID")
        sv = self.router.sv
        me = sv.directory.account(phone)
        assert me is not None
        mid = new_message_id()
        content = e2e_pb2.Message(conversation=text)
        if jid.server == GROUP_SERVER:
            node = self._group_stanza(phone, me, f"{jid.user}@g.us", mid, content)
        else:
            chat = sv.directory.resolve(str(jid))
            if chat is None or chat.device:
                raise AdminError(404, "unknown_recipient", "to must name an existing account (not a device)")
            node = self._direct_stanza(phone, me, chat, mid, content)
        ack = messages.route(self.router, phone, 0, node)
        if "error" in ack.attrs:
            raise AdminError(409, "refused", f"the router refused the message with error {ack.attrs['error']}")
        fanout = node.child("participants")
        return {"id": mid, "to": node.attrs["to"], "t": int(ack.attrs["t"]),
                "devices": len(fanout.children("to")) if fanout else 0}

    def _encrypt_for(self, phone: str, target: Address, plain: bytes) -> Node | None:
        """``<to jid><enc/></to>`` for one device; None when it has no bundle to start a session."""
        sv = self.router.sv
        record = self._session(phone, target)
        if record is None or not record.has_open_session():
            bundle = sv.routing.get_bundle(target.phone, target.device)
            if bundle is None:
                return None
            popped = sv.routing.pop_prekey(target.phone, target.device)
            left = sv.routing.prekey_count(target.phone, target.device)
            if popped is not None and left < prekeys.LOW_WATER:
                sv.notify(target.phone, target.device, prekeys.low_count_notification(left, sv.host.clock.unix()))
            record = signal.session_from_bundle(record, self._identity(phone), self._registration_id(phone),
                                                signal.PreKeyBundle(
                bundle.registration_id, target.device, bundle.identity, bundle.spk_id, bundle.spk_pub,
                bundle.spk_sig, popped[0] if popped else None, popped[1] if popped else None))
        record, cipher = signal.encrypt(record, self._identity(phone), signal.pad(plain))
        self.keys.set_record(phone, "session", str(self._address(target)), record.to_bytes())
        return Node("to", {"jid": target.jid()}, [Node("enc", {"v": "2", "type": cipher.type}, cipher.body)])

    def _direct_stanza(self, phone: str, me: Address, chat: Address, mid: str, content: e2e_pb2.Message) -> Node:
        sv = self.router.sv
        plain = content.SerializeToString()
        dsm = e2e_pb2.Message()
        dsm.deviceSentMessage.destinationJid = chat.user_jid
        dsm.deviceSentMessage.message.CopyFrom(content)
        own = [(me.at(d).with_form(chat.lid_form), dsm.SerializeToString())
               for d, _ in sv.directory.devices(phone) if d != 0]
        if chat.phone == phone:
            targets = own  # a note to self: only our companions, each with the deviceSentMessage copy
        else:
            targets = [(chat.at(d), plain) for d, _ in sv.directory.devices(chat.phone)] + own
        entries = [n for addr, data in targets if (n := self._encrypt_for(phone, addr, data)) is not None]
        return Node("message", {"id": mid, "to": chat.user_jid, "type": "text"}, [Node("participants", {}, entries)])

    def _group_stanza(self, phone: str, me: Address, group_jid: str, mid: str, content: e2e_pb2.Message) -> Node:
        sv = self.router.sv
        group = sv.routing.get_group(group_jid.split("@")[0])
        if group is None:
            raise AdminError(404, "group_not_found", f"no group {group_jid}")
        name = signal.SenderKeyName(group_jid, self._address(me))
        record, skdm = signal.create_sender_key_distribution(self._sender_key(phone, name))
        dist = e2e_pb2.Message()
        dist.senderKeyDistributionMessage.groupId = group_jid
        dist.senderKeyDistributionMessage.axolotlSenderKeyDistributionMessage = skdm
        lid_mode = group.addressing_mode == "lid"
        entries = []
        for member, _ in group.members:
            acct = sv.directory.account(member, lid_mode)
            for device, _ in sv.directory.devices(member) if acct is not None else []:
                if member == phone and device == 0:
                    continue
                assert acct is not None
                node = self._encrypt_for(phone, acct.at(device), dist.SerializeToString())
                if node is not None:
                    entries.append(node)
        record, skmsg = signal.group_encrypt(record, signal.pad(content.SerializeToString()))
        self.keys.set_record(phone, "sender_key", str(name), record.to_bytes())
        return Node("message", {"id": mid, "to": group_jid, "type": "text", "addressing_mode": group.addressing_mode},
                    [Node("participants", {}, entries), Node("enc", {"v": "2", "type": "skmsg"}, skmsg)])

    def received_json(self, phone: str) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.received.get(phone, ())]
