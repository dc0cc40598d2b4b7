"""The PyPI client `pyevolutionapi`, unmodified, on the chat and group routes (real HTTP, real engine)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chat_helpers import BOB, CAROL, NOBODY, PHONE, http_gateway, link, sandbox
from gw_helpers import GLOBAL_KEY, Receiver

from evolink.sandbox.server import Sandbox

__all__ = ["sandbox"]  # the fixture


async def test_pyevolutionapi_chat_and_group_calls(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    from pyevolutionapi import EvolutionClient

    async with http_gateway(tmp_path, sandbox) as (http, base_url):
        await link(http, sandbox, receiver, "py", PHONE)
        client = EvolutionClient(base_url=base_url, api_key=GLOBAL_KEY, timeout=30)

        numbers = await asyncio.to_thread(client.chat.whatsapp_numbers, "py", [BOB, NOBODY])
        assert [(n["jid"], n["exists"]) for n in numbers] == [(f"{BOB}@s.whatsapp.net", True),
                                                            (f"{NOBODY}@s.whatsapp.net", False)]

        # its GroupResponse model keeps none of Baileys' metadata fields (as with Evolution): no error is the check
        await asyncio.to_thread(client.group.create, "py", "From Python", "about", [BOB, CAROL])
        groups = await asyncio.to_thread(client.group.fetch_all_groups, "py", True)
        assert [(g.id.endswith("@g.us"), g.subject, g.size, len(g.participants or [])) for g in groups] == \
            [(True, "From Python", 3, 3)]

        await http.post("/message/sendText/py", json={"number": BOB, "text": "hello bob"})
        await asyncio.wait_for(_until_chats(http), 15)
        # (its models keep `id`, `pushName`, `unreadCount` and drop Evolution's `remoteJid`)
        raw = (await http.post("/chat/findContacts/py", json={"where": {"remoteJid": BOB}})).json()
        contacts = await asyncio.to_thread(client.chat.find_contacts, "py", {"remoteJid": BOB})
        assert [(c.id, c.push_name) for c in contacts] == [(raw[0]["id"], "")]  # our own message: ""
        chats = await asyncio.to_thread(client.chat.find_chats, "py")
        assert [(c.id, c.unread_count) for c in chats] == [(raw[0]["id"], 0)]


async def _until_chats(http: object) -> None:
    import httpx

    assert isinstance(http, httpx.AsyncClient)
    while True:
        if (await http.post("/chat/findChats/py")).json():
            return
        await asyncio.sleep(0.05)  # the chat feed runs after the send's event
