"""Issue 11 (messages through the Evolution API), gateway logic with the fake engine: sendText,
sendReaction, markMessageAsRead, findMessages, MESSAGES_UPSERT / SEND_MESSAGE / MESSAGES_UPDATE,
settings acting on messages, bad input. The real engine + sandbox acceptance is test_messages_sandbox.py."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from gw_helpers import GLOBAL_KEY, Receiver, create_instance, make_settings, running_gateway
from msg_gw_fakes import MsgEngine, MsgHub

from evolink.gateway.runtime import InstanceRuntime
from evolink.wa.events import CloseEvent, CloseReason, ConnectionState, ReceiptType

PHONE = "15550001111"
BOB = "15550002222"
BOB_JID = f"{BOB}@s.whatsapp.net"
GROUP = "120363000000000001@g.us"


async def drop_link(app: FastAPI, hub: MsgHub, name: str) -> None:
    """The link drops for good (the engine says so, as a real one does) and the instance is closed."""
    engine = hub.latest(name)
    engine.state = "close"
    engine.emit(CloseEvent(CloseReason.CONNECTION_CLOSED, 428, False, "connection closed"))

    async def closed() -> None:
        while runtime(app, name).state != ConnectionState.CLOSE:  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.01)

    await asyncio.wait_for(closed(), 5)


@contextlib.asynccontextmanager
async def linked(tmp_path: Path, receiver: Receiver, *names: str, hub: MsgHub | None = None, **settings: Any,
                 ) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI, MsgHub]]:
    hub = hub or MsgHub()
    async with running_gateway(make_settings(tmp_path, **settings), engine_factory=hub.factory) as (client, app):
        for name in names or ("a",):
            await create_instance(client, name, receiver.url)
            assert (await client.get(f"/instance/connect/{name}")).status_code == 200
            await hub.latest(name).link(PHONE)
            await runtime(app, name).settle()
            assert runtime(app, name).state == "open"
            after_open = runtime(app, name)._after_open
            assert after_open is not None
            await asyncio.wait_for(after_open, 5)
        yield client, app, hub


def runtime(app: FastAPI, name: str) -> InstanceRuntime:
    rt = app.state.gateway.manager.runtimes[name]
    assert isinstance(rt, InstanceRuntime)
    return rt


async def find(client: httpx.AsyncClient, name: str = "a", **body: Any) -> dict[str, Any]:
    resp = await client.post(f"/chat/findMessages/{name}", json=body)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def error(resp: httpx.Response, status: int) -> Any:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and body["error"] and set(body) == {"status", "error", "response"}
    return body["response"]["message"]


# --------------------------------------------------------------------------- sendText


async def test_send_text_answers_evolutions_record_and_events(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, _app, hub):
        resp = await client.post("/message/sendText/a", json={"number": "+1 555 000 2222", "text": "Olá"})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        key = body["key"]
        assert key["remoteJid"] == BOB_JID and key["fromMe"] is True
        assert re.fullmatch(r"3EB0[0-9A-F]{18}", key["id"])
        assert body["pushName"] == "Você" and body["status"] == "PENDING" and body["source"] == "web"
        assert body["message"]["conversation"] == "Olá" and body["messageType"] == "conversation"
        assert isinstance(body["messageTimestamp"], int) and body["instanceId"]
        assert body["contextInfo"]["mentionedJid"] == [] and body["contextInfo"]["disappearingMode"] == {"initiator": 0}
        sent = hub.latest("a").sent
        assert [(s.to, s.id, s.message.conversation) for s in sent] == [(BOB_JID, key["id"], "Olá")]
        await receiver.wait_for(lambda: bool(receiver.events("send.message")) and bool(
            receiver.events("messages.update")))
        assert receiver.events("send.message")[0]["data"] == body
        upd = receiver.events("messages.update")[0]["data"]
        assert upd["keyId"] == key["id"] and upd["status"] == "SERVER_ACK" and upd["fromMe"] is True
        assert not receiver.events("messages.upsert")  # Evolution: API sends never upsert
        found = await find(client)
        rec = found["messages"]["records"][0]
        assert found["messages"]["total"] == 1 and rec["key"] == key and rec["message"]["conversation"] == "Olá"
        assert rec["MessageUpdate"] == [{"status": "SERVER_ACK"}] and rec["id"] == upd["messageId"]


async def test_send_text_validation_in_evolutions_envelope(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, _app, hub):
        url = "/message/sendText/a"
        assert error(await client.post(url, json={}), 400) == [
            ['instance requires property "number"', 'instance requires property "text"']]
        assert error(await client.post(url, json={"number": 5511, "text": "x"}), 400) == [["Invalid format"]]
        assert error(await client.post(url, json={"number": BOB, "text": 5}), 400) == [
            ["text is not of a type(s) string"]]
        assert error(await client.post(url, json={"number": BOB, "text": "x", "delay": 1.5}), 400) == [
            ["Enter a value in milliseconds"]]
        assert error(await client.post(url, json={"number": BOB, "text": "x", "linkPreview": "yes"}), 400) == [
            ["linkPreview is not of a type(s) boolean"]]
        assert error(await client.post(url, json={"number": BOB, "text": "x", "mentioned": []}), 400) == [
            ["mentioned does not meet minimum length of 1"]]
        assert error(await client.post(url, json={"number": BOB, "text": "x", "mentioned": ["ab"]}), 400) == [
            ['"mentioned" must be an array of numeric strings']]
        assert error(await client.post(url, json={"number": BOB, "text": "x", "quoted": {"key": {}}}), 400) == [
            ['quoted.key requires property "id"']]
        assert error(await client.post(url, json=["x"]), 400) == [["instance is not of a type(s) object"]]
        assert error(await client.post(url, json={"number": BOB, "text": "  "}), 400) == ["Text is required"]
        big = error(await client.post(url, json={"number": BOB, "text": "x" * 1_000_000}), 400)
        assert big == [["text does not meet maximum length of 65536"]]
        huge = await client.post("/chat/findMessages/a", content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                                 headers={"content-type": "application/json"})
        assert huge.status_code == 413 and huge.json()["status"] == 413  # api/limits.py, before parsing
        bad_json = error(await client.post(url, content=b'{"number": ', headers={"content-type": "application/json"}),
                         400)
        assert "Malformed JSON" in bad_json[0]
        assert error(await client.post(url, json={"number": "abc", "text": "x"}), 400) == [
            {"jid": "@s.whatsapp.net", "exists": False, "number": "abc"}]
        assert error(await client.post(url, json={"number": "123@g.us", "text": "x"}), 400) == [
            {"jid": "123@g.us", "exists": False, "number": "123@g.us"}]
        assert error(await client.post("/message/sendText/nobody", json={"number": BOB, "text": "x"}), 404) == [
            'The "nobody" instance does not exist']
        assert error(await client.post(url, json={"number": BOB, "text": "x"}, headers={"apikey": "wrong"}),
                     401) == "Unauthorized"
        assert hub.latest("a").sent == []
        assert (await find(client))["messages"]["total"] == 0  # nothing stored half-way


async def test_send_refusals_store_nothing(tmp_path: Path, receiver: Receiver) -> None:
    hub = MsgHub(no_devices={BOB_JID})
    async with linked(tmp_path, receiver, hub=hub) as (client, app, _):
        resp = await client.post("/message/sendText/a", json={"number": BOB, "text": "hi"})
        assert error(resp, 400) == [{"jid": BOB_JID, "exists": False, "number": BOB}]
        hub.no_devices.clear()
        hub.fail_with = "server refused 3EB0: error 479"
        resp = await client.post("/message/sendText/a", json={"number": BOB, "text": "hi"})
        assert error(resp, 400) == ["Error: server refused 3EB0: error 479"]
        await receiver.wait_for(lambda: any(e["data"]["status"] == "ERROR" for e in receiver.events("messages.update")))
        found = (await find(client))["messages"]
        assert found["total"] == 1  # the refused send stays, as a complete record marked ERROR
        assert (await runtime(app, "a").messages.repo.get(  # type: ignore[union-attr]
            found["records"][0]["instanceId"], found["records"][0]["key"]["id"])).status == "ERROR"  # type: ignore[union-attr]
        hub.fail_with = None
        await drop_link(app, hub, "a")
        resp = await client.post("/message/sendText/a", json={"number": BOB, "text": "hi"})
        assert error(resp, 400) == ["Error: Connection Closed"]
        assert (await find(client))["messages"]["total"] == 1


async def test_delay_types_first_and_does_not_block_other_instances(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver, "a", "b") as (client, _app, hub):
        slow = asyncio.create_task(client.post("/message/sendText/a", json={"number": BOB, "text": "slow",
                                                                             "delay": 3000}))
        engine_a = hub.latest("a")
        await asyncio.wait_for(_until(lambda: bool(engine_a.chat_states)), 5)
        fast = await client.post("/message/sendText/b", json={"number": BOB, "text": "fast"})
        assert fast.status_code == 201 and not slow.done()  # b was not held up by a's typing delay
        resp = await slow
        assert resp.status_code == 201
        states = engine_a.chat_states
        assert [(s[0], s[1]) for s in states] == [(BOB_JID, "composing"), (BOB_JID, "paused")]
        assert states[1][2] - states[0][2] >= 2.9


async def _until(pred: Any) -> None:
    while not pred():  # noqa: ASYNC110 - fake-engine state has no event
        await asyncio.sleep(0.01)


async def test_group_send_with_mentions_and_quote(tmp_path: Path, receiver: Receiver) -> None:
    hub = MsgHub(members={GROUP: [BOB_JID, f"{PHONE}@s.whatsapp.net"]})
    async with linked(tmp_path, receiver, hub=hub) as (client, app, _):
        hub.latest("a").receive("3A0000000000000000AA", GROUP, "question?", sender=f"{BOB}:2@s.whatsapp.net")
        await runtime(app, "a").settle()
        resp = await client.post("/message/sendText/a", json={
            "number": GROUP, "text": "answer", "mentionsEveryOne": True,
            "quoted": {"key": {"id": "3A0000000000000000AA"}}})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert body["key"]["remoteJid"] == GROUP and "participant" not in body
        assert body["message"] == {"conversation": "answer", "messageContextInfo": body["message"]["messageContextInfo"]}
        ctx = body["contextInfo"]
        assert ctx["mentionedJid"] == [BOB_JID, f"{PHONE}@s.whatsapp.net"]
        assert ctx["stanzaId"] == "3A0000000000000000AA" and ctx["participant"] == BOB_JID
        assert ctx["quotedMessage"]["conversation"] == "question?"
        wire = hub.latest("a").sent[-1].message.extendedTextMessage
        assert wire.text == "answer" and wire.contextInfo.stanzaId == "3A0000000000000000AA"
        assert list(wire.contextInfo.mentionedJid) == ctx["mentionedJid"]
        # a quote of an unknown id is dropped silently (Evolution)
        resp = await client.post("/message/sendText/a", json={"number": BOB, "text": "x",
                                                               "quoted": {"key": {"id": "NOPE"}}})
        assert resp.status_code == 201 and hub.latest("a").sent[-1].message.conversation == "x"


# --------------------------------------------------------------------------- incoming and receipts


async def test_incoming_message_upsert_and_find(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, app, hub):
        engine = hub.latest("a")
        engine.receive("3A1111111111111111AA", BOB_JID, "oi", sender=f"{BOB}:0@s.whatsapp.net", push_name="Bob")
        engine.receive("3A1111111111111111AA", BOB_JID, "oi", sender=f"{BOB}:0@s.whatsapp.net")  # redelivery
        await runtime(app, "a").settle()
        await receiver.wait_for(lambda: bool(receiver.events("messages.upsert")))
        ups = receiver.events("messages.upsert")
        assert len(ups) == 1
        data = ups[0]["data"]
        assert data["key"] == {"remoteJid": BOB_JID, "fromMe": False, "id": "3A1111111111111111AA",
                               "addressingMode": "pn"}
        assert data["pushName"] == "Bob" and data["status"] == "DELIVERY_ACK" and data["source"] == "ios"
        assert data["message"]["conversation"] == "oi" and data["messageType"] == "conversation"
        assert "id" not in data and ups[0]["instance"] == "a"
        recs = (await find(client, where={"key": {"remoteJid": BOB_JID}}))["messages"]["records"]
        assert [r["key"]["id"] for r in recs] == ["3A1111111111111111AA"] and recs[0]["MessageUpdate"] == []


async def test_lid_chat_is_shown_with_the_phone_jid(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, app, hub):
        hub.latest("a").receive("3A2222222222222222AA", "99887766@lid", "via lid", sender="99887766:0@lid",
                                sender_pn=f"{BOB}:0@s.whatsapp.net")
        await runtime(app, "a").settle()
        await receiver.wait_for(lambda: bool(receiver.events("messages.upsert")))
        key = receiver.events("messages.upsert")[0]["data"]["key"]
        assert key["remoteJid"] == BOB_JID and key["remoteJidAlt"] == BOB_JID and key["addressingMode"] == "lid"
        stored = (await find(client, where={"key": {"remoteJid": BOB_JID}}))["messages"]["records"]
        assert stored[0]["key"]["remoteJid"] == "99887766@lid"  # the row keeps the LID (Evolution 2.3.7)


async def test_receipts_become_messages_update(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, app, hub):
        sent = (await client.post("/message/sendText/a", json={"number": BOB, "text": "read me"})).json()
        mid = sent["key"]["id"]
        engine = hub.latest("a")
        engine.receipt(ReceiptType.DELIVERED, BOB_JID, [mid])
        engine.receipt(ReceiptType.DELIVERED, BOB_JID, [mid])  # a repeat is dropped
        engine.receipt(ReceiptType.READ, BOB_JID, [mid, "UNKNOWN-ID"])  # unknown ids are dropped
        await runtime(app, "a").settle()
        await receiver.wait_for(lambda: len(receiver.events("messages.update")) >= 3)
        statuses = [e["data"]["status"] for e in receiver.events("messages.update")]
        assert statuses == ["SERVER_ACK", "DELIVERY_ACK", "READ"]
        last = receiver.events("messages.update")[-1]["data"]
        assert last["keyId"] == mid and last["remoteJid"] == BOB_JID and last["fromMe"] is True
        rec = (await find(client, where={"key": {"id": mid}}))["messages"]["records"][0]
        assert [u["status"] for u in rec["MessageUpdate"]] == ["SERVER_ACK", "DELIVERY_ACK", "READ"]


async def test_settings_read_messages_and_groups_ignore(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, app, hub):
        resp = await client.post("/settings/set/a", json={
            "rejectCall": False, "groupsIgnore": True, "alwaysOnline": False, "readMessages": True,
            "readStatus": False, "syncFullHistory": False})
        assert resp.status_code == 201, resp.text
        engine = hub.latest("a")
        engine.receive("3A3333333333333333AA", GROUP, "group chatter", sender=f"{BOB}:0@s.whatsapp.net")
        engine.receive("3A4444444444444444AA", BOB_JID, "direct", sender=f"{BOB}:0@s.whatsapp.net")
        await runtime(app, "a").settle()
        await receiver.wait_for(lambda: bool(receiver.events("messages.upsert")))
        assert [e["data"]["key"]["id"] for e in receiver.events("messages.upsert")] == ["3A4444444444444444AA"]
        assert engine.read_receipts == [(BOB_JID, ["3A4444444444444444AA"], None)]
        assert (await find(client))["messages"]["total"] == 1  # the ignored group message is not kept


async def test_always_online_on_open(tmp_path: Path, receiver: Receiver) -> None:
    hub = MsgHub()
    async with running_gateway(make_settings(tmp_path), engine_factory=hub.factory) as (client, app):
        await create_instance(client, "a", receiver.url, alwaysOnline=True)
        await client.get("/instance/connect/a")
        await hub.latest("a").link(PHONE)
        await runtime(app, "a").settle()
        task = runtime(app, "a")._after_open
        assert task is not None
        await asyncio.wait_for(task, 5)
        assert hub.latest("a").presence == ["available"]


# --------------------------------------------------------------------------- reaction, read, find


async def test_send_reaction(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, _app, hub):
        key = {"remoteJid": BOB_JID, "fromMe": False, "id": "3A5555555555555555AA"}
        resp = await client.post("/message/sendReaction/a", json={"key": key, "reaction": "👍🏽"})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert body["messageType"] == "reactionMessage" and body["status"] == "PENDING"
        react = body["message"]["reactionMessage"]
        assert react["key"] == key and react["text"] == "👍🏽" and isinstance(react["senderTimestampMs"], int)
        assert "contextInfo" not in body
        assert hub.latest("a").sent[-1].message.reactionMessage.key.id == key["id"]
        assert error(await client.post("/message/sendReaction/a", json={"key": key, "reaction": "ab"}), 400) == [
            "Reaction must be a single emoji or empty string"]
        assert error(await client.post("/message/sendReaction/a", json={"key": {"id": "x", "remoteJid": BOB_JID},
                                                                         "reaction": ""}), 400) == [
            ['key requires property "fromMe"']]
        assert (await client.post("/message/sendReaction/a", json={"key": key, "reaction": ""})).status_code == 201


async def test_mark_message_as_read(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, app, hub):
        keys = [{"remoteJid": BOB_JID, "fromMe": False, "id": "A1"}, {"remoteJid": BOB_JID, "fromMe": False, "id": "A2"},
                {"remoteJid": "123@lid", "fromMe": False, "id": "A3"}, {"remoteJid": BOB_JID, "fromMe": True, "id": "A4"},
                {"remoteJid": GROUP, "fromMe": False, "id": "A5"}]
        resp = await client.post("/chat/markMessageAsRead/a", json={"readMessages": keys})
        assert resp.status_code == 201 and resp.json() == {"message": "Read messages", "read": "success"}
        assert hub.latest("a").read_receipts == [(BOB_JID, ["A1", "A2"], None), (GROUP, ["A5"], None)]
        assert error(await client.post("/chat/markMessageAsRead/a", json={}), 400) == [
            ['instance requires property "readMessages"']]
        assert error(await client.post("/chat/markMessageAsRead/a", json={"readMessages": [{"id": "x"}]}), 400) == [
            ['readMessages[0] requires property "fromMe"', 'readMessages[0] requires property "remoteJid"']]
        await drop_link(app, hub, "a")
        assert error(await client.post("/chat/markMessageAsRead/a", json={"readMessages": keys[:1]}), 400) == [
            "Error: Connection Closed"]


async def test_find_messages_filters_and_pages(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, app, hub):
        engine = hub.latest("a")
        for i in range(5):
            engine.receive(f"3A{i:018d}", BOB_JID, f"m{i}", sender=f"{BOB}:0@s.whatsapp.net", timestamp=1000 + i)
        await runtime(app, "a").settle()
        await client.post("/message/sendText/a", json={"number": BOB, "text": "mine"})
        page = (await find(client, offset=2, page=2))["messages"]
        assert page["total"] == 6 and page["pages"] == 3 and page["currentPage"] == 2
        assert [r["message"]["conversation"] for r in page["records"]] == ["m3", "m2"]
        mine = (await find(client, where={"key": {"fromMe": True}}))["messages"]
        assert [r["message"]["conversation"] for r in mine["records"]] == ["mine"]
        assert (await find(client, where={"key": {"fromMe": False}}))["messages"]["total"] == 6  # false = no filter
        ranged = await find(client, where={"messageTimestamp": {"gte": 1_001_000, "lte": "1970-01-01T00:16:43Z"}})
        assert [r["message"]["conversation"] for r in ranged["messages"]["records"]] == ["m3", "m2", "m1"]
        assert (await find(client, where={"source": "web"}))["messages"]["total"] == 1
        assert (await find(client, where={"messageType": "reactionMessage"}))["messages"]["total"] == 0
        empty = await client.post("/chat/findMessages/a")
        assert empty.status_code == 200 and empty.json()["messages"]["total"] == 6
        assert error(await client.post("/chat/findMessages/a", json={"page": 0}), 400) == [
            ["page must be greater than or equal to 1"]]
        assert error(await client.post("/chat/findMessages/a", json={"where": {"key": {"fromMe": "no"}}}), 400)
        # DB-only: works while the instance is closed
        await drop_link(app, hub, "a")
        assert (await find(client))["messages"]["total"] == 6
        other = await client.post("/chat/findMessages/a", json={}, headers={"apikey": GLOBAL_KEY})
        assert other.status_code == 200


async def test_outgoing_and_incoming_observers(tmp_path: Path, receiver: Receiver) -> None:
    seen: list[tuple[str, str]] = []

    async def observer(kind: str, record: dict[str, Any]) -> None:
        seen.append((kind, record["key"]["id"]))

    async with linked(tmp_path, receiver) as (client, app, hub):
        app.state.gateway.manager.messages.observers.append(observer)
        sent = (await client.post("/message/sendText/a", json={"number": BOB, "text": "x"})).json()
        hub.latest("a").receive("3A6666666666666666AA", BOB_JID, "y")
        await runtime(app, "a").settle()
        assert seen == [("outgoing", sent["key"]["id"]), ("incoming", "3A6666666666666666AA")]


def _engine(hub: MsgHub, name: str) -> MsgEngine:
    return hub.latest(name)


@pytest.mark.parametrize("route", ["/message/sendText/a", "/message/sendReaction/a", "/chat/markMessageAsRead/a",
                                   "/chat/findMessages/a"])
async def test_wrong_types_never_500(tmp_path: Path, receiver: Receiver, route: str) -> None:
    async with linked(tmp_path, receiver) as (client, _app, _hub):
        for body in ([], "x", 5, None, {"number": None, "text": None, "key": 5, "readMessages": "x", "where": 5,
                                        "page": "1", "offset": -1, "reaction": 5, "quoted": 1}):
            if body is None and route.startswith("/chat/findMessages"):
                continue  # no body is a valid findMessages (everything)
            resp = await client.post(route, json=body)
            assert resp.status_code == 400, (body, resp.text)
            assert resp.json()["status"] == 400


# --------------------------------------------------------------------------- crash leftovers


def _pending_row(app: FastAPI, name: str, msg_id: str, attempts: int, *, incoming: bool = False) -> Any:
    from evolink.gateway import evolution_record as rec
    from evolink.wire.proto.e2e_pb2 import Message

    rt = runtime(app, name)
    assert rt.messages is not None
    m = Message()
    m.conversation = "left over"
    key = {"remoteJid": BOB_JID, "fromMe": not incoming, "id": msg_id}
    record = rec.build(instance_id=rt.instance_id, key=key, push_name=None if incoming else rec.YOU,
                       status="DELIVERY_ACK" if incoming else "PENDING", message=m, timestamp=1_700_000_000)
    row = rt.messages.repo.build_row(rt.instance_id, record, send_state=None if incoming else "pending",
                                     announced=not incoming)
    row.send_attempts = attempts
    return rt.messages.repo.insert(row)


async def test_crash_leftovers_are_resent_once_and_announced(tmp_path: Path, receiver: Receiver) -> None:
    """A send recorded but not acked before a crash goes out again once, with the same id; one that was
    already retried becomes ERROR (never a third copy); an unannounced received row is announced."""
    hub = MsgHub()
    async with linked(tmp_path, receiver, hub=hub) as (_client, app, _):
        await _pending_row(app, "a", "3EB0AAAAAAAAAAAAAAAAAA", 1)
        await _pending_row(app, "a", "3EB0BBBBBBBBBBBBBBBBBB", 2)
        await _pending_row(app, "a", "3A77777777777777777A", 0, incoming=True)
    assert hub.latest("a").sent == []
    async with running_gateway(make_settings(tmp_path), engine_factory=hub.factory) as (client, app):
        await runtime(app, "a").settle()
        task = runtime(app, "a")._after_open
        assert task is not None and runtime(app, "a").state == "open"
        await asyncio.wait_for(task, 5)
        assert [(s.id, s.to, s.message.conversation) for s in hub.latest("a").sent] == [
            ("3EB0AAAAAAAAAAAAAAAAAA", BOB_JID, "left over")]
        await receiver.wait_for(lambda: bool(receiver.events("messages.upsert")) and any(
            e["data"]["status"] == "ERROR" for e in receiver.events("messages.update")))
        assert [e["data"]["key"]["id"] for e in receiver.events("messages.upsert")] == ["3A77777777777777777A"]
        assert [e["data"]["key"]["id"] for e in receiver.events("send.message")] == ["3EB0AAAAAAAAAAAAAAAAAA"]
        err = next(e["data"] for e in receiver.events("messages.update") if e["data"]["status"] == "ERROR")
        assert err["keyId"] == "3EB0BBBBBBBBBBBBBBBBBB"
        repo = runtime(app, "a").messages.repo  # type: ignore[union-attr]
        iid = runtime(app, "a").instance_id
        assert (await repo.get(iid, "3EB0AAAAAAAAAAAAAAAAAA")).send_state == "sent"  # type: ignore[union-attr]
        assert (await repo.get(iid, "3EB0BBBBBBBBBBBBBBBBBB")).status == "ERROR"  # type: ignore[union-attr]
        assert (await find(client))["messages"]["total"] == 3
    # a second restart sends nothing again
    async with running_gateway(make_settings(tmp_path), engine_factory=hub.factory) as (_client, app):
        await runtime(app, "a").settle()
        await asyncio.wait_for(runtime(app, "a")._after_open, 5)  # type: ignore[arg-type]
        assert hub.latest("a").sent == []


async def test_send_queue_spaces_sends_of_one_instance_only(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver, "a", "b", EVOLINK_SEND_MIN_GAP_MS=1000) as (client, _app, hub):
        loop = asyncio.get_running_loop()
        stamps: dict[str, list[float]] = {"a": [], "b": []}
        for name in ("a", "b"):
            engine = hub.latest(name)
            original = engine.send_message

            async def timed(*args: Any, _o: Any = original, _n: str = name, **kw: Any) -> Any:
                stamps[_n].append(loop.time())
                return await _o(*args, **kw)

            engine.send_message = timed  # type: ignore[method-assign]
        t0 = loop.time()
        results = await asyncio.gather(*(client.post("/message/sendText/a", json={"number": BOB, "text": f"{i}"})
                                         for i in range(3)),
                                       client.post("/message/sendText/b", json={"number": BOB, "text": "b"}))
        assert all(r.status_code == 201 for r in results)
        gaps = [y - x for x, y in zip(stamps["a"], stamps["a"][1:], strict=False)]
        assert len(gaps) == 2 and all(g >= 0.99 for g in gaps), gaps
        assert stamps["b"][0] < stamps["a"][1]  # instance b did not wait behind a's queue
        assert stamps["a"][0] >= t0


async def test_a_send_in_flight_is_not_a_crash_leftover(tmp_path: Path, receiver: Receiver) -> None:
    hub = MsgHub()
    async with linked(tmp_path, receiver, hub=hub) as (client, app, _):
        hub.send_gate = asyncio.Event()
        send = asyncio.create_task(client.post("/message/sendText/a", json={"number": BOB, "text": "slow ack"}))
        rt = runtime(app, "a")
        assert rt.messages is not None and rt.sender is not None
        await asyncio.wait_for(hub.latest("a").send_entered.wait(), 5)
        pending = await rt.messages.repo.pending_sends(rt.instance_id)
        assert len(pending) == 1  # recorded before it goes out
        resender = asyncio.create_task(rt.sender.resend_pending())
        hub.send_gate.set()
        assert (await send).status_code == 201
        assert await resender == 0
        assert len(hub.latest("a").sent) == 1


async def test_status_never_goes_back(tmp_path: Path, receiver: Receiver) -> None:
    """A delivery receipt handled before the send's own server ack: the late SERVER_ACK is dropped."""
    async with linked(tmp_path, receiver) as (client, app, hub):
        hub.send_gate = asyncio.Event()
        send = asyncio.create_task(client.post("/message/sendText/a", json={"number": BOB, "text": "fast phone"}))
        engine = hub.latest("a")
        rt = runtime(app, "a")
        assert rt.sender is not None
        await asyncio.wait_for(engine.send_entered.wait(), 5)  # recorded, waiting for the wire
        mid = next(iter(rt.sender._inflight))
        engine.receipt(ReceiptType.DELIVERED, BOB_JID, [mid])
        await rt.settle()
        hub.send_gate.set()
        assert (await send).status_code == 201
        await receiver.wait_for(lambda: bool(receiver.events("send.message")))
        assert [e["data"]["status"] for e in receiver.events("messages.update")] == ["DELIVERY_ACK"]
        rec = (await find(client, where={"key": {"id": mid}}))["messages"]["records"][0]
        assert rec["MessageUpdate"] == [{"status": "DELIVERY_ACK"}]


