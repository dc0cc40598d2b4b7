"""Issue 11 acceptance (groups): a group of an evolink instance with a second evolink instance and a
simulated phone, real engines against the sandbox: a text to the group reaches both, answers come back
as MESSAGES_UPSERT, and findChats / findContacts / fetchAllGroups show them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from chat_helpers import BOB, PHONE, link, sandbox
from chat_helpers import gateway as _gateway
from gw_helpers import Receiver

from evolink.sandbox.server import Sandbox

PHONE2 = "15550004444"
__all__ = ["sandbox"]  # the fixture


def upserts(receiver: Receiver, instance: str, text: str) -> list[dict[str, Any]]:
    return [e["data"] for e in receiver.events("messages.upsert")
            if e["instance"] == instance and e["data"]["message"].get("conversation") == text]


async def phone_got(sb: Sandbox, phone: str, text: str, within: float = 15.0) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while True:
            for m in sb.phone_received(phone):
                if m.get("text") == text:
                    return m
            await asyncio.sleep(0.05)
    return await asyncio.wait_for(poll(), within)


async def test_group_of_two_instances_and_a_phone(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.create_phone(PHONE2)
    async with _gateway(tmp_path, sandbox) as (client, app):
        await link(client, sandbox, receiver, "one", PHONE)
        await link(client, sandbox, receiver, "two", PHONE2)

        resp = await client.post("/group/create/one", json={"subject": "Crew", "participants": [PHONE2, BOB]})
        assert resp.status_code == 201, resp.text
        group = resp.json()["id"]

        # the second instance learns it was added (w:gp2 notification): GROUPS_UPSERT once, with the author;
        # the creator's own GROUPS_UPSERT is sent once too, whichever path comes first
        def upserted(name: str) -> list[dict[str, Any]]:
            return [g for e in receiver.events("groups.upsert") if e["instance"] == name for g in e["data"]]
        await receiver.wait_for(lambda: bool(upserted("two")) and bool(upserted("one")), 15)
        [added] = upserted("two")
        assert added["id"] == group and added["subject"] == "Crew" and added["author"].endswith(("@lid", ".net"))
        assert [g["id"] for g in upserted("one")] == [group]

        # one -> group: the phone reads it decrypted, two gets MESSAGES_UPSERT
        resp = await client.post("/message/sendText/one", json={"number": group, "text": "hello crew"})
        assert resp.status_code == 201, resp.text
        got = await phone_got(sandbox, BOB, "hello crew")
        assert got["chat"] == group
        await receiver.wait_for(lambda: bool(upserts(receiver, "two", "hello crew")), 15)
        [seen] = upserts(receiver, "two", "hello crew")
        assert seen["key"]["remoteJid"] == group and seen["key"]["fromMe"] is False

        # answers: from the phone and from the second instance come back to one as MESSAGES_UPSERT
        sandbox.phone_send(BOB, group, "from bob")
        resp = await client.post("/message/sendText/two", json={"number": group, "text": "from two"})
        assert resp.status_code == 201, resp.text
        await receiver.wait_for(lambda: bool(upserts(receiver, "one", "from bob"))
                                and bool(upserts(receiver, "one", "from two")), 15)
        for text in ("from bob", "from two"):
            [answer] = upserts(receiver, "one", text)
            assert answer["key"]["remoteJid"] == group and answer["key"]["fromMe"] is False
            assert answer["key"].get("participant")
        await phone_got(sandbox, BOB, "from two")
        await app.state.chat_feed.drain()

        chats = (await client.post("/chat/findChats/one", json={"where": {"remoteJid": group}})).json()
        assert len(chats) == 1 and chats[0]["pushName"] == "Crew" and chats[0]["unreadCount"] == 2
        assert chats[0]["lastMessage"]["message"]["conversation"] in ("from bob", "from two")
        contacts = (await client.post("/chat/findContacts/one", json={"where": {"remoteJid": group}})).json()
        assert [(c["remoteJid"], c["isGroup"], c["type"]) for c in contacts] == [(group, True, "group")]
        for name in ("one", "two"):
            groups = (await client.get(f"/group/fetchAllGroups/{name}", params={"getParticipants": "true"})).json()
            assert [(g["id"], g["subject"], g["size"]) for g in groups] == [(group, "Crew", 3)]
        assert [g["id"] for g in upserted("one")] == [group] and len(upserted("two")) == 1  # still once each
        two_chats = (await client.post("/chat/findChats/two", json={})).json()
        assert [c["remoteJid"] for c in two_chats] == [group] and two_chats[0]["unreadCount"] == 2
