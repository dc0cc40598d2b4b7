"""``iq xmlns="w:g2"``: group metadata, the groups one participates in, and group create.

Caveats (shared/docs/wa-messaging.md §5.5): ``<group id>`` carries the user part **without**
``@g.us`` (whatsmeow builds the JID from it); participants are listed as LID JIDs with
``phone_number`` in ``lid`` addressing mode (PN JIDs with ``lid`` otherwise); the creator is
``superadmin``. Only members may read a group's metadata (others get ``403 forbidden``, a guess).
"""

from __future__ import annotations

from evolink.sandbox import stanzas
from evolink.sandbox.directory import GROUP_SERVER, parse_jid
from evolink.sandbox.routing_store import Group
from evolink.sandbox.services import IqRequest, Services
from evolink.wire.binary import Node

MAX_SUBJECT = 100
MAX_MEMBERS = 1024


def group_node(sv: Services, group: Group) -> Node:
    participants = []
    for phone, admin in group.members:
        acct = sv.directory.account(phone)
        if acct is None:
            continue
        pn, lid = f"{acct.phone}@s.whatsapp.net", f"{acct.lid}@lid"
        attrs = {"jid": lid, "phone_number": pn} if group.addressing_mode == "lid" else {"jid": pn, "lid": lid}
        if admin:
            attrs["type"] = admin
        participants.append(Node("participant", attrs))
    creator = sv.directory.account(group.creator)
    creator_jid = "" if creator is None else creator.jid(group.addressing_mode == "lid")
    attrs = {"id": group.id, "subject": group.subject, "creation": str(group.created_at), "creator": creator_jid,
             "s_t": str(group.created_at), "s_o": creator_jid, "addressing_mode": group.addressing_mode,
             "size": str(len(participants))}
    return Node("group", attrs, participants)


def _group_of(sv: Services, req: IqRequest) -> Group | Node:
    """The group an iq is addressed to, or the error answer."""
    jid = parse_jid(req.iq.attrs.get("to"))
    if jid is None or jid.server != GROUP_SERVER:
        return stanzas.error(req.iq, 400, "bad-request: to must be a group JID")
    group = sv.routing.get_group(jid.user)
    if group is None:
        return stanzas.error(req.iq, 404, "item-not-found")
    if req.phone not in {p for p, _ in group.members}:
        return stanzas.error(req.iq, 403, "forbidden")
    return group


def metadata(sv: Services, req: IqRequest) -> Node:
    group = _group_of(sv, req)
    if isinstance(group, Node):
        return group
    return stanzas.result(req.iq, [group_node(sv, group)], sender=group.jid)


def participating(sv: Services, req: IqRequest) -> Node:
    groups = [group_node(sv, g) for g in sv.routing.groups_of(req.phone)]
    return stanzas.result(req.iq, [Node("groups", {}, groups)])


def create(sv: Services, req: IqRequest) -> Node:
    """``<create subject=…><participant jid=…/>…</create>`` from a client: the sender is superadmin."""
    assert req.first is not None
    subject = req.first.attrs.get("subject", "")
    if not subject or len(subject) > MAX_SUBJECT:
        return stanzas.error(req.iq, 400, f"bad-request: subject must be 1..{MAX_SUBJECT} characters")
    members: list[tuple[str, str]] = [(req.phone, "superadmin")]
    for p in req.first.children("participant"):
        addr = sv.directory.resolve(p.attrs.get("jid"))
        if addr is None:
            return stanzas.error(req.iq, 400, f"bad-request: unknown participant {p.attrs.get('jid', '')[:64]}")
        if addr.phone not in {m for m, _ in members}:
            members.append((addr.phone, ""))
    if len(members) > MAX_MEMBERS:
        return stanzas.error(req.iq, 400, f"bad-request: more than {MAX_MEMBERS} participants")
    group = sv.routing.create_group(subject, req.phone, members, sv.host.clock.unix())
    return stanzas.result(req.iq, [group_node(sv, group)], sender="g.us")
