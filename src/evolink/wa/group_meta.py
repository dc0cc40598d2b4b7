"""Group metadata as ``w:g2`` answers and ``w:gp2`` notifications carry it, parsed like Baileys 7.0.0-rc14
``extractGroupMetadata`` (sans-I/O; ``wa/groups.py`` does the queries).

``<group id>`` carries the user part **without** ``@g.us``; ``s_o``/``s_t`` are the subject's owner
and time, ``creator`` the owner; in ``lid`` addressing mode participants are LID JIDs with
``phone_number``, else PN JIDs with ``lid``; ``type`` is ``admin``/``superadmin``; flags are the
presence of ``locked``, ``announcement``, ``parent``, ``default_sub_group``,
``membership_approval_mode``; ``<member_add_mode>`` text ``all_member_add`` means any member may add.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evolink.wa import jids
from evolink.wa.message_send import SendError
from evolink.wire.binary import Node

if TYPE_CHECKING:
    from evolink.wa.messaging import Messaging

log = logging.getLogger("evolink.wa.groups")


class GroupError(SendError):
    """The server refused or did not answer a group query (``code`` = its error code, 0 if none)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class InvalidGroupInput(GroupError, ValueError):
    """Refused before asking the server (empty or long subject, not a group JID): code 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


@dataclass(frozen=True, slots=True)
class GroupParticipant:
    id: str  # in the group's addressing namespace
    phone_number: str | None = None  # PN JID of a LID participant
    lid: str | None = None  # LID JID of a PN participant
    admin: str | None = None  # "admin" | "superadmin" | None

    @property
    def jid(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class GroupMetadata:
    id: str  # full JID (…@g.us)
    subject: str
    addressing_mode: str  # "pn" | "lid"
    subject_owner: str | None = None
    subject_owner_pn: str | None = None
    subject_time: int | None = None
    creation: int | None = None
    owner: str | None = None
    owner_pn: str | None = None
    owner_country_code: str | None = None
    desc: str | None = None
    desc_id: str | None = None
    desc_owner: str | None = None
    desc_time: int | None = None
    linked_parent: str | None = None
    restrict: bool = False
    announce: bool = False
    is_community: bool = False
    is_community_announce: bool = False
    join_approval_mode: bool = False
    member_add_mode: bool = False
    ephemeral_duration: int | None = None
    participants: tuple[GroupParticipant, ...] = ()

    @property
    def size(self) -> int:
        return len(self.participants)

    @property
    def jid(self) -> str:
        """The group JID (alias of ``id``)."""
        return self.id


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


def _jid(value: str | None) -> str | None:
    return value if value and "@" in value else None


def _text(node: Node | None) -> str | None:
    if node is None:
        return None
    c = node.content
    if isinstance(c, bytes):
        return c.decode("utf-8", "replace")
    return c if isinstance(c, str) else None


def group_jid(group_id: str) -> str:
    """``<group id>`` is the user part; a full JID is kept as it is."""
    return group_id if "@" in group_id else f"{group_id}@{jids.GROUP_SERVER}"


def parse_group(node: Node) -> GroupMetadata:
    """One ``<group>`` element → ``GroupMetadata`` (``GroupError`` when it has no id)."""
    a = node.attrs
    gid = a.get("id", "")
    if not gid:
        raise GroupError("group metadata without an id")
    lid_mode = a.get("addressing_mode") == "lid"
    participants = []
    for p in node.children("participant"):
        pjid = _jid(p.attrs.get("jid"))
        if pjid is None:
            continue
        participants.append(GroupParticipant(
            id=pjid,
            phone_number=_jid(p.attrs.get("phone_number")) if jids.is_lid(pjid) else None,
            lid=_jid(p.attrs.get("lid")) if not jids.is_lid(pjid) else None,
            admin=p.attrs.get("type") or None))
    desc = node.child("description")
    body = desc.child("body") if desc is not None else None
    ephemeral = node.child("ephemeral")
    add_mode = node.child("member_add_mode")
    parent = node.child("linked_parent")
    return GroupMetadata(
        id=group_jid(gid), subject=a.get("subject", ""), addressing_mode="lid" if lid_mode else "pn",
        subject_owner=_jid(a.get("s_o")), subject_owner_pn=_jid(a.get("s_o_pn")), subject_time=_int(a.get("s_t")),
        creation=_int(a.get("creation")), owner=_jid(a.get("creator")), owner_pn=_jid(a.get("creator_pn")),
        owner_country_code=a.get("creator_country_code") or None,
        desc=_text(body),
        desc_id=desc.attrs.get("id") if desc is not None else None,
        desc_owner=_jid(desc.attrs.get("participant")) if desc is not None else None,
        desc_time=_int(desc.attrs.get("t")) if desc is not None else None,
        linked_parent=_jid(parent.attrs.get("jid")) if parent is not None else None,
        restrict=node.child("locked") is not None, announce=node.child("announcement") is not None,
        is_community=node.child("parent") is not None,
        is_community_announce=node.child("default_sub_group") is not None,
        join_approval_mode=node.child("membership_approval_mode") is not None,
        member_add_mode=_text(add_mode) == "all_member_add",
        ephemeral_duration=_int(ephemeral.attrs.get("expiration")) if ephemeral is not None else None,
        participants=tuple(participants))


def parse_participating(reply: Node) -> list[GroupMetadata]:
    groups = reply.child("groups")
    if groups is None:
        raise GroupError("participating reply without <groups>")
    out = []
    for g in groups.children("group"):
        try:
            out.append(parse_group(g))
        except GroupError as exc:
            log.warning("group skipped: %s", exc)
    return out


def learn_pairs(m: Messaging, group: GroupMetadata) -> None:
    for p in group.participants:
        if p.phone_number:
            m.learn_pair(p.phone_number, p.id)
        elif p.lid:
            m.learn_pair(p.id, p.lid)
