"""Group routes' logic: create, all participating groups, one group's info; the JSON shapes.

``group_json`` is Baileys' ``GroupMetadata`` as Evolution returns it from ``group/create`` and sends
in ``GROUPS_UPSERT`` (fields that Baileys leaves undefined are absent); ``group_info`` is the
narrower object of ``fetchAllGroups``/``findGroupInfos``. ``pictureUrl`` is always ``null``: evolink
does not fetch profile pictures (Evolution makes one query per group for it).

Every group seen is cached in the ``groups`` table (metadata JSON); a group first seen by
``create`` or ``fetchAllGroups`` is announced once by ``GROUPS_UPSERT``.
"""

from __future__ import annotations

import logging
from typing import Any

from evolink.gateway import names
from evolink.gateway.numbers import create_jid
from evolink.gateway.runtime import InstanceRuntime
from evolink.store.chats_repo import ChatStore
from evolink.wa import groups as wa_groups
from evolink.wa.contacts import on_whatsapp
from evolink.wa.engine import Engine
from evolink.wa.events import ConnectionState, EngineEvent, GroupsUpsertEvent
from evolink.wa.groups import GroupError, GroupMetadata, GroupParticipant
from evolink.wa.message_send import NotConnected, SendError

log = logging.getLogger("evolink.gateway.groups")


class InstanceNotOpen(Exception):
    """The instance has no open WhatsApp connection (the message is Baileys' "Connection Closed")."""


def live_engine(rt: InstanceRuntime) -> Engine:
    engine = rt.engine
    if rt.state != ConnectionState.OPEN or not isinstance(engine, Engine) or engine.live_connection() is None:
        raise InstanceNotOpen("Connection Closed")
    return engine


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def participant_json(p: GroupParticipant) -> dict[str, Any]:
    out: dict[str, Any] = {"id": p.id}
    if p.phone_number:
        out["phoneNumber"] = p.phone_number
    if p.lid:
        out["lid"] = p.lid
    out["admin"] = p.admin
    return out


def group_json(g: GroupMetadata) -> dict[str, Any]:
    """Baileys ``GroupMetadata`` (``extractGroupMetadata``), undefined fields left out."""
    base = _drop_none({
        "id": g.id, "addressingMode": g.addressing_mode, "subject": g.subject, "subjectOwner": g.subject_owner,
        "subjectOwnerPn": g.subject_owner_pn, "subjectTime": g.subject_time, "size": g.size, "creation": g.creation,
        "owner": g.owner, "ownerPn": g.owner_pn, "owner_country_code": g.owner_country_code, "desc": g.desc,
        "descId": g.desc_id, "descOwner": g.desc_owner, "descTime": g.desc_time, "linkedParent": g.linked_parent,
    })
    base.update({"restrict": g.restrict, "announce": g.announce, "isCommunity": g.is_community,
                 "isCommunityAnnounce": g.is_community_announce, "joinApprovalMode": g.join_approval_mode,
                 "memberAddMode": g.member_add_mode,
                 "participants": [participant_json(p) for p in g.participants]})
    if g.ephemeral_duration is not None:
        base["ephemeralDuration"] = g.ephemeral_duration
    return base


def group_info(g: GroupMetadata, *, participants: bool) -> dict[str, Any]:
    """Evolution's ``findGroup``/``fetchAllGroups`` element."""
    out: dict[str, Any] = _drop_none({"id": g.id, "subject": g.subject, "subjectOwner": g.subject_owner,
                                      "subjectTime": g.subject_time})
    out["pictureUrl"] = None
    out.update(_drop_none({"size": g.size, "creation": g.creation, "owner": g.owner, "desc": g.desc,
                           "descId": g.desc_id}))
    out.update({"restrict": g.restrict, "announce": g.announce})
    if participants:
        out["participants"] = [participant_json(p) for p in g.participants]
    out.update({"isCommunity": g.is_community, "isCommunityAnnounce": g.is_community_announce})
    if g.linked_parent:
        out["linkedParent"] = g.linked_parent
    return out


class GroupFailure(Exception):
    """A group call failed: ``messages`` for Evolution's envelope, ``status`` for the answer."""

    def __init__(self, status: int, *messages: str) -> None:
        super().__init__(*messages)
        self.status = status
        self.messages = list(messages)


