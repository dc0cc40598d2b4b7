"""Groups over ``iq xmlns="w:g2"``: create, the groups we participate in, one group's metadata.

Stanzas as Baileys 7.0.0-rc14 sends them (``groups.ts``):

- create: ``<iq to="@g.us" type="set" xmlns="w:g2"><create subject key><participant jid/>…</create>``
  (``key`` is a fresh message id; the server answers ``<group>``);
- all participating: ``<iq to="@g.us" type="get" xmlns="w:g2"><participating><participants/>
  <description/></participating>`` → ``<groups><group>…</groups>``;
- metadata: ``<iq to=<group jid> type="get" xmlns="w:g2"><query request="interactive"/>``.

Answers are parsed by ``wa/group_meta.py`` (Baileys' ``extractGroupMetadata``). Learnt PN↔LID pairs
go to the messaging state, as the send path does. A ``w:gp2`` notification with ``<create>`` (we
were added to a new group) becomes a ``GroupsUpsertEvent``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from evolink.wa import jids
from evolink.wa.connection import ConnectionLost, IqError, QueryTimeout
from evolink.wa.group_meta import (
    GroupError,
    GroupMetadata,
    GroupParticipant,
    InvalidGroupInput,
    group_jid,
    learn_pairs,
    parse_group,
    parse_participating,
)
from evolink.wa.message_send import NotConnected
from evolink.wire.binary import Node
from evolink.wire.errors import DecodeError

if TYPE_CHECKING:
    from evolink.wa.engine import Engine

log = logging.getLogger("evolink.wa.groups")

__all__ = ["GroupError", "GroupMetadata", "GroupParticipant", "InvalidGroupInput", "create_group", "group_jid", "group_metadata",
           "parse_group", "parse_participating", "participating_groups", "promote", "set_description"]

GROUP_SERVER_JID = "@g.us"
MAX_SUBJECT = 100  # WhatsApp's subject limit (characters)


# ---------------------------------------------------------------------------------- stanzas


def create_query(subject: str, participants: list[str], key: str) -> Node:
    return Node("iq", {"to": GROUP_SERVER_JID, "type": "set", "xmlns": "w:g2"}, [
        Node("create", {"subject": subject, "key": key}, [Node("participant", {"jid": p}) for p in participants]),
    ])


def participating_query() -> Node:
    return Node("iq", {"to": GROUP_SERVER_JID, "type": "get", "xmlns": "w:g2"}, [
        Node("participating", {}, [Node("participants"), Node("description")]),
    ])


def metadata_query(group: str) -> Node:
    return Node("iq", {"to": group, "type": "get", "xmlns": "w:g2"}, [Node("query", {"request": "interactive"})])


def normalise_group_jid(group: str) -> str:
    """``120363…`` or ``120363…@g.us`` → the group JID (``GroupError`` for anything else)."""
    candidate = group_jid(group.strip())
    try:
        j = jids.parse(candidate)
    except DecodeError:
        raise InvalidGroupInput(f"not a group JID: {group[:64]!r}") from None
    if j.server != jids.GROUP_SERVER or not j.user or not all(c.isdigit() or c == "-" for c in j.user):
        raise InvalidGroupInput(f"not a group JID: {group[:64]!r}")
    return f"{j.user}@{j.server}"


# ---------------------------------------------------------------------------------- engine calls


async def _query(engine: Engine, node: Node, within: float | None) -> Node:
    conn = engine.live_connection()
    if conn is None:
        raise NotConnected(f"Connection Closed: the engine is {engine.state}, not open")
    try:
        return await conn.query(node, within=within)
    except ConnectionLost as exc:
        raise NotConnected(f"Connection Closed: {exc}") from None
    except IqError as exc:
        raise GroupError(exc.text, exc.code) from None
    except QueryTimeout as exc:
        raise GroupError(str(exc), 408) from None


async def create_group(engine: Engine, subject: str, participants: list[str], *,
                       within: float | None = None) -> GroupMetadata:
    """Create a group with us as superadmin; ``participants`` are user JIDs (PN or LID)."""
    if not subject.strip() or len(subject) > MAX_SUBJECT:
        raise InvalidGroupInput(f"the subject must be 1..{MAX_SUBJECT} characters")
    conn = engine.live_connection()
    me = conn.creds.me_jid if conn is not None else None
    key = jids.message_id(me, engine.clock.time())
    reply = await _query(engine, create_query(subject, participants, key), within)
    node = reply.child("group")
    if node is None:
        raise GroupError("create reply without <group>")
    group = parse_group(node)
    learn_pairs(engine.messaging, group)
    log.info("group created", extra={"group": group.id, "size": group.size})
    return group


async def group_metadata(engine: Engine, group: str, *, within: float | None = None) -> GroupMetadata:
    reply = await _query(engine, metadata_query(normalise_group_jid(group)), within)
    node = reply.child("group")
    if node is None:
        raise GroupError("metadata reply without <group>")
    meta = parse_group(node)
    learn_pairs(engine.messaging, meta)
    return meta


async def participating_groups(engine: Engine, *, within: float | None = None) -> list[GroupMetadata]:
    groups = parse_participating(await _query(engine, participating_query(), within))
    for g in groups:
        learn_pairs(engine.messaging, g)
    return groups


def description_query(group: str, description: str, prev: str | None, new_id: str) -> Node:
    """Baileys ``groupUpdateDescription``: ``<description id [prev]><body>`` (``delete="true"`` to clear)."""
    attrs = {"id": new_id} if description else {"delete": "true"}
    if prev:
        attrs["prev"] = prev
    body = [Node("body", {}, description.encode())] if description else None
    return Node("iq", {"to": group, "type": "set", "xmlns": "w:g2"}, [Node("description", attrs, body)])


def participants_query(group: str, action: str, participants: list[str]) -> Node:
    """Baileys ``groupParticipantsUpdate``: ``<add|remove|promote|demote><participant jid/>…``."""
    return Node("iq", {"to": group, "type": "set", "xmlns": "w:g2"}, [
        Node(action, {}, [Node("participant", {"jid": p}) for p in participants]),
    ])


async def set_description(engine: Engine, group: GroupMetadata, description: str, *,
                          within: float | None = None) -> None:
    conn = engine.live_connection()
    me = conn.creds.me_jid if conn is not None else None
    await _query(engine, description_query(group.id, description, group.desc_id,
                                           jids.message_id(me, engine.clock.time())), within)


async def promote(engine: Engine, group: str, participants: list[str], *, within: float | None = None) -> None:
    if participants:
        await _query(engine, participants_query(group, "promote", participants), within)
