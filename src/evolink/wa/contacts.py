""""Is this number on WhatsApp?" by ``usync``, as Baileys 7.0.0-rc14 ``onWhatsApp`` asks it.

``<usync context="interactive" mode="query">`` with the ``contact`` and ``lid`` protocols, one
``<user><contact>+digits</contact></user>`` per number. The server echoes each user with its PN
JID and ``<contact type="in">`` for a WhatsApp account (``out`` otherwise) and, for accounts, its
``<lid val>``; users missing from the answer do not exist. The PN↔LID pairs are learnt for sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from evolink.wa import jids
from evolink.wa.connection import ConnectionLost, IqError, QueryTimeout
from evolink.wa.message_send import NotConnected, SendError
from evolink.wire.binary import SERVER_JID, Node

if TYPE_CHECKING:
    from evolink.wa.engine import Engine

MAX_NUMBERS = 500  # per query (the gateway splits larger lists)


class NumberLookupError(SendError):
    """The server refused or did not answer the lookup."""


@dataclass(frozen=True, slots=True)
class OnWhatsApp:
    number: str  # digits as asked
    jid: str  # the server's PN JID (or digits@s.whatsapp.net when absent)
    exists: bool
    lid: str | None = None


def lookup_query(numbers: list[str], sid: str) -> Node:
    return Node("iq", {"to": SERVER_JID, "type": "get", "xmlns": "usync"}, [
        Node("usync", {"context": "interactive", "mode": "query", "sid": sid, "last": "true", "index": "0"}, [
            Node("query", {}, [Node("contact"), Node("lid")]),
            Node("list", {}, [Node("user", {}, [Node("contact", {}, f"+{n}")]) for n in numbers]),
        ]),
    ])


def parse_lookup(numbers: list[str], reply: Node) -> list[OnWhatsApp]:
    """One result per asked number, in the asked order (matched on the JID's user part)."""
    usync = reply.child("usync")
    lst = usync.child("list") if usync is not None else None
    answered: dict[str, tuple[str, bool, str | None]] = {}
    for user in lst.children("user") if lst is not None else []:
        jid = user.attrs.get("jid", "")
        if "@" not in jid:
            continue
        contact = user.child("contact")
        lid_node = user.child("lid")
        lid = lid_node.attrs.get("val") if lid_node is not None else None
        exists = contact is not None and contact.attrs.get("type") == "in"
        answered[jid.split("@", 1)[0].split(":", 1)[0]] = (jids.non_ad(jid), exists,
                                                          lid if lid and "@" in lid else None)
    out = []
    for n in numbers:
        jid, exists, lid = answered.get(n, (f"{n}@{jids.PN_SERVER}", False, None))
        out.append(OnWhatsApp(n, jid, exists, lid))
    return out


async def on_whatsapp(engine: Engine, numbers: list[str], *, within: float | None = None) -> list[OnWhatsApp]:
    """Look up phone numbers (digits with country code) in chunks of ``MAX_NUMBERS``."""
    conn = engine.live_connection()
    if conn is None:
        raise NotConnected(f"Connection Closed: the engine is {engine.state}, not open")
    digits = [n for n in numbers if n.isdigit()]
    if len(digits) != len(numbers):
        raise ValueError("numbers must be digits only")
    out: list[OnWhatsApp] = []
    for start in range(0, len(numbers), MAX_NUMBERS):
        chunk = numbers[start:start + MAX_NUMBERS]
        try:
            reply = await conn.query(lookup_query(chunk, conn.next_id()), within=within)
        except ConnectionLost as exc:
            raise NotConnected(f"Connection Closed: {exc}") from None
        except (IqError, QueryTimeout) as exc:
            raise NumberLookupError(f"number lookup failed: {exc}") from None
        for r in parse_lookup(chunk, reply):
            if r.exists and r.lid:
                engine.messaging.learn_pair(r.jid, r.lid)
            out.append(r)
    return out