class Groups:
    def __init__(self, rt: InstanceRuntime, chats: ChatStore) -> None:
        self.rt = rt
        self.chats = chats

    async def _remember(self, groups: list[GroupMetadata], author: str | None = None) -> None:
        """Cache the metadata; announce groups not seen before (GROUPS_UPSERT, one array; ``author``
        = who added us, from a ``w:gp2`` notification, as Baileys adds it)."""
        new = await self.chats.save_groups(self.rt.instance_id, [(g.id, g.subject, group_json(g)) for g in groups])
        if new:
            fresh = [group_json(g) | ({"author": author} if author else {}) for g in groups if g.id in set(new)]
            await self.rt.publisher.publish(self.rt.ref, names.GROUPS_UPSERT, fresh)

    async def create(self, subject: str, participants: list[str], *, description: str | None = None,
                     promote: bool = False) -> dict[str, Any]:
        """Evolution's ``createGroup``: participants not on WhatsApp are dropped silently; every
        failure answers ``["Error creating group", "<error>"]`` (400 here: never a 500)."""
        try:
            engine = live_engine(self.rt)
            wanted = [create_jid(p) for p in participants]
            phones = [j.split("@", 1)[0] for j in wanted if j.endswith("@s.whatsapp.net")]
            found = await on_whatsapp(engine, [n for n in phones if n.isdigit()])
            # LIDs are taken as existing (as Evolution does); groups and broadcasts are not members
            members = list(dict.fromkeys([r.jid for r in found if r.exists]
                                         + [j for j in wanted if j.endswith("@lid")]))
            group = await wa_groups.create_group(engine, subject, members)
            if description:
                await wa_groups.set_description(engine, group, description)
            if promote:
                await wa_groups.promote(engine, group.id, [p.id for p in group.participants if p.admin is None])
            if description or promote:
                group = await wa_groups.group_metadata(engine, group.id)
        except (InstanceNotOpen, NotConnected, SendError, GroupError) as exc:
            raise GroupFailure(400, "Error creating group", f"Error: {exc}") from None
        await self._remember([group])
        return group_json(group)

    async def fetch_all(self, get_participants: bool) -> list[dict[str, Any]]:
        try:
            engine = live_engine(self.rt)
            groups = await wa_groups.participating_groups(engine)
        except (InstanceNotOpen, NotConnected, GroupError) as exc:
            raise GroupFailure(400, str(exc)) from None
        await self._remember(groups)
        return [group_info(g, participants=get_participants) for g in groups]

    async def find(self, group_jid: str) -> dict[str, Any]:
        """Evolution answers 404 ``["Error fetching group", "<error>"]`` for any failure."""
        try:
            engine = live_engine(self.rt)
            group = await wa_groups.group_metadata(engine, group_jid)
        except (InstanceNotOpen, NotConnected, GroupError) as exc:
            raise GroupFailure(404, "Error fetching group", f"Error: {exc}") from None
        await self._remember([group])
        return group_info(group, participants=True)

    async def lookup_group(self, jid: str) -> GroupMetadata | None:
        """For ``whatsappNumbers``: the group's metadata, or None when it cannot be read."""
        try:
            group = await wa_groups.group_metadata(live_engine(self.rt), jid)
        except (InstanceNotOpen, NotConnected, GroupError):
            return None
        await self._remember([group])
        return group


class GroupEvents:
    """Runtime event hook: a ``GroupsUpsertEvent`` (we were added to a new group) is cached and
    announced once by ``GROUPS_UPSERT``, unless the instance's ``groupsIgnore`` setting is on (as in
    Evolution). A group we created through the API is announced by whichever comes first."""

    def __init__(self, chats: ChatStore) -> None:
        self.chats = chats

    async def on_event(self, rt: InstanceRuntime, ev: EngineEvent) -> None:
        if not isinstance(ev, GroupsUpsertEvent):
            return
        setting = await rt.store.get_setting(rt.instance_id)
        if setting is not None and setting.groups_ignore:
            return
        await Groups(rt, self.chats)._remember([g for g in ev.groups if isinstance(g, GroupMetadata)], ev.author)
