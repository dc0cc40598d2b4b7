"""Item 7 and the HTTP contract: guard order, error envelope, shapes, status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from gw_fakes import FakeHub
from gw_helpers import create_instance, make_settings, running_gateway

from evolink.wa.config import DEFAULT_VERSION


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    async with running_gateway(make_settings(tmp_path), engine_factory=FakeHub().factory) as pair:
        yield pair


def _envelope(resp: httpx.Response, status: int, error: str) -> object:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and body["error"] == error
    return body["response"]["message"]


async def test_guard_order_404_before_401(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    await create_instance(client, "known")
    unknown = await client.get("/instance/connectionState/ghost", headers={"apikey": ""})
    assert _envelope(unknown, 404, "Not Found") == ['The "ghost" instance does not exist']
    known = await client.get("/instance/connectionState/known", headers={"apikey": ""})
    assert _envelope(known, 401, "Unauthorized") == "Unauthorized"
    wrong = await client.get("/instance/connectionState/known", headers={"apikey": "nope"})
    assert _envelope(wrong, 401, "Unauthorized") == "Unauthorized"


async def test_instance_tokens(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    a = await create_instance(client, "a", token="TOKEN-A")
    b = await create_instance(client, "b")
    assert a["hash"] == "TOKEN-A" and len(b["hash"]) == 36 and b["hash"] == b["hash"].upper()
    own = await client.get("/instance/connectionState/a", headers={"apikey": "TOKEN-A"})
    assert own.status_code == 200
    foreign = await client.get("/instance/connectionState/b", headers={"apikey": "TOKEN-A"})
    assert _envelope(foreign, 401, "Unauthorized") == "Unauthorized"
    create = await client.post("/instance/create", json={"instanceName": "c"}, headers={"apikey": "TOKEN-A"})
    assert _envelope(create, 401, "Unauthorized") == "Unauthorized"
    mine = await client.get("/instance/fetchInstances", headers={"apikey": "TOKEN-A"})
    assert [r["name"] for r in mine.json()] == ["a"]
    nobody = await client.get("/instance/fetchInstances", headers={"apikey": "nope"})
    assert nobody.status_code == 401


async def test_malformed_json_and_schema_errors(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    bad = await client.post("/instance/create", content=b'{"instanceName": ', headers={"content-type": "application/json"})
    message = _envelope(bad, 400, "Bad Request")
    assert isinstance(message, list) and message[0].startswith("Malformed JSON body")
    missing = await client.post("/instance/create", json={"integration": "WHATSAPP-BAILEYS"})
    assert _envelope(missing, 400, "Bad Request") == [['requires property "instanceName"']]
    integration = await client.post("/instance/create", json={"instanceName": "x", "integration": "FOO"})
    assert _envelope(integration, 400, "Bad Request") == ["Invalid integration"]
    await create_instance(client, "dup")
    dup = await client.post("/instance/create", json={"instanceName": "dup", "integration": "WHATSAPP-BAILEYS"})
    assert _envelope(dup, 403, "Forbidden") == ['This name "dup" is already in use.']
    presence = await client.post("/instance/setPresence/dup", json={"presence": "dancing"})
    nested = _envelope(presence, 400, "Bad Request")
    assert isinstance(nested, list) and isinstance(nested[0], list) and "presence" in nested[0][0]
    not_connected = await client.post("/instance/setPresence/dup", json={"presence": "available"})
    assert _envelope(not_connected, 400, "Bad Request") == ['The "dup" instance is not connected']


async def test_unknown_routes_and_verbs(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    await create_instance(client, "v")
    assert _envelope(await client.get("/nope/here"), 404, "Not Found") == ["Cannot GET /nope/here"]
    wrong_verb = await client.post("/instance/connect/v")  # Express says 404; HTTP and the OpenAPI say 405
    assert _envelope(wrong_verb, 405, "Method Not Allowed") == ["Cannot POST /instance/connect/v"]
    assert wrong_verb.headers["allow"] == "GET"
    restart = await client.request("TRACE", "/instance/restart/v")
    assert _envelope(restart, 405, "Method Not Allowed") == ["Cannot TRACE /instance/restart/v"]
    assert restart.headers["allow"] == "POST, PUT"  # every route of the path, not only the first
    assert _envelope(await client.get("/instance/qrcode/v"), 404, "Not Found") == ["Cannot GET /instance/qrcode/v"]


async def test_no_5xx_on_hostile_input(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    await create_instance(client, "h")
    probes = [
        client.post("/instance/create", content=b"\xff\xfe", headers={"content-type": "application/json"}),
        client.post("/instance/create", json=[1, 2, 3]),
        client.post("/instance/create", json={"instanceName": "a/b"}),
        client.post("/instance/create", json={"instanceName": "x" * 300}),
        client.post("/instance/create", json={"instanceName": "w", "webhook": {"url": "ftp://x"}}),
        client.post("/instance/create", json={"instanceName": "w", "webhook": {"url": "http://x", "events": ["NOPE"]}}),
        client.get("/instance/connect/h", params={"number": "+1 (555) 000-1111-2222-33333"}),
        client.post("/webhook/set/h", json={"webhook": "x"}),
        client.post("/settings/set/h", json={"rejectCall": "maybe"}),
        client.get("/instance/fetchInstances", params={"instanceId": "nope"}),
    ]
    for probe in probes:
        resp = await probe
        assert resp.status_code < 500, resp.text
        body = resp.json()
        assert ("response" in body and "message" in body["response"]) or body.get("error") is True


async def test_root_fetch_settings_webhook(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    root = (await client.get("/", headers={"apikey": ""})).json()
    assert root["status"] == 200 and root["message"] == "Welcome to the Evolution API, it is working!"
    assert root["version"] == "2.3.7" and root["clientName"] == "evolution"
    assert root["whatsappWebVersion"] == ".".join(map(str, DEFAULT_VERSION))  # the version the engine announces
    await create_instance(client, "f", rejectCall=True)
    rows = (await client.get("/instance/fetchInstances")).json()
    assert isinstance(rows, list) and rows[0]["name"] == "f" and rows[0]["connectionStatus"] == "close"
    assert rows[0]["Setting"]["rejectCall"] is True and rows[0]["_count"] == {"Message": 0, "Contact": 0, "Chat": 0}
    for key in ("id", "ownerJid", "profileName", "profilePicUrl", "integration", "number", "businessId", "token",
                "clientName", "disconnectionReasonCode", "disconnectionObject", "disconnectionAt", "createdAt",
                "updatedAt", "Chatwoot", "Proxy", "Rabbitmq", "Nats", "Sqs", "Websocket"):
        assert key in rows[0]
    one = await client.get("/instance/fetchInstances", params={"instanceName": "zzz"})
    assert _envelope(one, 404, "Not Found") == ['Instance "zzz" not found']

    assert (await client.get("/webhook/find/f")).json() is None
    hook = await client.post("/webhook/set/f", json={"webhook": {"enabled": True, "url": "http://127.0.0.1:9/h",
                                                                 "byEvents": True, "events": ["CONNECTION_UPDATE"],
                                                                 "headers": {"jwt_key": "s"}}})
    assert hook.status_code == 201
    found = (await client.get("/webhook/find/f")).json()
    assert found["url"] == "http://127.0.0.1:9/h" and found["webhookByEvents"] is True
    assert found["events"] == ["CONNECTION_UPDATE"]
    missing = await client.post("/settings/set/f", json={"rejectCall": True})
    assert missing.status_code == 400
    full = {"rejectCall": False, "groupsIgnore": True, "alwaysOnline": False, "readMessages": False,
            "readStatus": False, "syncFullHistory": False, "msgCall": "busy"}
    saved = await client.post("/settings/set/f", json=full)
    assert saved.status_code == 201 and saved.json()["groupsIgnore"] is True
    assert (await client.get("/settings/find/f")).json()["msgCall"] == "busy"


async def test_openapi_docs(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/instance/connect/{instanceName}" in spec["paths"] and "/instance/create" in spec["paths"]


async def test_names_with_spaces_and_disabled_webhooks(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    await create_instance(client, "my shop", webhook={"enabled": False, "url": ""})
    state = await client.get("/instance/connectionState/my%20shop")
    assert state.json() == {"instance": {"instanceName": "my shop", "state": "close"}}
    enabled_bad = await client.post("/webhook/set/my%20shop", json={"webhook": {"enabled": True, "url": "x"}})
    assert enabled_bad.status_code == 400 and "http://" in str(enabled_bad.json()["response"]["message"])
