"""Groups over ``iq xmlns="w:g2"``: create a group and read its metadata (Baileys 7 ``groupCreate``
/ ``groupMetadata``).

Create: ``<iq to="@g.us" type="set" xmlns="w:g2"><create subject key><participant jid/>…``; the
answer carries the new ``<group>`` like a metadata query does. Participants are named as the caller
gives them (PN or LID user JIDs); the creator is implicit. The metadata's participants are listed
in the group's addressing namespace with the other one as an attribute (``phone_number`` on LID
groups, ``lid`` on PN groups); those pairs are learnt for Signal addressing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from evolink.wa import jids
from evolink.wa.connection import ConnectionLost, IqError, QueryTimeout
from evolink.wa.message_send import NotConnected, SendError
from evolink.wire.binary import Node
from evolink.wire.errors import DecodeError

if TYPE_CHECKING:
    from evolink.wa.engine import Engine
    from evolink.wa.messaging import Messaging

MAX_SUBJECT = 100
MAX_PARTICIPANTS = 1024


@dataclass(frozen=True, slots=True)
class Participant:
    jid: str  # in the group's addressing namespace
    phone_number: str | None
    lid: str | None
    admin: str | None  # "admin" | "superadmin" | None


@dataclass(frozen=True, slots=True)
class GroupInfo:
    jid: str
    subject: str
    owner: str | None
    creation: int
    addressing_mode: str  # "lid" | "pn"
    participants: tuple[Participant, ...]


def parse_group(reply: Node, m: Messaging | None = None) -> GroupInfo:
    group = reply.child("group")
    if group is None:
        raise SendError("w:g2 answer without <group>")
    a = group.attrs
    gid = a.get("id", "")
    if not gid:
        raise SendError("w:g2 <group> without id")
    members = []
    for p in group.children("participant"):
        jid = p.attrs.get("jid", "")
        if "@" not in jid:
            continue
        pn = p.attrs.get("phone_number") or (None if jids.is_lid(jid) else jid)
        lid = jid if jids.is_lid(jid) else p.attrs.get("lid")
        if m is not None:
            m.learn_pair(pn, lid)
        members.append(Participant(jid, pn, lid, p.attrs.get("type") or None))
    creation = a.get("creation", "")
    return GroupInfo(gid if "@" in gid else f"{gid}@{jids.GROUP_SERVER}", a.get("subject", ""),
                     a.get("creator") or None, int(creation) if creation.isdigit() else 0,
                     "lid" if a.get("addressing_mode") == "lid" else "pn", tuple(members))


async def _query(engine: Engine, node: Node, what: str) -> GroupInfo:
    conn = engine.live_connection()
    if conn is None:
        raise NotConnected(f"Connection Closed: the engine is {engine.state}, not open")
    try:
        reply = await conn.query(node)
    except ConnectionLost as exc:
        raise NotConnected(f"Connection Closed: {exc}") from None
    except (IqError, QueryTimeout) as exc:
        raise SendError(f"{what} failed: {exc}") from None
    return parse_group(reply, engine.messaging)


async def create_group(engine: Engine, subject: str, participants: list[str]) -> GroupInfo:
    """Create a group with us as superadmin; ``SendError`` when the server refuses."""
    if not 0 < len(subject) <= MAX_SUBJECT:
        raise ValueError(f"subject must be 1..{MAX_SUBJECT} characters")
    if len(participants) > MAX_PARTICIPANTS:
        raise ValueError(f"at most {MAX_PARTICIPANTS} participants")
    try:
        members = list(dict.fromkeys(jids.non_ad(p) for p in participants))
    except DecodeError as exc:
        raise ValueError(f"bad participant JID: {exc}") from None
    if any(jids.is_group(p) for p in members):
        raise ValueError("a participant must be a user JID")
    conn = engine.live_connection()
    key = jids.message_id(conn.creds.me_jid if conn is not None else None, engine.clock.time())
    node = Node("iq", {"to": f"@{jids.GROUP_SERVER}", "type": "set", "xmlns": "w:g2"}, [
        Node("create", {"subject": subject, "key": key}, [Node("participant", {"jid": p}) for p in members]),
    ])
    return await _query(engine, node, "group create")


async def group_metadata(engine: Engine, group: str) -> GroupInfo:
    if not jids.is_group(group):
        raise ValueError("not a group JID")
    node = Node("iq", {"to": group, "type": "get", "xmlns": "w:g2"}, [Node("query", {"request": "interactive"})])
    return await _query(engine, node, "group metadata")
