"""Helpers for the chat/group gateway tests: a sandbox with phones, a gateway on the real engine, linking."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gw_helpers import Receiver, create_instance, make_settings, running_gateway

from evolink.gateway.engine_factory import real_engine_factory
from evolink.sandbox.server import Sandbox

PHONE, BOB, CAROL, NOBODY = "15550001111", "15550002222", "15550003333", "15559990000"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(qr_first_ttl=1.0, qr_next_ttl=0.5, qr_ref_count=6) as sb:
        for p in (PHONE, BOB, CAROL):
            sb.create_phone(p)
        yield sb


def gateway(tmp_path: Path, sb: Sandbox) -> Any:
    settings = make_settings(tmp_path, WA_WEBSOCKET_URL=sb.ws_url, WA_ROOT_PUBLIC_KEY=sb.root_public_key,
                             CONNECT_WAIT_SECONDS=10)
    engines = real_engine_factory(ws_url=sb.ws_url, root_public_key=bytes.fromhex(sb.root_public_key),
                                  phone_client="Evolution API", phone_name="Chrome",
                                  overrides={"qr_first_ttl": 1.0, "qr_next_ttl": 0.5, "reconnect_base": 0.05,
                                             "reconnect_cap": 0.5})
    return running_gateway(settings, engine_factory=engines)


async def link(client: httpx.AsyncClient, sb: Sandbox, receiver: Receiver, name: str, phone: str) -> None:
    await create_instance(client, name, receiver.url)
    resp = await client.get(f"/instance/connect/{name}", params={"number": phone})
    assert resp.status_code == 200, resp.text
    await sb.link_code(phone, resp.json()["pairingCode"])

    def opened() -> bool:
        return any(e["instance"] == name and e["data"].get("state") == "open"
                   for e in receiver.events("connection.update"))
    await receiver.wait_for(opened, 15)


