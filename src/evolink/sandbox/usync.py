"""``iq xmlns="usync"``: device lists, LIDs and "is this number on WhatsApp" (shared/docs §4.2).

Each ``<user>`` of the ``<list>`` is named by ``jid`` (PN or LID, non-AD) or, for Baileys'
``onWhatsApp``, by ``<contact>+digits</contact>``. The answer echoes ``<user jid=<as asked>>`` (the
PN JID for a contact lookup) with one child per protocol of the ``<query>``:

- ``devices``: ``<devices><device-list>`` — device 0 without ``key-index``, companions with
  ``key-index`` ≥ 1 (Baileys drops non-zero devices without one) — in the namespace asked;
- ``lid``: ``<lid val="<lid>@lid"/>`` (Baileys cannot build sessions without it);
- ``contact``: ``<contact type="in|out"/>``; ``status``: empty with ``code="401"`` semantics
  avoided (an empty ``<status/>``); ``disappearing_mode``: ``duration="0"``.

An unknown user is echoed with an empty device list, ``contact type="out"`` and no ``lid``:
Baileys then sends a message with no ``<participants>``, which the router refuses with an ack
error. Protocols the sandbox does not model are left out of each user (clients skip them).
"""

from __future__ import annotations

from evolink.sandbox import stanzas
from evolink.sandbox.directory import Address
from evolink.sandbox.services import IqRequest, Services
from evolink.wire.binary import Node

MAX_USERS = 5000  # per usync query


def _user_answer(sv: Services, asked: str, addr: Address | None, protocols: list[str]) -> Node:
    kids: list[Node] = []
    for proto in protocols:
        if proto == "devices":
            devices: list[Node] = []
            if addr is not None:
                for device, key_index in sv.directory.devices(addr.phone):
                    attrs = {"id": str(device)}
                    if device:
                        attrs["key-index"] = str(max(key_index, 1))
                    devices.append(Node("device", attrs))
            kids.append(Node("devices", {}, [Node("device-list", {}, devices)]))
        elif proto == "lid" and addr is not None:
            kids.append(Node("lid", {"val": f"{addr.lid}@lid"}))
        elif proto == "contact":
            kids.append(Node("contact", {"type": "in" if addr is not None else "out"}))
        elif proto == "status" and addr is not None:
            kids.append(Node("status", {"t": "0"}))
        elif proto == "disappearing_mode" and addr is not None:
            kids.append(Node("disappearing_mode", {"duration": "0", "t": "0"}))
    return Node("user", {"jid": asked}, kids)


def query(sv: Services, req: IqRequest) -> Node:
    usync = req.first
    assert usync is not None
    q, listed = usync.child("query"), usync.child("list")
    if q is None or listed is None:
        return stanzas.error(req.iq, 400, "bad-request: usync needs <query> and <list>")
    protocols = [p.tag for p in q.children()]
    users = listed.children("user")
    if len(users) > MAX_USERS:
        return stanzas.error(req.iq, 400, f"bad-request: more than {MAX_USERS} users")
    answers = []
    for user in users:
        asked = user.attrs.get("jid")
        if asked is None:
            contact = stanzas.child_text(user, "contact")
            digits = (contact or "").strip().lstrip("+")
            if not digits.isdigit():
                continue
            asked = f"{digits}@s.whatsapp.net"
        addr = sv.directory.resolve(asked)
        if addr is not None and addr.device:
            addr = None  # usync names users, never devices
        answers.append(_user_answer(sv, asked, addr, protocols))
    attrs = {k: v for k, v in usync.attrs.items() if k in ("sid", "mode", "context", "last", "index")}
    return stanzas.result(req.iq, [Node("usync", attrs, [Node("list", {}, answers)])])
