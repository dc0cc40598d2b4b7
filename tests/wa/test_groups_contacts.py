"""wa/groups.py and wa/contacts.py: stanzas and parsing row by row, then live against the sandbox."""

from __future__ import annotations

import pytest
from wa_helpers import PHONE, EngineFactory, link_by_qr

from evolink.sandbox.server import Sandbox
from evolink.wa import contacts, groups
from evolink.wa.events import GroupsUpsertEvent
from evolink.wa.message_send import NotConnected
from evolink.wire.binary import Node

BOB, CAROL, NOBODY = "15550002222", "15550003333", "15559990000"


def test_create_and_metadata_stanzas_are_baileys_shaped() -> None:
    node = groups.create_query("team", ["1@s.whatsapp.net", "2@lid"], "3EB0AA")
    assert node.attrs == {"to": "@g.us", "type": "set", "xmlns": "w:g2"}
    create = node.child("create")
    assert create is not None and create.attrs == {"subject": "team", "key": "3EB0AA"}
    assert [p.attrs["jid"] for p in create.children("participant")] == ["1@s.whatsapp.net", "2@lid"]
    part = groups.participating_query().child("participating")
    assert part is not None and [c.tag for c in part.children()] == ["participants", "description"]
    q = groups.metadata_query("123@g.us")
    assert q.attrs["to"] == "123@g.us" and q.child("query").attrs == {"request": "interactive"}  # type: ignore[union-attr]


def test_parse_group_lid_mode_with_every_flag() -> None:
    node = Node("group", {"id": "120363001", "subject": "s", "s_o": "9@lid", "s_o_pn": "1@s.whatsapp.net",
                          "s_t": "1700", "creation": "1600", "creator": "9@lid", "creator_pn": "1@s.whatsapp.net",
                          "creator_country_code": "1", "addressing_mode": "lid"}, [
        Node("participant", {"jid": "9@lid", "phone_number": "1@s.whatsapp.net", "type": "superadmin"}),
        Node("participant", {"jid": "8@lid", "phone_number": "2@s.whatsapp.net"}),
        Node("participant", {"jid": "garbage"}),
        Node("description", {"id": "D1", "participant": "9@lid", "t": "1650"}, [Node("body", {}, b"hello")]),
        Node("locked"), Node("announcement"), Node("ephemeral", {"expiration": "86400"}),
        Node("member_add_mode", {}, "all_member_add"), Node("membership_approval_mode"),
    ])
    g = groups.parse_group(node)
    assert g.id == "120363001@g.us" and g.addressing_mode == "lid" and g.size == 2
    assert (g.subject_owner, g.subject_owner_pn, g.subject_time, g.creation) == ("9@lid", "1@s.whatsapp.net", 1700, 1600)
    assert (g.owner, g.owner_pn, g.owner_country_code) == ("9@lid", "1@s.whatsapp.net", "1")
    assert (g.desc, g.desc_id, g.desc_owner, g.desc_time) == ("hello", "D1", "9@lid", 1650)
    assert g.restrict and g.announce and g.member_add_mode and g.join_approval_mode
    assert not g.is_community and g.ephemeral_duration == 86400
    assert g.participants[0] == groups.GroupParticipant("9@lid", "1@s.whatsapp.net", None, "superadmin")
    assert g.participants[1].admin is None and g.participants[1].lid is None


def test_parse_group_pn_mode_and_bad_replies() -> None:
    g = groups.parse_group(Node("group", {"id": "5-6", "subject": "old"}, [
        Node("participant", {"jid": "1@s.whatsapp.net", "lid": "9@lid", "type": "admin"})]))
    assert g.id == "5-6@g.us" and g.addressing_mode == "pn" and g.desc is None and not g.restrict
    assert g.participants == (groups.GroupParticipant("1@s.whatsapp.net", None, "9@lid", "admin"),)
    with pytest.raises(groups.GroupError):
        groups.parse_group(Node("group", {"subject": "no id"}))
    with pytest.raises(groups.GroupError):
        groups.parse_participating(Node("iq", {}, []))
    listed = groups.parse_participating(Node("iq", {}, [Node("groups", {}, [
        Node("group", {"id": "1"}), Node("group", {}), Node("group", {"id": "2"})])]))
    assert [g.id for g in listed] == ["1@g.us", "2@g.us"]  # the id-less one is skipped, not fatal


@pytest.mark.parametrize(("given", "want"), [
    ("120363001", "120363001@g.us"), ("120363001@g.us", "120363001@g.us"), (" 5-6@g.us ", "5-6@g.us"),
])
def test_group_jid_normalised(given: str, want: str) -> None:
    assert groups.normalise_group_jid(given) == want


@pytest.mark.parametrize("bad", ["", "abc", "1@s.whatsapp.net", "12a@g.us", "@g.us", "1@g.us@x"])
def test_malformed_group_jid_refused(bad: str) -> None:
    with pytest.raises(groups.GroupError) as info:
        groups.normalise_group_jid(bad)
    assert info.value.code == 400


