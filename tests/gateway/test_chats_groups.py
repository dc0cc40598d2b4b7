"""Issue 11 (part 2): whatsappNumbers, findChats, findContacts, group create/fetchAllGroups/findGroupInfos
through the gateway with the real engine against the sandbox; bad input on every route."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from chat_helpers import BOB, CAROL, NOBODY, PHONE, link, sandbox
from chat_helpers import gateway as _gateway
from gw_helpers import Receiver, create_instance

from evolink.sandbox.server import Sandbox

__all__ = ["sandbox"]  # the fixture

def _message(resp: httpx.Response) -> Any:
    body = resp.json()
    assert set(body) == {"status", "error", "response"} and body["status"] == resp.status_code, body
    return body["response"]["message"]


async def test_groups_and_lookup_through_the_api(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    async with _gateway(tmp_path, sandbox) as (client, _):
        await link(client, sandbox, receiver, "acc", PHONE)

        resp = await client.post("/chat/whatsappNumbers/acc",
                                 json={"numbers": [f"+{BOB}", NOBODY, "status@broadcast", "777@lid"]})
        assert resp.status_code == 200, resp.text
        assert resp.json() == [
            {"jid": "status@broadcast", "exists": False, "number": "status@broadcast"},
            {"jid": f"{BOB}@s.whatsapp.net", "exists": True, "number": f"+{BOB}"},
            {"jid": f"{NOBODY}@s.whatsapp.net", "exists": False, "number": NOBODY},
            {"jid": "777@lid", "exists": True, "number": "777@lid", "lid": "lid"},
        ]

        resp = await client.post("/group/create/acc", json={"subject": "Team", "participants": [BOB, CAROL, NOBODY],
                                                            "profilePicture": "ignored"})
        assert resp.status_code == 201, resp.text
        group = resp.json()
        assert group["subject"] == "Team" and group["size"] == 3 and group["id"].endswith("@g.us")
        assert group["addressingMode"] == "lid" and group["restrict"] is False and "desc" not in group
        phones = {p.get("phoneNumber") for p in group["participants"]}
        assert phones == {f"{PHONE}@s.whatsapp.net", f"{BOB}@s.whatsapp.net", f"{CAROL}@s.whatsapp.net"}
        assert [p["admin"] for p in group["participants"] if p.get("phoneNumber") == f"{PHONE}@s.whatsapp.net"] \
            == ["superadmin"]
        await receiver.wait_for(lambda: bool(receiver.events("groups.upsert")))
        upsert = receiver.events("groups.upsert")
        # one GROUPS_UPSERT, from the API path or the server's w:gp2 notification (that one adds `author`)
        assert len(upsert) == 1 and [{k: v for k, v in g.items() if k != "author"} for g in upsert[0]["data"]] == [group]

        theirs = sandbox.create_group("Theirs", [BOB, PHONE])
        resp = await client.get("/group/fetchAllGroups/acc", params={"getParticipants": "false"})
        assert resp.status_code == 200, resp.text
        listed = {g["id"]: g for g in resp.json()}
        assert set(listed) == {group["id"], theirs["jid"]}
        assert "participants" not in listed[group["id"]] and listed[group["id"]]["pictureUrl"] is None
        with_members = (await client.get("/group/fetchAllGroups/acc", params={"getParticipants": "true"})).json()
        assert all(len(g["participants"]) == g["size"] for g in with_members)
        await receiver.wait_for(lambda: len(receiver.events("groups.upsert")) == 2)  # only "Theirs" is new
        assert [g["id"] for g in receiver.events("groups.upsert")[1]["data"]] == [theirs["jid"]]

        resp = await client.get("/group/findGroupInfos/acc", params={"groupJid": theirs["jid"].removesuffix("@g.us")})
        assert resp.status_code == 200, resp.text
        info = resp.json()
        assert info["subject"] == "Theirs" and info["size"] == 2 and len(info["participants"]) == 2

        resp = await client.post("/chat/whatsappNumbers/acc", json={"numbers": [theirs["jid"], "120363000000000001"]})
        assert resp.json() == [{"jid": theirs["jid"], "exists": True, "number": theirs["jid"], "name": "Theirs"},
                               {"jid": "120363000000000001@g.us", "exists": False, "number": "120363000000000001"}]

        resp = await client.post("/group/create/acc", json={"subject": "Described", "participants": [BOB, CAROL],
                                                            "description": "rules: be nice", "promoteParticipants": True})
        assert resp.status_code == 201, resp.text
        described = resp.json()
        assert described["desc"] == "rules: be nice" and described["descId"]
        assert described["descOwner"] and described["descTime"]
        assert sorted(str(p["admin"]) for p in described["participants"]) == ["admin", "admin", "superadmin"]

        not_mine = sandbox.create_group("NotMine", [BOB, CAROL])
        resp = await client.get("/group/findGroupInfos/acc", params={"groupJid": not_mine["jid"]})
        assert resp.status_code == 404 and _message(resp)[0] == "Error fetching group"


BAD_INPUT: list[tuple[str, str, Any, dict[str, str] | None, int]] = [
    ("POST", "/chat/whatsappNumbers/acc", {}, None, 400),
    ("POST", "/chat/whatsappNumbers/acc", {"numbers": []}, None, 400),
    ("POST", "/chat/whatsappNumbers/acc", {"numbers": "15550002222"}, None, 400),
    ("POST", "/chat/whatsappNumbers/acc", {"numbers": [15550002222]}, None, 400),
    ("POST", "/chat/whatsappNumbers/acc", {"numbers": ["1", "1"]}, None, 400),
    ("POST", "/chat/whatsappNumbers/acc", [1, 2], None, 400),
    ("POST", "/chat/findChats/acc", {"where": {"remoteJid": ""}}, None, 400),
    ("POST", "/chat/findChats/acc", {"where": "x"}, None, 400),
    ("POST", "/chat/findChats/acc", {"take": "ten"}, None, 400),
    ("POST", "/chat/findChats/acc", {"take": -1}, None, 400),
    ("POST", "/chat/findChats/acc", {"where": {"messageTimestamp": {"gte": "yesterday", "lte": "now"}}}, None, 400),
    ("POST", "/chat/findContacts/acc", {"where": {"pushName": ""}}, None, 400),
    ("POST", "/chat/findContacts/acc", {"offset": 0}, None, 400),
    ("POST", "/chat/findContacts/acc", {"page": "1"}, None, 400),
    ("POST", "/group/create/acc", {}, None, 400),
    ("POST", "/group/create/acc", {"subject": "x"}, None, 400),
    ("POST", "/group/create/acc", {"subject": 5, "participants": [BOB]}, None, 400),
    ("POST", "/group/create/acc", {"subject": "x", "participants": ["123"]}, None, 400),
    ("POST", "/group/create/acc", {"subject": "x", "participants": [BOB, BOB]}, None, 400),
    ("POST", "/group/create/acc", {"subject": "x", "participants": [BOB], "promoteParticipants": "yes"}, None, 400),
    ("POST", "/group/create/acc", {"subject": "x" * 1_000_000, "participants": [BOB]}, None, 400),
    ("POST", "/group/create/acc", {"subject": "x", "participants": ["1" * 1_000_000]}, None, 400),
    ("POST", "/chat/whatsappNumbers/acc", {"numbers": ["1" * 1_000_000]}, None, 400),
    ("POST", "/chat/findContacts/acc", {"where": {"pushName": "x" * 1_000_000}}, None, 400),
    ("GET", "/group/fetchAllGroups/acc", None, None, 400),
    ("GET", "/group/fetchAllGroups/acc", None, {"getParticipants": "maybe"}, 400),
    ("GET", "/group/findGroupInfos/acc", None, None, 400),
    ("GET", "/group/findGroupInfos/acc", None, {"groupJid": "abc@g.us"}, 400),
    ("GET", "/group/findGroupInfos/acc", None, {"groupJid": "1@s.whatsapp.net"}, 400),
    ("POST", "/group/create/nobody", {"subject": "x", "participants": [BOB]}, None, 404),
    ("GET", "/group/fetchAllGroups/nobody", None, {"getParticipants": "true"}, 404),
    ("POST", "/chat/findChats/nobody", {}, None, 404),
    ("POST", "/chat/findContacts/nobody", {}, None, 404),
    ("POST", "/chat/whatsappNumbers/nobody", {"numbers": [BOB]}, None, 404),
    ("GET", "/group/findGroupInfos/nobody", None, {"groupJid": "1@g.us"}, 404),
]


@pytest.mark.parametrize("provider", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_bad_input_and_closed_instance_get_evolution_envelopes(tmp_path: Path, sandbox: Sandbox,
                                                                     provider: str) -> None:
    async with _gateway(tmp_path, sandbox, provider) as (client, _):
        await create_instance(client, "acc")  # never connected: closed
        for method, path, body, params, status in BAD_INPUT:
            resp = await client.request(method, path, json=body, params=params)
            assert resp.status_code == status, (method, path, body, params, resp.text)
            _message(resp)
        assert _message(await client.get("/group/fetchAllGroups/acc")) == \
            ["The getParticipants needs to be informed in the query"]
        assert _message(await client.get("/group/fetchAllGroups/acc", params={"getParticipants": "x"})) == \
            [{"property": "getParticipants", "message": "getParticipants is not one of enum values: true,false"}]
        assert _message(await client.get("/group/findGroupInfos/acc")) == \
            ["The group id needs to be informed in the query", 'ex: "groupJid=120362@g.us"']
        assert _message(await client.get("/group/findGroupInfos/acc", params={"groupJid": "abc"}))[0]["property"] \
            == "groupJid"
        assert (await client.post("/chat/findChats/acc", headers={"apikey": "wrong"})).status_code == 401

        # Not connected: reads of the store work; anything that needs WhatsApp answers 4xx, never 500.
        assert (await client.post("/chat/findChats/acc")).json() == []
        assert (await client.post("/chat/findContacts/acc", json={})).json() == []
        resp = await client.post("/chat/whatsappNumbers/acc", json={"numbers": [BOB]})
        assert resp.status_code == 400 and _message(resp) == ["Connection Closed"]
        resp = await client.post("/group/create/acc", json={"subject": "x", "participants": [BOB]})
        assert resp.status_code == 400 and _message(resp) == ["Error creating group", "Error: Connection Closed"]
        resp = await client.get("/group/fetchAllGroups/acc", params={"getParticipants": "true"})
        assert resp.status_code == 400 and _message(resp) == ["Connection Closed"]
        resp = await client.get("/group/findGroupInfos/acc", params={"groupJid": "120363000000000001@g.us"})
        assert resp.status_code == 404 and _message(resp) == ["Error fetching group", "Error: Connection Closed"]
        # whatsappNumbers without any lookup to do needs no connection
        resp = await client.post("/chat/whatsappNumbers/acc", json={"numbers": ["status@broadcast"]})
        assert resp.status_code == 200
        assert sandbox.list_groups() == []  # nothing created half-way


@pytest.mark.parametrize("provider", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_published_message_records_feed_chats_and_contacts(tmp_path: Path, sandbox: Sandbox,
                                                                 receiver: Receiver, provider: str) -> None:
    """Whatever code publishes MESSAGES_UPSERT / SEND_MESSAGE, findChats and findContacts follow."""
    async with _gateway(tmp_path, sandbox, provider) as (client, app):
        created = await create_instance(client, "acc", receiver.url)
        ctx = app.state.gateway
        rt = await ctx.manager.get("acc")
        incoming = {"key": {"remoteJid": f"{BOB}@s.whatsapp.net", "fromMe": False, "id": "3A01"}, "pushName": "Bob",
                    "status": "DELIVERY_ACK", "message": {"conversation": "hi"}, "messageType": "conversation",
                    "messageTimestamp": 1_700_000_000, "instanceId": created["instance"]["instanceId"], "source": "ios"}
        sent = {**incoming, "key": {"remoteJid": f"{CAROL}@s.whatsapp.net", "fromMe": True, "id": "3EB0AA"},
                "pushName": "Você", "status": "PENDING", "source": "web", "messageTimestamp": 1_700_000_100}
        await ctx.publisher.publish(rt.ref, "messages.upsert", incoming)
        await ctx.publisher.publish(rt.ref, "send.message", sent)
        await ctx.publisher.publish(rt.ref, "connection.update", {"state": "open"})  # not a message: ignored
        await app.state.chat_feed.drain()

        chats = (await client.post("/chat/findChats/acc", json={})).json()
        assert [c["remoteJid"] for c in chats] == [f"{CAROL}@s.whatsapp.net", f"{BOB}@s.whatsapp.net"]
        bob = chats[1]
        assert bob["pushName"] == "Bob" and bob["unreadCount"] == 1 and bob["isSaved"] is True
        assert bob["lastMessage"]["key"]["id"] == "3A01" and bob["lastMessage"]["message"] == {"conversation": "hi"}
        assert chats[0]["lastMessage"]["pushName"] == "Você" and chats[0]["unreadCount"] == 0
        only = (await client.post("/chat/findChats/acc", json={"where": {"remoteJid": BOB}})).json()
        assert [c["remoteJid"] for c in only] == [f"{BOB}@s.whatsapp.net"]
        window = {"gte": "2023-11-14T22:13:00Z", "lte": 1_700_000_050_000}
        assert len((await client.post("/chat/findChats/acc", json={"where": {"messageTimestamp": window}})).json()) == 1
        huge = {"gte": -(10**30), "lte": 10**30}  # clamped to the column's range, never an overflow
        assert len((await client.post("/chat/findChats/acc", json={"where": {"messageTimestamp": huge}})).json()) == 2

        contacts = (await client.post("/chat/findContacts/acc", json={"where": {"remoteJid": BOB}})).json()
        assert [(c["remoteJid"], c["pushName"], c["type"]) for c in contacts] == \
            [(f"{BOB}@s.whatsapp.net", "Bob", "contact")]
        assert len((await client.post("/chat/findContacts/acc", json={"offset": 1, "page": 2})).json()) == 1
        await receiver.wait_for(lambda: len(receiver.events("chats.upsert")) == 2
                                and len(receiver.events("contacts.upsert")) == 2)
        assert receiver.events("contacts.upsert")[0]["data"]["pushName"] == "Bob"
