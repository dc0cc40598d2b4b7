"""Terminal closes end to end: the phone removes the device (401), another socket replaces ours (440),
the server forbids (403). The instance says `close` with the reason everywhere: the connection
state, the stored row, `status.instance` and `connection.update` (Evolution's statusReason), and
the next connect starts over instead of waiting on a dead engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from gw_fakes import FakeHub
from gw_helpers import Receiver, create_instance, make_settings, running_gateway

from evolink.gateway.engine_factory import real_engine_factory
from evolink.sandbox.server import Sandbox
from evolink.wa.events import CloseEvent, CloseReason

PHONE = "15550003333"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(qr_first_ttl=5.0, qr_next_ttl=1.0, qr_ref_count=6) as sb:
        yield sb


def _closed_with(receiver: Receiver, name: str, status: int) -> bool:
    return any(e["instance"] == name and e["data"].get("state") == "close" and e["data"].get("statusReason") == status
               for e in receiver.events("connection.update"))


def _opened(receiver: Receiver, name: str) -> bool:
    return any(e["instance"] == name and e["data"].get("state") == "open" for e in receiver.events("connection.update"))


async def _linked(client: httpx.AsyncClient, sb: Sandbox, receiver: Receiver, name: str) -> None:
    await create_instance(client, name, receiver.url)
    body = (await client.get(f"/instance/connect/{name}", params={"number": PHONE})).json()
    await sb.link_code(PHONE, body["pairingCode"])
    await receiver.wait_for(lambda: _opened(receiver, name), 20)


async def _assert_closed(client: httpx.AsyncClient, app: FastAPI, receiver: Receiver, name: str, status: int,
                         reason: str) -> None:
    await receiver.wait_for(lambda: _closed_with(receiver, name, status), 15)
    state = (await client.get(f"/instance/connectionState/{name}")).json()
    assert state["instance"]["state"] == "close"
    statuses = [e["data"] for e in receiver.events("status.instance") if e["instance"] == name]
    assert statuses and statuses[-1]["disconnectionReasonCode"] == status
    rt = app.state.gateway.manager.runtimes[name]
    await rt.settle()
    row = await app.state.gateway.store.get_instance(name)
    assert row.connection_status == "close" and row.disconnection_reason_code == status
    assert reason in (row.disconnection_object or "")


def _sandbox_settings(tmp_path: Path, sb: Sandbox) -> Any:
    return make_settings(tmp_path, WA_WEBSOCKET_URL=sb.ws_url, WA_ROOT_PUBLIC_KEY=sb.root_public_key,
                         CONNECT_WAIT_SECONDS=10)


def _engines(sb: Sandbox) -> Any:
    return real_engine_factory(ws_url=sb.ws_url, root_public_key=bytes.fromhex(sb.root_public_key),
                               phone_client="Evolution API", phone_name="Chrome",
                               overrides={"reconnect_base": 0.05, "reconnect_cap": 0.5})


async def test_phone_removes_the_device(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.create_phone(PHONE)
    async with running_gateway(_sandbox_settings(tmp_path, sandbox), engine_factory=_engines(sandbox)) as (client, app):
        await _linked(client, sandbox, receiver, "rm1")
        device = sandbox.get_phone(PHONE)["devices"][0]["device"]
        await sandbox.remove_device(PHONE, device)
        await _assert_closed(client, app, receiver, "rm1", 401, "logged_out")
        assert [e for e in receiver.events("logout.instance") if e["instance"] == "rm1"]
        rt = app.state.gateway.manager.runtimes["rm1"]
        assert rt.lifecycle.phase == "logged_out"
        # the next connect links again (a new QR), it does not wait on the dead engine
        again = (await client.get("/instance/connect/rm1")).json()
        assert again.get("code") and again.get("base64"), again


async def test_another_socket_replaces_ours(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.create_phone(PHONE)
    async with running_gateway(_sandbox_settings(tmp_path, sandbox), engine_factory=_engines(sandbox)) as (client, app):
        await _linked(client, sandbox, receiver, "rp1")
        conn = next(c for c in sandbox.list_connections() if c["open"] and c["phone"] == PHONE)
        await sandbox.kick(conn["id"], 440)
        await _assert_closed(client, app, receiver, "rp1", 440, "replaced")
        rt = app.state.gateway.manager.runtimes["rp1"]
        assert rt.lifecycle.phase == "failed" and rt.last_disconnect_body()["statusReason"] == 440
        # no reconnect loop: exactly one socket was opened for the device after the link
        assert not [c for c in sandbox.list_connections() if c["open"] and c["phone"] == PHONE]


@pytest.fixture
async def fake_gw(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI, FakeHub]]:
    hub = FakeHub()
    async with running_gateway(make_settings(tmp_path), engine_factory=hub.factory) as (client, app):
        yield client, app, hub


async def test_server_forbids(fake_gw: tuple[httpx.AsyncClient, FastAPI, FakeHub], receiver: Receiver) -> None:
    client, app, hub = fake_gw
    await create_instance(client, "fb1", receiver.url)
    await client.get("/instance/connect/fb1")
    engine = hub.latest("fb1")
    await engine.link()
    await receiver.wait_for(lambda: _opened(receiver, "fb1"), 10)
    engine.emit(CloseEvent(CloseReason.FORBIDDEN, 403, False, "forbidden by server"))
    await _assert_closed(client, app, receiver, "fb1", 403, "forbidden")
    starts = hub.starts
    await client.get("/instance/connect/fb1")
    assert hub.starts == starts + 1  # a terminal close is final: connect starts a new engine