async def test_reject_call_and_msg_call(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, app, hub):
        engine = hub.latest("a")
        engine.call("CALL1", BOB_JID)  # settings off: only the CALL event
        await runtime(app, "a").settle()
        await receiver.wait_for(lambda: bool(receiver.events("call")))
        assert engine.rejected == [] and engine.sent == []
        first = receiver.events("call")[0]["data"]
        assert first == {"chatId": BOB_JID, "from": BOB_JID, "id": "CALL1", "date": "2023-11-14T22:18:20.000Z",
                         "offline": False, "status": "offer", "isVideo": False, "isGroup": False}
        resp = await client.post("/settings/set/a", json={
            "rejectCall": True, "msgCall": "I cannot take calls", "groupsIgnore": False, "alwaysOnline": False,
            "readMessages": False, "readStatus": False, "syncFullHistory": False})
        assert resp.status_code == 201, resp.text
        engine.call("CALL2", BOB_JID)
        engine.call("CALL2", BOB_JID, status="terminate")  # only offers are acted on
        await runtime(app, "a").settle()
        await receiver.wait_for(lambda: len(receiver.events("call")) == 3 and bool(receiver.events("messages.upsert")))
        assert engine.rejected == [("CALL2", BOB_JID)]
        assert [(s.to, s.message.conversation) for s in engine.sent] == [(BOB_JID, "I cannot take calls")]
        up = receiver.events("messages.upsert")[0]["data"]
        assert up["key"]["fromMe"] is True and up["message"]["conversation"] == "I cannot take calls"
        assert not receiver.events("send.message")  # Evolution: msgCall is no SEND_MESSAGE


