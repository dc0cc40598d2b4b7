""""Is this number on WhatsApp?": a usync contact lookup (Baileys 7 ``onWhatsApp``).

``<usync context="interactive" mode="query">`` with the ``contact`` and ``lid`` protocols and one
``<user><contact>+digits</contact></user>`` per number. The server answers each user with
``jid`` = the PN JID and ``<contact type="in"|"out">``; ``in`` means registered. A ``<lid val>``
in the answer teaches the PN↔LID pair, as usync device queries do. LID JIDs cannot be looked up
this way (Baileys skips them too); numbers are digits with an optional leading ``+``.
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

MAX_NUMBERS = 500  # per call (one usync query)


@dataclass(frozen=True, slots=True)
class OnWhatsApp:
    number: str  # digits, as asked
    jid: str  # the PN user JID
    exists: bool
    lid: str | None  # the LID user JID when the server told it


def digits_of(number: str) -> str:
    raw = number.strip().split("@")[0].split(":")[0].removeprefix("+")
    if not raw.isdigit() or not 5 <= len(raw) <= 20:
        raise ValueError(f"not a phone number: {number[:32]!r}")
    return raw


def query(numbers: list[str], sid: str) -> Node:
    return Node("iq", {"to": SERVER_JID, "type": "get", "xmlns": "usync"}, [
        Node("usync", {"context": "interactive", "mode": "query", "sid": sid, "last": "true", "index": "0"}, [
            Node("query", {}, [Node("contact"), Node("lid")]),
            Node("list", {}, [Node("user", {}, [Node("contact", {}, f"+{n}")]) for n in numbers]),
        ]),
    ])


def parse(reply: Node) -> dict[str, tuple[bool, str | None]]:
    """PN user JID → (registered, LID user JID or None)."""
    usync = reply.child("usync")
    listed = usync.child("list") if usync is not None else None
    if listed is None:
        raise SendError("usync reply without usync/list")
    out: dict[str, tuple[bool, str | None]] = {}
    for user in listed.children("user"):
        jid = user.attrs.get("jid", "")
        if "@" not in jid:
            continue
        contact = user.child("contact")
        lid_node = user.child("lid")
        lid = lid_node.attrs.get("val") if lid_node is not None else None
        out[jids.non_ad(jid)] = (contact is not None and contact.attrs.get("type") == "in",
                                 lid if lid and jids.is_lid(lid) else None)
    return out


async def on_whatsapp(engine: Engine, numbers: list[str]) -> list[OnWhatsApp]:
    """One entry per distinct number, in the order asked. ``ValueError`` for a malformed number,
    ``SendError`` (``NotConnected``) when the lookup cannot be made."""
    if len(numbers) > MAX_NUMBERS:
        raise ValueError(f"at most {MAX_NUMBERS} numbers per lookup")
    wanted = list(dict.fromkeys(digits_of(n) for n in numbers))
    if not wanted:
        return []
    conn = engine.live_connection()
    if conn is None:
        raise NotConnected(f"Connection Closed: the engine is {engine.state}, not open")
    try:
        answered = parse(await conn.query(query(wanted, conn.next_id())))
    except ConnectionLost as exc:
        raise NotConnected(f"Connection Closed: {exc}") from None
    except (IqError, QueryTimeout) as exc:
        raise SendError(f"contact lookup failed: {exc}") from None
    out = []
    for n in wanted:
        jid = f"{n}@{jids.PN_SERVER}"
        exists, lid = answered.get(jid, (False, None))
        if lid is not None:
            engine.messaging.learn_pair(jid, lid)
        out.append(OnWhatsApp(n, jid, exists, lid))
    return out