def test_lookup_query_and_parse_keep_the_asked_order() -> None:
    q = contacts.lookup_query(["15550002222", "1555"], "s1")
    usync = q.child("usync")
    assert usync is not None and usync.attrs["context"] == "interactive" and usync.attrs["mode"] == "query"
    assert [c.tag for c in usync.child("query").children()] == ["contact", "lid"]  # type: ignore[union-attr]
    users = usync.child("list").children("user")  # type: ignore[union-attr]
    assert [u.child("contact").content for u in users] == ["+15550002222", "+1555"]  # type: ignore[union-attr]
    reply = Node("iq", {}, [Node("usync", {}, [Node("list", {}, [
        Node("user", {"jid": "1555@s.whatsapp.net"}, [Node("contact", {"type": "out"})]),
        Node("user", {"jid": "15550002222@s.whatsapp.net"}, [Node("contact", {"type": "in"}),
                                                             Node("lid", {"val": "77@lid"})]),
    ])])])
    got = contacts.parse_lookup(["15550002222", "1555", "42"], reply)
    assert got == [contacts.OnWhatsApp("15550002222", "15550002222@s.whatsapp.net", True, "77@lid"),
                   contacts.OnWhatsApp("1555", "1555@s.whatsapp.net", False, None),
                   contacts.OnWhatsApp("42", "42@s.whatsapp.net", False, None)]


# -------------------------------------------------------------------------------- live, sandbox


async def test_groups_and_lookup_against_the_sandbox(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    for p in (BOB, CAROL):
        sandbox.create_phone(p)
    engine, rec = make_engine(sandbox)
    with pytest.raises(NotConnected):
        await groups.participating_groups(engine)
    with pytest.raises(NotConnected):
        await contacts.on_whatsapp(engine, [BOB])
    await link_by_qr(sandbox, engine, rec)

    found = await contacts.on_whatsapp(engine, [BOB, NOBODY, CAROL])
    assert [(r.number, r.exists) for r in found] == [(BOB, True), (NOBODY, False), (CAROL, True)]
    bob_lid = sandbox.get_phone(BOB)["lid"].removesuffix("@lid")
    assert found[0].jid == f"{BOB}@s.whatsapp.net" and found[0].lid == f"{bob_lid}@lid"
    assert engine.messaging.lid_of[f"{BOB}@s.whatsapp.net"] == f"{bob_lid}@lid"

    created = await groups.create_group(engine, "Team", [f"{BOB}@s.whatsapp.net", f"{CAROL}@s.whatsapp.net"])
    assert created.subject == "Team" and created.size == 3 and created.id.endswith("@g.us")
    admins = {p.phone_number or p.id: p.admin for p in created.participants}
    assert admins[f"{PHONE}@s.whatsapp.net"] == "superadmin" and admins[f"{BOB}@s.whatsapp.net"] is None
    assert sandbox.group_json(created.id)["subject"] == "Team"  # the server really has it

    other = sandbox.create_group("Theirs", [BOB, PHONE])
    added = await rec.wait(GroupsUpsertEvent, lambda e: e.groups[0].id == other["jid"])
    assert added.groups[0].subject == "Theirs" and added.groups[0].size == 2 and added.author
    mine = [e for e in rec.of(GroupsUpsertEvent) if e.groups[0].id == created.id]  # our own create too
    assert [e.groups[0].subject for e in mine] == ["Team"]
    listed = {g.id: g for g in await groups.participating_groups(engine)}
    assert set(listed) == {created.id, other["jid"]}
    meta = await groups.group_metadata(engine, other["jid"].removesuffix("@g.us"))
    assert meta.subject == "Theirs" and meta.size == 2

    not_mine = sandbox.create_group("NotMine", [BOB, CAROL])
    with pytest.raises(groups.GroupError) as denied:
        await groups.group_metadata(engine, not_mine["jid"])
    assert denied.value.code == 403
    with pytest.raises(groups.GroupError) as unknown:
        await groups.group_metadata(engine, "120363999999@g.us")
    assert unknown.value.code == 404
    with pytest.raises(groups.GroupError) as not_admin:  # we are a plain member of "Theirs"
        await groups.promote(engine, other["jid"], [f"{BOB}@s.whatsapp.net"])
    assert not_admin.value.code == 401
    await groups.set_description(engine, created, "hello")
    await groups.promote(engine, created.id, [f"{BOB}@s.whatsapp.net"])
    again = await groups.group_metadata(engine, created.id)
    assert again.desc == "hello" and again.desc_id and again.size == 3
    assert {p.phone_number: p.admin for p in again.participants}[f"{BOB}@s.whatsapp.net"] == "admin"
    await groups.set_description(engine, again, "")
    assert (await groups.group_metadata(engine, created.id)).desc is None
    with pytest.raises(groups.GroupError) as bad:
        await groups.create_group(engine, "", [f"{BOB}@s.whatsapp.net"])
    assert bad.value.code == 400