async def test_connection_lost_mid_send_is_pending_and_resent_once(tmp_path: Path, receiver: Receiver) -> None:
    """The stanza was recorded for the wire, then the connection dropped before the ack: it may have been
    delivered, so the answer is 201 PENDING (as Evolution's, which answers once written) and the next
    open sends it once more with the same id. A failure before anything left stores nothing."""
    hub = MsgHub()
    async with linked(tmp_path, receiver, hub=hub) as (client, app, _):
        hub.fail_with = "could not prepare 3EB0: item-not-found"
        resp = await client.post("/message/sendText/a", json={"number": BOB, "text": "never left"})
        assert error(resp, 400) == ["Error: could not prepare 3EB0: item-not-found"]
        assert (await find(client))["messages"]["total"] == 0
        hub.fail_with = None
        hub.lose_after_record = True
        resp = await client.post("/message/sendText/a", json={"number": BOB, "text": "maybe left"})
        assert resp.status_code == 201 and resp.json()["status"] == "PENDING"
        mid = resp.json()["key"]["id"]
        await receiver.wait_for(lambda: bool(receiver.events("send.message")))
        assert not receiver.events("messages.update")  # no server ack was seen
        rt = runtime(app, "a")
        assert (await rt.messages.repo.get(rt.instance_id, mid)).send_state == "pending"  # type: ignore[union-attr]
    hub.lose_after_record = False
    async with running_gateway(make_settings(tmp_path), engine_factory=hub.factory) as (_client, app):
        await runtime(app, "a").settle()
        await asyncio.wait_for(runtime(app, "a")._after_open, 5)  # type: ignore[arg-type]
        assert [(s.id, s.message.conversation) for s in hub.latest("a").sent] == [(mid, "maybe left")]


