"""Test helpers: a loopback webhook receiver and a running gateway app (ASGI, lifespan started)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from evolink.api.apikey import ApiKey
from evolink.api.app import create_app
from evolink.api.settings import Settings, load_settings
from evolink.sandbox.server import Sandbox
from evolink.store import Database, open_database, sqlite_url

GLOBAL_KEY = "TEST-GLOBAL-KEY"

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def _pg_schema(action: str, schema: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test", timeout=5)
    try:
        if action == "create":
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        else:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def open_test_database(provider: str, tmp_path: Path) -> tuple[Database, str | None]:
    if provider == "sqlite":
        db = open_database(sqlite_url(tmp_path / "db"))
        await db.migrate()
        return db, None
    schema = f"evolink_test_{uuid.uuid4().hex[:12]}"
    try:
        await _pg_schema("create", schema)
    except OSError as exc:  # pragma: no cover - depends on the host
        # CI starts PostgreSQL itself (scripts/test.sh): there a missing server is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 not reachable in CI: {exc}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 not reachable: {exc}")
    db = open_database(PG_URL, schema=schema)
    await db.migrate()
    return db, schema


async def close_test_database(db: Database, schema: str | None) -> None:
    await db.dispose()
    if schema is not None:
        await _pg_schema("drop", schema)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """Minimal HTTP/1.1 server on 127.0.0.1 that records POSTed JSON and answers `status`."""

    status: int = 200
    port: int = 0
    received: list[Received] = field(default_factory=list)
    hits: int = 0  # every request, answered 2xx or not
    _server: asyncio.Server | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                _method, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status = self.status
                self.hits += 1
                if 200 <= status < 300:
                    self.received.append(Received(path, headers, json.loads(body) if body else None))
                self._changed.set()
                writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r.body for r in self.received if event is None or r.body.get("event") == event]

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), within)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "EVOLINK_DATA_DIR": tmp_path / "data", "AUTHENTICATION_API_KEY": GLOBAL_KEY, "CONNECT_WAIT_SECONDS": 3,
        "WEBHOOK_RETRY_INITIAL_DELAY_SECONDS": 0.05, "WEBHOOK_RETRY_MAX_DELAY_SECONDS": 0.2,
    }
    values.update(overrides)
    return load_settings(env_file=None, **values)


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, **kwargs: Any) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    kwargs.setdefault("clock_guard", None)
    kwargs.setdefault("api_key", ApiKey(settings.AUTHENTICATION_API_KEY or GLOBAL_KEY, "env"))
    app = create_app(settings, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway",
                                     headers={"apikey": GLOBAL_KEY}) as client:
            yield client, app


async def create_instance(client: httpx.AsyncClient, name: str, webhook_url: str | None = None,
                          **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"instanceName": name, "integration": "WHATSAPP-BAILEYS", **body}
    if webhook_url is not None:
        payload["webhook"] = {"url": webhook_url, "enabled": True, "events": []}
    resp = await client.post("/instance/create", json=payload)
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def spawn_serve(tmp_path: Path, sb: Sandbox, port: int, extra: dict[str, str] | None = None, *,
                      within: float = 30.0) -> asyncio.subprocess.Process:
    """A real `evolink serve` process on `port`, pointed at the sandbox, returned once it says it is up
    (its "gateway on" line); `extra` adds or overrides environment variables."""
    env = {**os.environ, "EVOLINK_DATA_DIR": str(tmp_path / "data"), "AUTHENTICATION_API_KEY": GLOBAL_KEY,
           "WA_WEBSOCKET_URL": sb.ws_url, "WA_ROOT_PUBLIC_KEY": sb.root_public_key, "LOG_LEVEL": "ERROR",
           "CLOCK_NTP_SERVERS": "127.0.0.1:9", "CLOCK_UPSTREAM_HTTP_URL": sb.admin_url + "/admin/clock",
           **(extra or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "evolink", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--env-file", str(tmp_path / "none.env"), env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL)

    async def ready() -> None:
        assert proc.stdout is not None
        while b"gateway on" not in (line := await proc.stdout.readline()):
            assert line, "evolink serve exited early"

    await asyncio.wait_for(ready(), within)
    return proc


async def until_up(client: httpx.AsyncClient, within: float = 15.0) -> None:
    """Bounded wait until a spawned gateway answers `GET /`."""
    async def loop() -> None:
        while True:
            try:
                if (await client.get("/")).status_code == 200:
                    return
            except httpx.TransportError:
                await asyncio.sleep(0.05)  # uvicorn binds just after printing its banner

    await asyncio.wait_for(loop(), within)
