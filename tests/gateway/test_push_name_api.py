"""Issue 10, push name through the API: `setPresence available` without a known name is a 400 that says
why (never a nameless presence), the name learned from the account becomes `profileName`, survives a
restart with the creds, and then presence works."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gw_helpers import create_instance, make_settings, running_gateway

from evolink.sandbox.server import Sandbox

PHONE = "15550003333"
FRIEND = "15550004444"


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox.start() as sandbox:
        sandbox.create_phone(PHONE)
        sandbox.create_phone(FRIEND)
        yield sandbox


def _settings(tmp_path: Path, sandbox: Sandbox) -> Any:
    return make_settings(tmp_path, WA_WEBSOCKET_URL=sandbox.ws_url, WA_ROOT_PUBLIC_KEY=sandbox.root_public_key,
                         CONNECT_WAIT_SECONDS=10)


async def _until(probe: Any, within: float = 15.0) -> Any:
    async def loop() -> Any:
        while not (value := await probe()):  # noqa: ASYNC110 - HTTP state has no event to wait on
            await asyncio.sleep(0.05)
        return value

    return await asyncio.wait_for(loop(), within)


async def _profile(client: httpx.AsyncClient) -> Any:
    rows = (await client.get("/instance/fetchInstances", params={"instanceName": "shop"})).json()
    return rows[0]["profileName"]


async def _is_open(client: httpx.AsyncClient) -> bool:
    body = (await client.get("/instance/connectionState/shop")).json()
    return bool(body["instance"]["state"] == "open")


async def test_presence_needs_the_push_name_and_it_is_learned(tmp_path: Path, sb: Sandbox) -> None:
    async with running_gateway(_settings(tmp_path, sb)) as (client, _):
        await create_instance(client, "shop")
        code = (await client.get("/instance/connect/shop", params={"number": PHONE})).json()["pairingCode"]
        await sb.link_code(PHONE, code)
        await _until(lambda: _is_open(client))
        assert await _profile(client) is None

        refused = await client.post("/instance/setPresence/shop", json={"presence": "available"})
        assert refused.status_code == 400, refused.text
        assert "push name" in str(refused.json()["response"]["message"])

        async with httpx.AsyncClient(base_url=sb.admin_url) as admin:  # the sandbox's admin HTTP API
            bad = await admin.post(f"/admin/phones/{PHONE}/push-name", json={"name": "  "})
            assert bad.status_code == 400 and bad.json()["error"] == "invalid_name"
            named = await admin.post(f"/admin/phones/{PHONE}/push-name", json={"name": "Ana Shop"})
            assert named.json() == {"phone": PHONE, "push_name": "Ana Shop"}
        sb.phone_send(PHONE, f"{FRIEND}@s.whatsapp.net", "hi")
        assert await _until(lambda: _profile(client)) == "Ana Shop"
        ok = await client.post("/instance/setPresence/shop", json={"presence": "available"})
        assert ok.status_code == 201 and ok.json() == {"presence": "available"}

    # a restart resumes the session: the name is still known (creds + profileName)
    async with running_gateway(_settings(tmp_path, sb)) as (client, _):
        await _until(lambda: _is_open(client))
        assert await _profile(client) == "Ana Shop"
        ok = await client.post("/instance/setPresence/shop", json={"presence": "unavailable"})
        assert ok.status_code == 201, ok.text
        # logged out: the next link may be another account, which must not inherit this name
        assert (await client.delete("/instance/logout/shop")).status_code == 200
        assert await _profile(client) is None
