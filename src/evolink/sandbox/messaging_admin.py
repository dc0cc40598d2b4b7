"""The sandbox's messaging controls (admin API and in-process): groups and the simulated phone.

Mixed into ``Sandbox`` so tests call ``sb.create_group(...)``, ``sb.phone_send(...)`` like the
other controls; each maps to one admin route (docs/sandbox.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from evolink.sandbox import groups
from evolink.sandbox.clock import SandboxClock
from evolink.sandbox.errors import AdminError
from evolink.sandbox.phone_signal import PhoneSignal
from evolink.sandbox.router import Router
from evolink.sandbox.routing_store import RoutingStore
from evolink.sandbox.store import PhoneRecord
from evolink.wire.binary import Node

log = logging.getLogger("evolink.sandbox")

MAX_PHONE_INBOX = 1000  # stanzas kept per simulated phone (device 0)


class MessagingControls:
    router: Router
    routing: RoutingStore
    phone_signal: PhoneSignal
    clock: SandboxClock
    phone_inbox: dict[str, deque[Node]]

    def _phone(self, phone: object) -> PhoneRecord:
        raise NotImplementedError

    def _phone_received(self, phone: str, node: Node) -> None:
        """A stanza routed to device 0: the simulated phone keeps it (bounded, oldest dropped)."""
        self.phone_inbox.setdefault(phone, deque(maxlen=MAX_PHONE_INBOX)).append(node)
        # The phone reacts (decrypts, answers its receipt) right after the current stanza is
        # handled, as a separate device would: the sender sees the server's ack first.
        asyncio.get_running_loop().call_soon(self._phone_react, phone, node)

    def _phone_react(self, phone: str, node: Node) -> None:
        try:
            self.phone_signal.receive(phone, node)
        except Exception:  # the phone must never take the server down
            log.exception("simulated phone failed on a stanza", extra={"phone": phone})

    # ------------------------------------------------------------------------- controls
    def create_group(self, subject: object, members: object, creator: object = None,
                     addressing_mode: object = "lid") -> dict[str, Any]:
        """A group of existing phones; ``creator`` (default: the first member) is its superadmin."""
        if not isinstance(subject, str) or not 0 < len(subject) <= 100:
            raise AdminError(400, "invalid_subject", "subject must be 1..100 characters")
        if not isinstance(members, list) or not members or len(members) > 1024:
            raise AdminError(400, "invalid_members", "members must be a list of 1..1024 phones")
        if addressing_mode not in ("lid", "pn"):
            raise AdminError(400, "invalid_addressing_mode", "addressing_mode must be 'lid' or 'pn'")
        phones = list(dict.fromkeys(self._phone(m).phone for m in members))
        owner = self._phone(creator).phone if creator is not None else phones[0]
        if owner not in phones:
            phones.insert(0, owner)
        roster = [(p, "superadmin" if p == owner else "") for p in phones]
        group = self.routing.create_group(subject, owner, roster, self.clock.unix(), str(addressing_mode))
        groups.announce_created(self.router.sv, group)
        log.info("group created", extra={"group": group.id, "members": len(roster)})
        return self.group_json(group.id)

    def group_json(self, group_id: object) -> dict[str, Any]:
        gid = str(group_id).removesuffix("@g.us")
        group = self.routing.get_group(gid)
        if group is None:
            raise AdminError(404, "group_not_found", f"no group {gid}")
        members = []
        for phone, admin in group.members:
            acct = self._phone(phone)
            members.append({"phone": phone, "jid": f"{phone}@s.whatsapp.net", "lid": f"{acct.lid}@lid",
                            "admin": admin or None})
        return {"id": group.id, "jid": group.jid, "subject": group.subject, "creator": group.creator,
                "created_at": group.created_at, "addressing_mode": group.addressing_mode, "members": members}

    def list_groups(self) -> list[dict[str, Any]]:
        return [self.group_json(g.id) for g in self.routing.list_groups()]

    def phone_messages(self, phone: object) -> list[dict[str, Any]]:
        """What was routed to the phone (device 0), oldest first: envelope and ciphertexts."""
        record = self._phone(phone)
        return [_stanza_json(n) for n in self.phone_inbox.get(record.phone, ())]

    def set_push_name(self, phone: object, name: object) -> dict[str, Any]:
        """The phone's user sets the account's name: later messages it writes carry it as `notify`."""
        if not isinstance(name, str) or not 0 < len(name.strip()) <= 100:
            raise AdminError(400, "invalid_name", "name must be 1..100 characters")
        number = self._phone(phone).phone
        self.phone_signal.router.sv.push_names[number] = name.strip()
        return {"phone": number, "push_name": name.strip()}

    def phone_send(self, phone: object, to: object, text: object) -> dict[str, Any]:
        """The phone's user sends ``text`` to a user (PN or LID JID) or a group, end-to-end encrypted."""
        return self.phone_signal.send_text(self._phone(phone).phone, to, text)

    def phone_received(self, phone: object) -> list[dict[str, Any]]:
        """Messages the phone received, decrypted: ``{id, chat, sender, t, text, from_me, error}``."""
        return self.phone_signal.received_json(self._phone(phone).phone)

    def phone_read(self, phone: object, ids: object) -> dict[str, Any]:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > 1000:
            raise AdminError(400, "invalid_ids", "ids must be a list of up to 1000 message ids")
        return {"read": self.phone_signal.mark_read(self._phone(phone).phone, ids)}



def _stanza_json(node: Node) -> dict[str, Any]:
    encs = [{"type": e.attrs.get("type"), "v": e.attrs.get("v"),
             "size": len(e.content) if isinstance(e.content, bytes) else 0} for e in node.children("enc")]
    return {"tag": node.tag, **{k: node.attrs[k] for k in sorted(node.attrs)}, "enc": encs}
