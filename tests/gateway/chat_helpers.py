"""Helpers for the chat/group gateway tests: a sandbox with phones, a gateway on the real engine, linking."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from gw_helpers import (
    GLOBAL_KEY,
    PG_URL,
    Receiver,
    _pg_schema,
    create_instance,
    make_settings,
    running_gateway,
)

from evolink.gateway.engine_factory import real_engine_factory
from evolink.sandbox.server import Sandbox

PHONE, BOB, CAROL, NOBODY = "15550001111", "15550002222", "15550003333", "15559990000"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(qr_first_ttl=1.0, qr_next_ttl=0.5, qr_ref_count=6) as sb:
        for p in (PHONE, BOB, CAROL):
            sb.create_phone(p)
        yield sb


@contextlib.asynccontextmanager
async def gateway(tmp_path: Path, sb: Sandbox, provider: str = "sqlite"
                  ) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    """The gateway on the real engine; ``provider="postgresql"`` uses a fresh schema of the local server."""
    extra: dict[str, Any] = {}
    schema = None
    if provider == "postgresql":
        schema = f"evolink_chats_{uuid.uuid4().hex[:10]}"
        try:
            await _pg_schema("create", schema)
        except OSError as exc:  # pragma: no cover - depends on the host
            pytest.skip(f"PostgreSQL at 127.0.0.1:5432 not reachable: {exc}")
        extra = {"DATABASE_PROVIDER": "postgresql", "DATABASE_CONNECTION_URI": PG_URL}
    settings = make_settings(tmp_path, WA_WEBSOCKET_URL=sb.ws_url, WA_ROOT_PUBLIC_KEY=sb.root_public_key,
                             CONNECT_WAIT_SECONDS=10, **extra)
    engines = real_engine_factory(ws_url=sb.ws_url, root_public_key=bytes.fromhex(sb.root_public_key),
                                  phone_client="Evolution API", phone_name="Chrome",
                                  overrides={"qr_first_ttl": 1.0, "qr_next_ttl": 0.5, "reconnect_base": 0.05,
                                             "reconnect_cap": 0.5})
    try:
        async with running_gateway(settings, engine_factory=engines, db_schema=schema) as (client, app):
            yield client, app
    finally:
        if schema is not None:
            await _pg_schema("drop", schema)


async def link(client: httpx.AsyncClient, sb: Sandbox, receiver: Receiver, name: str, phone: str) -> None:
    await create_instance(client, name, receiver.url)
    resp = await client.get(f"/instance/connect/{name}", params={"number": phone})
    assert resp.status_code == 200, resp.text
    await sb.link_code(phone, resp.json()["pairingCode"])

    def opened() -> bool:
        return any(e["instance"] == name and e["data"].get("state") == "open"
                   for e in receiver.events("connection.update"))
    await receiver.wait_for(opened, 15)




@contextlib.asynccontextmanager
async def http_gateway(tmp_path: Path, sb: Sandbox) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The same gateway on a real loopback port (uvicorn), for clients with their own HTTP stack."""
    import uvicorn

    from evolink.api.apikey import ApiKey
    from evolink.api.app import create_app

    settings = make_settings(tmp_path, WA_WEBSOCKET_URL=sb.ws_url, WA_ROOT_PUBLIC_KEY=sb.root_public_key,
                             CONNECT_WAIT_SECONDS=10)
    engines = real_engine_factory(ws_url=sb.ws_url, root_public_key=bytes.fromhex(sb.root_public_key),
                                  phone_client="Evolution API", phone_name="Chrome",
                                  overrides={"qr_first_ttl": 1.0, "qr_next_ttl": 0.5})
    app = create_app(settings, engine_factory=engines, clock_guard=None, api_key=ApiKey(GLOBAL_KEY, "env"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)  # uvicorn exposes no readiness event
        base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
        async with httpx.AsyncClient(base_url=base, headers={"apikey": GLOBAL_KEY}, timeout=30) as client:
            yield client, base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
