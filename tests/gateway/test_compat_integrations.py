"""Issue 15: the per-instance integration routes Evolution's manager calls, answered as an Evolution
instance with nothing configured answers them; their writes are a clear "not supported" 400."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from gw_fakes import FakeHub
from gw_helpers import create_instance, make_settings, running_gateway

BOT_DEFAULTS = {"expire": 300, "keywordFinish": "bye", "delayMessage": 1000,
                "unknownMessage": "Sorry, I dont understand", "listeningFromMe": True, "stopBotFromMe": True,
                "keepOpen": False, "debounceTime": 1, "ignoreJids": [], "splitMessages": False, "timePerChar": 0,
                "fallbackId": "", "fallback": None}
CHATWOOT_EMPTY = {"enabled": False, "url": "", "accountId": "", "token": "", "signMsg": False, "nameInbox": "",
                  "webhook_url": ""}
BOTS = ("typebot", "openai", "n8n", "dify", "flowise", "evoai", "evolutionBot")
TRANSPORTS = ("websocket", "rabbitmq", "nats", "sqs")

# (path, expected JSON) for every read the manager's instance pages make
READS: list[tuple[str, Any]] = [
    *((f"/{t}/find/shop", None) for t in TRANSPORTS),
    ("/chatwoot/find/shop", CHATWOOT_EMPTY),
    *((f"/{b}/find/shop", []) for b in BOTS),
    *((f"/{b}/fetchSettings/shop", BOT_DEFAULTS) for b in BOTS),
    *((f"/{b}/fetch/some-id/shop", None) for b in BOTS),
    ("/openai/creds/shop", []),
]
WRITES: list[tuple[str, str]] = [
    ("POST", "/sqs/set/shop"),  # websocket/rabbitmq/nats are real (tests/gateway/test_event_transports*.py)
    ("POST", "/chatwoot/set/shop"),
    *(("POST", f"/{b}/create/shop") for b in BOTS),
    *(("POST", f"/{b}/settings/shop") for b in BOTS),
    *(("PUT", f"/{b}/update/x/shop") for b in BOTS),
    *(("DELETE", f"/{b}/delete/x/shop") for b in BOTS),
    *(("POST", f"/{b}/changeStatus/shop") for b in BOTS),
    ("POST", "/typebot/start/shop"), ("POST", "/openai/creds/shop"), ("GET", "/openai/getModels/shop"),
]


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    async with running_gateway(make_settings(tmp_path), engine_factory=FakeHub().factory) as pair:
        await create_instance(pair[0], "shop", token="SHOP-TOKEN")
        yield pair


async def test_every_find_answers_as_unconfigured_evolution(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    for path, expected in READS:
        resp = await client.get(path)
        assert resp.status_code == 200, (path, resp.text)
        assert resp.json() == expected, path
        # the instance token opens its own instance's pages, as on every instance route
        own = await client.get(path, headers={"apikey": "SHOP-TOKEN"})
        assert own.status_code == 200 and own.json() == expected, path


async def test_finds_keep_evolution_guards(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    for path, _expected in READS:
        ghost = await client.get(path.replace("/shop", "/ghost"))
        assert ghost.status_code == 404, path
        assert ghost.json()["response"]["message"] == ['The "ghost" instance does not exist']
        nokey = await client.get(path, headers={"apikey": "wrong"})
        assert nokey.status_code == 401 and nokey.json()["response"]["message"] == "Unauthorized", path


async def test_writes_on_unsupported_integrations_are_clear_400s(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    client, _ = gw
    for method, path in WRITES:
        resp = await client.request(method, path, json={"enabled": True})
        assert resp.status_code == 400, (method, path, resp.text)
        body = resp.json()
        assert body["status"] == 400 and body["error"] == "Bad Request"
        [message] = body["response"]["message"]
        assert "not supported by evolink" in message and path in message, message
    sessions = await client.get("/typebot/fetchSessions/bot-1/shop")
    assert sessions.status_code == 404 and sessions.json()["response"]["message"] == ["Typebot not found"]


async def test_openapi_lists_the_routes_once(gw: tuple[httpx.AsyncClient, FastAPI]) -> None:
    _, app = gw
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a duplicate operation id is a warning in FastAPI
        paths = app.openapi()["paths"]
    assert "/websocket/find/{instanceName}" in paths and "/evolutionBot/fetchSettings/{instanceName}" in paths
    assert "post" in paths["/chatwoot/set/{instanceName}"]
