"""``iq xmlns="w:g2"``: group metadata, the groups one participates in, group create, and (admins
only) the description and promote/demote.

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
MAX_DESCRIPTION = 2048
ADMINS = ("admin", "superadmin")


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
    size = len(participants)
    described = sv.routing.get_description(group.id)
    if described is not None:
        did, body, author, t = described
        writer = sv.directory.account(author)
        participants.append(Node("description", {
            "id": did, "participant": "" if writer is None else writer.jid(group.addressing_mode == "lid"),
            "t": str(t)}, [Node("body", {}, body.encode())]))
    attrs = {"id": group.id, "subject": group.subject, "creation": str(group.created_at), "creator": creator_jid,
             "s_t": str(group.created_at), "s_o": creator_jid, "addressing_mode": group.addressing_mode,
             "size": str(size)}
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
    announce_created(sv, group)
    return stanzas.result(req.iq, [group_node(sv, group)], sender="g.us")


def announce_created(sv: Services, group: Group) -> None:
    """``<notification type="w:gp2" from=<group> participant=<creator>><create><group …/></create>`` to
    every companion device of every member (queued until acknowledged), as the server tells members
    they were added; Baileys turns it into ``groups.upsert``."""
    creator = sv.directory.account(group.creator)
    author = "" if creator is None else creator.jid(group.addressing_mode == "lid")
    body = group_node(sv, group)
    for phone, _admin in group.members:
        for device, _key_index in sv.directory.devices(phone):
            node = Node("notification", {"from": group.jid, "type": "w:gp2", "id": stanzas.new_id(),
                                         "participant": author, "t": str(group.created_at)},
                        [Node("create", {"type": "new", "key": group.id}, [body])])
            sv.deliver(phone, device, node)


def _admin_group(sv: Services, req: IqRequest) -> Group | Node:
    group = _group_of(sv, req)
    if isinstance(group, Node):
        return group
    if dict(group.members).get(req.phone) not in ADMINS:
        return stanzas.error(req.iq, 401, "not-authorized")
    return group


def description(sv: Services, req: IqRequest) -> Node:
    """``<description id [prev]><body>…</body></description>`` sets it, ``delete="true"`` clears it (admins)."""
    group = _admin_group(sv, req)
    if isinstance(group, Node):
        return group
    assert req.first is not None
    if req.first.attrs.get("delete") == "true":
        sv.routing.set_description(group.id, None)
        return stanzas.result(req.iq)
    body = stanzas.child_text(req.first, "body")
    did = req.first.attrs.get("id", "")
    if not did or body is None or len(body) > MAX_DESCRIPTION:
        return stanzas.error(req.iq, 400, f"bad-request: description needs an id and a body of 0..{MAX_DESCRIPTION}")
    sv.routing.set_description(group.id, (did[:64], body, req.phone, sv.host.clock.unix()))
    return stanzas.result(req.iq)


def promote_or_demote(sv: Services, req: IqRequest) -> Node:
    """``<promote|demote><participant jid/>…``: members only; each participant answered (``error`` if not one)."""
    group = _admin_group(sv, req)
    if isinstance(group, Node):
        return group
    assert req.first is not None
    members = dict(group.members)
    answered: list[Node] = []
    changed: list[str] = []
    for p in req.first.children("participant"):
        jid = p.attrs.get("jid", "")
        addr = sv.directory.resolve(jid)
        if addr is None or addr.phone not in members:
            answered.append(Node("participant", {"jid": jid[:64], "error": "404"}))
            continue
        if members[addr.phone] != "superadmin":
            changed.append(addr.phone)
        answered.append(Node("participant", {"jid": jid}))
    sv.routing.set_admin(group.id, changed, "admin" if req.first.tag == "promote" else "")
    return stanzas.result(req.iq, [Node(req.first.tag, {}, answered)])
