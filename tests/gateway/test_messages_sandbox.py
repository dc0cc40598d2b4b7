"""Issue 11 acceptance: the gateway with the real engine and the sandbox; an unmodified Evolution
client (pyevolutionapi) sends, a simulated phone reads and answers, the webhook and findMessages see both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from gw_helpers import GLOBAL_KEY, Receiver
from test_acceptance import fast_engines, gw_settings, http_gateway

from evolink.sandbox.server import Sandbox

PHONE = "15550001111"
BOB = "15550002222"
BOB_JID = f"{BOB}@s.whatsapp.net"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(qr_first_ttl=5.0, qr_next_ttl=1.0, link_timeout=5.0) as sb:
        sb.create_phone(PHONE)
        sb.create_phone(BOB)
        yield sb


async def until(pred: Callable[[], bool], within: float = 15.0) -> None:
    """Bounded wait on sandbox-side state (it has no event to wait on)."""
    async def poll() -> None:
        while not pred():  # noqa: ASYNC110 - no event for sandbox phone state
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), within)


def _opened(receiver: Receiver, name: str) -> bool:
    return any(e["instance"] == name and e["data"].get("state") == "open" for e in receiver.events("connection.update"))


async def link(client: Any, sandbox: Sandbox, receiver: Receiver, name: str, phone: str) -> None:
    await asyncio.to_thread(client.instance.create, name, qrcode=False,
                            webhook={"url": receiver.url, "events": [], "byEvents": True})
    answer = await asyncio.to_thread(client.instance.connect, name)
    assert answer.code, answer
    await sandbox.scan(phone, answer.code)
    await receiver.wait_for(lambda: _opened(receiver, name), 20)


async def test_send_and_receive_with_pyevolutionapi(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    from pyevolutionapi import EvolutionClient

    async with http_gateway(gw_settings(tmp_path, sandbox), engine_factory=fast_engines(sandbox)) as base_url:
        client = EvolutionClient(base_url=base_url, api_key=GLOBAL_KEY, timeout=30)
        await link(client, sandbox, receiver, "acc", PHONE)

        # pyevolutionapi 0.1.1 builds and posts the request (TextMessage → /message/sendText), but its
        # MessageResponse model wants `message.key`, which Evolution 2.3.7's answer does not have
        # (`message` is the content, e.g. {"conversation": …}): `send_text` raises on a real Evolution
        # server too. So the request goes through the client's own model and transport, and the answer
        # is read as Evolution's record.
        from pyevolutionapi.models.message import TextMessage

        with pytest.raises(Exception, match=r"message\.key"):
            await asyncio.to_thread(client.messages.send_text, "acc", BOB, "hello from evolink")
        await until(lambda: len(sandbox.phone_received(BOB)) == 1)
        body = TextMessage(number=BOB, text="hello again").dict_for_api()
        sent = await asyncio.to_thread(client.messages._post, "/message/sendText/acc", json=body)
        assert sent["status"] == "PENDING" and sent["message"]["conversation"] == "hello again"
        mid = sent["key"]["id"]
        assert mid is not None and mid.startswith("3EB0")
        await until(lambda: any(m["id"] == mid for m in sandbox.phone_received(BOB)))
        got = next(m for m in sandbox.phone_received(BOB) if m["id"] == mid)
        assert got["text"] == "hello again" and got["error"] is None  # decrypted by the phone

        answer = sandbox.phone_send(BOB, f"{PHONE}@s.whatsapp.net", "hello back")
        await receiver.wait_for(lambda: any(e["data"]["key"]["id"] == answer["id"]
                                            for e in receiver.events("messages.upsert")), 15)
        upsert = next(e for e in receiver.events("messages.upsert") if e["data"]["key"]["id"] == answer["id"])
        data = upsert["data"]
        assert data["key"]["remoteJid"] == BOB_JID and data["key"]["fromMe"] is False
        assert data["message"]["conversation"] == "hello back" and data["pushName"] == "Phone 2222"
        assert data["status"] == "DELIVERY_ACK" and upsert["instance"] == "acc"
        sends = [r for r in receiver.received if r.body["event"] == "send.message"]
        assert len(sends) == 2 and sends[1].path == "/send-message" and sends[1].body["data"]["key"]["id"] == mid
        assert next(r for r in receiver.received if r.body["event"] == "messages.upsert").path == "/messages-upsert"

        # the phone reads our message: MESSAGES_UPDATE READ
        sandbox.phone_read(BOB, [mid])
        await receiver.wait_for(lambda: any(e["data"]["keyId"] == mid and e["data"]["status"] == "READ"
                                            for e in receiver.events("messages.update")), 15)

        found = await asyncio.to_thread(client.chat.find_messages, "acc", {"key": {"remoteJid": BOB_JID}}, 1, 10)
        records = found["messages"]["records"]
        assert {r["key"]["id"] for r in records} >= {answer["id"], mid} and len(records) == 3
        assert {r["key"]["fromMe"] for r in records} == {True, False}
        mine = next(r for r in records if r["key"]["id"] == mid)
        assert "READ" in [u["status"] for u in mine["MessageUpdate"]]

        # a number that is not on WhatsApp: Evolution's 400 at once, before the typing delay, nothing stored
        async with httpx.AsyncClient(base_url=base_url, headers={"apikey": GLOBAL_KEY}, timeout=30) as raw:
            t0 = time.perf_counter()
            nope = await raw.post("/message/sendText/acc", json={"number": "15559999999", "text": "x", "delay": 5000})
            assert nope.status_code == 400 and time.perf_counter() - t0 < 4
            assert nope.json()["response"]["message"] == [
                {"jid": "15559999999@s.whatsapp.net", "exists": False, "number": "15559999999"}]
            none = (await raw.post("/chat/findMessages/acc", json={"where": {"key": {
                "remoteJid": "15559999999@s.whatsapp.net"}}})).json()
            assert none["messages"]["total"] == 0

        # our own phone writes to Bob: the linked instance gets its copy as MESSAGES_UPSERT fromMe (Evolution)
        own = sandbox.phone_send(PHONE, BOB_JID, "from my phone")
        await receiver.wait_for(lambda: any(e["data"]["key"]["id"] == own["id"]
                                            for e in receiver.events("messages.upsert")), 15)
        mine_up = next(e["data"] for e in receiver.events("messages.upsert") if e["data"]["key"]["id"] == own["id"])
        assert mine_up["key"]["fromMe"] is True and mine_up["key"]["remoteJid"] == BOB_JID
        assert mine_up["status"] == "SERVER_ACK" and mine_up["message"]["conversation"] == "from my phone"

        out = await asyncio.to_thread(client.chat.mark_as_read, "acc",
                                      [{"remoteJid": BOB_JID, "fromMe": False, "id": answer["id"]}])
        assert out == {"message": "Read messages", "read": "success"}


async def test_group_with_two_instances_and_a_phone(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    from gw_helpers import running_gateway

    phone2 = "15550003333"
    sandbox.create_phone(phone2)
    group = sandbox.create_group("evolink trio", [PHONE, phone2, BOB])
    gjid = group["jid"]
    async with running_gateway(gw_settings(tmp_path, sandbox), engine_factory=fast_engines(sandbox)) as (client, _):
        for name, phone in (("g1", PHONE), ("g2", phone2)):
            resp = await client.post("/instance/create", json={"instanceName": name, "integration": "WHATSAPP-BAILEYS",
                                                                "webhook": {"url": receiver.url, "enabled": True}})
            assert resp.status_code == 201
            code = (await client.get(f"/instance/connect/{name}")).json()["code"]
            await sandbox.scan(phone, code)
            await receiver.wait_for(lambda n=name: _opened(receiver, n), 20)

        sent = await client.post("/message/sendText/g1", json={"number": gjid, "text": "hello group"})
        assert sent.status_code == 201, sent.text
        mid = sent.json()["key"]["id"]
        assert sent.json()["key"]["remoteJid"] == gjid
        await until(lambda: any(m["id"] == mid for m in sandbox.phone_received(BOB)))
        assert next(m for m in sandbox.phone_received(BOB) if m["id"] == mid)["text"] == "hello group"

        def upsert(instance: str, msg_id: str) -> dict[str, Any] | None:
            return next((e["data"] for e in receiver.events("messages.upsert")
                         if e["instance"] == instance and e["data"]["key"]["id"] == msg_id), None)

        await receiver.wait_for(lambda: upsert("g2", mid) is not None, 15)  # the second instance got it
        seen = upsert("g2", mid)
        assert seen is not None and seen["key"]["remoteJid"] == gjid and seen["key"]["fromMe"] is False
        assert seen["key"]["participant"] in (f"{PHONE}@s.whatsapp.net", group["members"][0]["lid"])
        assert seen["message"]["conversation"] == "hello group" and seen["pushName"] == "Phone 1111"

        answer = sandbox.phone_send(BOB, gjid, "hello both")
        await receiver.wait_for(lambda: upsert("g1", answer["id"]) is not None
                                and upsert("g2", answer["id"]) is not None, 15)
        for inst in ("g1", "g2"):
            data = upsert(inst, answer["id"])
            assert data is not None and data["message"]["conversation"] == "hello both"
            assert data["key"]["remoteJid"] == gjid and data["pushName"] == "Phone 2222"
        found = (await client.post("/chat/findMessages/g1", json={"where": {"key": {"remoteJid": gjid}}})).json()
        assert {r["key"]["id"] for r in found["messages"]["records"]} == {mid, answer["id"]}