async def test_status_broadcasts_only_with_read_status(tmp_path: Path, receiver: Receiver) -> None:
    async with linked(tmp_path, receiver) as (client, app, hub):
        engine = hub.latest("a")
        engine.receive("3A8888888888888888AA", "status@broadcast", "my status", sender=f"{BOB}:0@s.whatsapp.net")
        await runtime(app, "a").settle()
        assert (await find(client))["messages"]["total"] == 0
        resp = await client.post("/settings/set/a", json={
            "rejectCall": False, "groupsIgnore": False, "alwaysOnline": False, "readMessages": False,
            "readStatus": True, "syncFullHistory": False})
        assert resp.status_code == 201
        engine.receive("3A9999999999999999AA", "status@broadcast", "next status", sender=f"{BOB}:0@s.whatsapp.net")
        await runtime(app, "a").settle()
        await receiver.wait_for(lambda: bool(receiver.events("messages.upsert")))
        assert receiver.events("messages.upsert")[0]["data"]["key"]["remoteJid"] == "status@broadcast"


async def test_clean_restart_does_not_announce_again(tmp_path: Path, receiver: Receiver) -> None:
    hub = MsgHub()
    async with linked(tmp_path, receiver, hub=hub) as (_client, app, _):
        for i in range(5):
            hub.latest("a").receive(f"3AC{i:017d}", BOB_JID, f"m{i}")
        await runtime(app, "a").settle()  # then a clean stop right away
    async with running_gateway(make_settings(tmp_path), engine_factory=hub.factory) as (_client, app):
        await runtime(app, "a").settle()
        await asyncio.wait_for(runtime(app, "a")._after_open, 5)  # type: ignore[arg-type]
        rt = runtime(app, "a")
        assert rt.messages is not None and await rt.messages.repo.unannounced(rt.instance_id) == []
        await receiver.wait_for(lambda: len(receiver.events("messages.upsert")) >= 5)
        hub.latest("a").receive("3AD00000000000000000", BOB_JID, "after")  # a marker: everything before it
        await runtime(app, "a").settle()                                    # has been delivered once it arrives
        await receiver.wait_for(lambda: any(e["data"]["key"]["id"] == "3AD00000000000000000"
                                            for e in receiver.events("messages.upsert")))
    assert len(receiver.events("messages.upsert")) == 6  # nothing announced twice
