"""The connect fix and instance lifecycle, against a fake engine that honours the event contract."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from gw_fakes import FakeHub
from gw_helpers import PG_URL, Receiver, _pg_schema, create_instance, make_settings, running_gateway

PHONE = "15550001111"


@pytest.fixture
def hub() -> FakeHub:
    return FakeHub()


@pytest.fixture
async def gw(tmp_path: Path, hub: FakeHub) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    async with running_gateway(make_settings(tmp_path), engine_factory=hub.factory) as pair:
        yield pair


async def _connect(client: httpx.AsyncClient, name: str, number: str | None = None) -> dict[str, Any]:
    resp = await client.get(f"/instance/connect/{name}", params={"number": number} if number else None)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_first_connect_with_number_returns_confirmed_code(gw: tuple[httpx.AsyncClient, FastAPI],
                                                                hub: FakeHub, receiver: Receiver) -> None:
    client, _ = gw
    await create_instance(client, "a", receiver.url)
    body = await _connect(client, "a", PHONE)
    assert len(body["pairingCode"]) == 8
    assert body["code"] and not body["code"].startswith("https://")
    assert body["base64"].startswith("data:image/png;base64,")
    assert body["count"] == 1
    assert body["pairingCodeIssuedAt"].endswith("Z") and body["pairingCodeExpiresAt"].endswith("Z")
    assert 150 <= body["pairingCodeExpiresIn"] <= 160
    engine = hub.latest("a")
    # repeat calls and QR rotations keep the code
    for _ in range(3):
        engine.rotate_qr()
        again = await _connect(client, "a", PHONE)
        assert again["pairingCode"] == body["pairingCode"]
    assert engine.companion_hellos == 1 and hub.starts == 1
    state = (await client.get("/instance/connectionState/a")).json()
    assert state == {"instance": {"instanceName": "a", "state": "connecting"}}
    await receiver.wait_for(lambda: any(e["data"].get("qrcode", {}).get("pairingCode") == body["pairingCode"]
                                        for e in receiver.events("qrcode.updated")))


async def test_concurrent_connects_share_one_attempt(gw: tuple[httpx.AsyncClient, FastAPI], hub: FakeHub) -> None:
    client, _ = gw
    await create_instance(client, "c")
    bodies = await asyncio.gather(*(_connect(client, "c", PHONE) for _ in range(10)))
    assert len({b["pairingCode"] for b in bodies}) == 1
    assert hub.starts == 1 and hub.latest("c").companion_hellos == 1


async def test_number_switches_live_qr_connection_to_code(gw: tuple[httpx.AsyncClient, FastAPI],
                                                         hub: FakeHub) -> None:
    client, _ = gw
    await create_instance(client, "q")
    qr = await _connect(client, "q")
    assert qr["pairingCode"] is None and qr["code"] and "pairingCodeIssuedAt" not in qr
    coded = await _connect(client, "q", PHONE)
    assert len(coded["pairingCode"]) == 8
    assert hub.starts == 1  # same connection, no new socket


async def test_timeout_says_what_did_not_happen(tmp_path: Path) -> None:
    hub = FakeHub(never_qr=True)
    async with running_gateway(make_settings(tmp_path, CONNECT_WAIT_SECONDS=0.2), engine_factory=hub.factory) as (c, _):
        await create_instance(c, "t")
        body = await _connect(c, "t")
        assert body["error"] is True
        assert "No QR code within 0.2 s" in body["message"] and "pair-device" in body["message"]
        body = await _connect(c, "t", PHONE)
        assert body["error"] is True and "No pairing code within 0.2 s" in body["message"]


async def test_server_refusal_is_reported_not_a_fake_code(tmp_path: Path) -> None:
    hub = FakeHub(refuse_codes=True)
    async with running_gateway(make_settings(tmp_path), engine_factory=hub.factory) as (c, _):
        await create_instance(c, "r")
        body = await _connect(c, "r", PHONE)
        assert body == {"error": True, "message": "The WhatsApp server did not confirm a pairing code: "
                                                  "server refused companion_hello: 400 bad-request"}


async def test_lost_connection_gets_one_new_announced_code(gw: tuple[httpx.AsyncClient, FastAPI], hub: FakeHub,
                                                           receiver: Receiver) -> None:
    client, app = gw
    await create_instance(client, "l", receiver.url)
    first = (await _connect(client, "l", PHONE))["pairingCode"]
    hub.latest("l").lose_connection()
    rt = app.state.gateway.manager.runtimes["l"]
    await rt._wait(lambda: rt.qr.pairing_code not in (None, first), 5)
    second = (await _connect(client, "l", PHONE))["pairingCode"]
    assert second != first and hub.starts == 1
    await receiver.wait_for(lambda: [e["data"]["qrcode"]["pairingCode"] for e in receiver.events("qrcode.updated")
                                     if e["data"]["qrcode"]["pairingCode"]][-1:] == [second])
    attempts = await app.state.gateway.store.list_pairing_attempts(rt.instance_id)
    assert [(a.method, a.code_suffix, a.outcome) for a in attempts] == [
        ("code", first[-2:], "failed"), ("code", second[-2:], "pending")]


async def test_link_open_logout_delete(gw: tuple[httpx.AsyncClient, FastAPI], hub: FakeHub,
                                       receiver: Receiver) -> None:
    client, app = gw
    created = await create_instance(client, "x", receiver.url)
    code = (await _connect(client, "x", PHONE))["pairingCode"]
    await hub.latest("x").link(PHONE)
    await receiver.wait_for(lambda: any(e["data"].get("state") == "open" for e in receiver.events("connection.update")))
    opened = next(e for e in receiver.events("connection.update") if e["data"].get("state") == "open")
    assert opened["data"]["wuid"] == f"{PHONE}@s.whatsapp.net" and opened["sender"] == f"{PHONE}@s.whatsapp.net"
    assert opened["date_time"].endswith("Z") and opened["destination"] == receiver.url
    assert (await client.get("/instance/connectionState/x")).json()["instance"]["state"] == "open"
    assert await _connect(client, "x") == {"instance": {"instanceName": "x", "state": "open"}}
    rows = (await client.get("/instance/fetchInstances")).json()
    assert rows[0]["connectionStatus"] == "open" and rows[0]["ownerJid"] == f"{PHONE}@s.whatsapp.net"
    attempts = await app.state.gateway.store.list_pairing_attempts(created["instance"]["instanceId"])
    assert [(a.code_suffix, a.outcome) for a in attempts] == [(code[-2:], "success")]

    presence = await client.post("/instance/setPresence/x", json={"presence": "available"})
    assert presence.status_code == 201 and presence.json() == {"presence": "available"}

    resp = await client.delete("/instance/logout/x")
    assert resp.json() == {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}
    assert (await client.get("/instance/connectionState/x")).json()["instance"]["state"] == "close"
    await receiver.wait_for(lambda: bool(receiver.events("logout.instance")))
    again = await client.delete("/instance/logout/x")
    assert again.status_code == 400
    assert again.json()["response"]["message"] == ['The "x" instance is not connected']

    resp = await client.delete("/instance/delete/x")
    assert resp.json() == {"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}}
    assert (await client.get("/instance/connectionState/x")).status_code == 404
    await create_instance(client, "x")  # reusable at once
    await receiver.wait_for(lambda: bool(receiver.events("instance.delete")) and bool(receiver.events("remove.instance")))


async def test_restart_resumes_open_instance_without_relink(tmp_path: Path, hub: FakeHub) -> None:
    settings = make_settings(tmp_path)
    async with running_gateway(settings, engine_factory=hub.factory) as (client, _):
        await create_instance(client, "p")
        await _connect(client, "p", PHONE)
        await hub.latest("p").link(PHONE)
        await asyncio.sleep(0)
    hub2 = FakeHub()
    async with running_gateway(settings, engine_factory=hub2.factory) as (client, app):
        rt = app.state.gateway.manager.runtimes["p"]
        assert await rt._wait(lambda: rt.state == "open", 5)
        assert hub2.code_requests == 0 and hub2.latest("p").companion_hellos == 0
        assert (await client.get("/instance/connectionState/p")).json()["instance"]["state"] == "open"


async def test_qr_limit_refuses(tmp_path: Path, receiver: Receiver) -> None:
    hub = FakeHub()
    async with running_gateway(make_settings(tmp_path, QRCODE_LIMIT=2), engine_factory=hub.factory) as (client, _app):
        await create_instance(client, "z", receiver.url)
        await _connect(client, "z")
        engine = hub.latest("z")
        engine.rotate_qr()
        engine.rotate_qr()  # third QR with limit 2
        await receiver.wait_for(lambda: any(e["data"].get("state") == "refused"
                                            for e in receiver.events("connection.update")))
        refused = next(e for e in receiver.events("connection.update") if e["data"].get("state") == "refused")
        assert refused["data"]["statusReason"] == 428
        assert {"message": "QR code limit reached, please login again", "statusCode": 500} in [
            e["data"] for e in receiver.events("qrcode.updated")]
        assert (await client.get("/instance/connectionState/z")).json()["instance"]["state"] == "close"
        assert engine.closed
        again = await _connect(client, "z")  # starts over
        assert again["count"] == 1


async def test_create_with_qrcode_embeds_first_qr(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    body = await create_instance(client, "e", qrcode=True, number=PHONE)
    assert body["instance"]["status"] == "connecting"
    assert len(body["qrcode"]["pairingCode"]) == 8 and body["hash"] == body["hash"].upper()
    assert set(body["settings"]) == {"rejectCall", "msgCall", "groupsIgnore", "alwaysOnline", "readMessages",
                                     "readStatus", "syncFullHistory", "wavoipToken"}


async def test_restart_route(gw: tuple[httpx.AsyncClient, FastAPI], hub: FakeHub) -> None:
    client, _ = gw
    await create_instance(client, "s")
    closed = (await client.post("/instance/restart/s")).json()
    assert closed == {"error": True, "message": 'The "s" instance is not connected'}
    await _connect(client, "s")
    body = (await client.put("/instance/restart/s")).json()
    assert body["code"] and hub.starts == 2 and hub.engines["s"][0].closed


async def test_invalid_number_is_a_clear_error(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    await create_instance(client, "n")
    body = await _connect(client, "n", "12ab")
    assert body["error"] is True and "not a phone number" in body["message"]
    # a national number with its trunk 0 is refused at once with the engine's reason
    body = await _connect(client, "n", "011 99999-9999")
    assert body["error"] is True and "no leading 0" in body["message"]


async def test_other_number_during_code_link_is_refused(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    await create_instance(client, "o")
    await _connect(client, "o", PHONE)
    other = await _connect(client, "o", "15559998888")
    assert other["error"] is True and "...1111" in other["message"] and "log out first" in other["message"]


async def test_clock_guard_refusal(tmp_path: Path) -> None:
    """CLOCK_SKEW_POLICY=refuse with an unmeasurable clock: connect is refused in Evolution's error shape,
    with the `clock` object, nothing is started, and the attempt is recorded and counted."""
    from evolink.clock.config import ClockConfig, SkewPolicy
    from evolink.clock.guard import ClockGuard
    from evolink.metrics import REGISTRY

    guard = ClockGuard(ClockConfig(ntp_servers=(), upstream_http_url=None, skew_policy=SkewPolicy.REFUSE))
    before = REGISTRY.get_sample_value("evolink_pairing_attempts_total",
                                       {"method": "code", "result": "refused_clock"}) or 0.0
    hub = FakeHub()
    async with running_gateway(make_settings(tmp_path), engine_factory=hub.factory, clock_guard=guard) as (c, app):
        await create_instance(c, "k")
        body = await _connect(c, "k", PHONE)
        assert body["error"] is True and body["message"].startswith("Linking refused by the clock guard")
        assert body["clock"]["allowed"] is False and body["clock"]["policy"] == "refuse"
        assert hub.starts == 0
        rt = app.state.gateway.manager.runtimes["k"]
        attempts = await app.state.gateway.store.list_pairing_attempts(rt.instance_id)
        assert [(a.method, a.outcome) for a in attempts] == [("code", "refused_clock")]
        health = await c.get("/health")
        assert health.headers["content-type"].startswith("application/health+json")
        assert "database:connection" in health.json()["checks"]
    after = REGISTRY.get_sample_value("evolink_pairing_attempts_total", {"method": "code", "result": "refused_clock"})
    assert after == before + 1


@pytest.mark.postgres
async def test_gateway_on_postgresql(tmp_path: Path) -> None:
    schema = f"evolink_gw_{uuid.uuid4().hex[:10]}"
    await _pg_schema("create", schema)
    try:
        settings = make_settings(tmp_path, DATABASE_PROVIDER="postgresql", DATABASE_CONNECTION_URI=PG_URL)
        hub = FakeHub()
        async with running_gateway(settings, engine_factory=hub.factory, db_schema=schema) as (client, _):
            await create_instance(client, "pg")
            await _connect(client, "pg", PHONE)
            await hub.latest("pg").link(PHONE)
        hub2 = FakeHub()
        async with running_gateway(settings, engine_factory=hub2.factory, db_schema=schema) as (client, app):
            assert app.state.gateway.db.dialect == "postgresql"
            rt = app.state.gateway.manager.runtimes["pg"]
            assert await rt._wait(lambda: rt.state == "open", 5)
            await rt.settle()
            rows = (await client.get("/instance/fetchInstances")).json()
            assert rows[0]["ownerJid"] == f"{PHONE}@s.whatsapp.net"
    finally:
        await _pg_schema("drop", schema)


async def test_refs_ended_renews_socket_and_code_until_limit(tmp_path: Path, receiver: Receiver) -> None:
    hub = FakeHub()
    async with running_gateway(make_settings(tmp_path, QRCODE_LIMIT=3), engine_factory=hub.factory) as (c, app):
        await create_instance(c, "m", receiver.url)
        first = (await _connect(c, "m", PHONE))["pairingCode"]
        rt = app.state.gateway.manager.runtimes["m"]
        hub.latest("m").refs_ended()
        assert await rt._wait(lambda: rt.qr.pairing_code not in (None, first), 5)
        second = (await _connect(c, "m", PHONE))["pairingCode"]
        assert second != first and hub.starts == 2 and rt.state == "connecting"
        await receiver.wait_for(lambda: second in [e["data"]["qrcode"]["pairingCode"]
                                                   for e in receiver.events("qrcode.updated") if "qrcode" in e["data"]])
        attempts = await app.state.gateway.store.list_pairing_attempts(rt.instance_id)
        assert [(a.code_suffix, a.outcome) for a in attempts] == [(first[-2:], "expired"), (second[-2:], "pending")]
        hub.latest("m").rotate_qr()  # QR 3 of 3
        hub.latest("m").refs_ended()  # the limit is reached: refused instead of a third socket
        await receiver.wait_for(lambda: any(e["data"].get("state") == "refused"
                                            for e in receiver.events("connection.update")))
        assert rt.state == "close" and hub.starts == 2 and rt.qr.count == 0


async def test_del_instance_removes_unlinked_instances(tmp_path: Path, hub: FakeHub, receiver: Receiver) -> None:
    async with running_gateway(make_settings(tmp_path), engine_factory=hub.factory) as (client, app):
        manager = app.state.gateway.manager
        manager.del_instance_after = 1.0  # DEL_INSTANCE is in minutes; the timer itself is what we test
        await create_instance(client, "temp", receiver.url)
        await create_instance(client, "kept", receiver.url)
        await _connect(client, "kept", PHONE)
        await hub.latest("kept").link(PHONE)  # opens within milliseconds, well before the timer
        await receiver.wait_for(lambda: bool(receiver.events("remove.instance")))
        assert [e["instance"] for e in receiver.events("remove.instance")] == ["temp"]
        assert (await client.get("/instance/connectionState/temp")).status_code == 404
        assert (await client.get("/instance/connectionState/kept")).json()["instance"]["state"] == "open"
