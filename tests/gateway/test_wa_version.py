"""Issue 10, WA Web version: CONFIG_SESSION_PHONE_VERSION is honoured, validated, shown in `GET /`, and a
retired version (the server's `failure 405`) is reported with the variable that fixes it — end to end
against a sandbox that refuses versions older than its `min_client_version`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gw_helpers import create_instance, make_settings, running_gateway

from evolink.api.settings import ConfigError
from evolink.sandbox.server import Sandbox
from evolink.wa.config import DEFAULT_VERSION, parse_version
from evolink.wa.config import ConfigError as EngineConfigError
from evolink.wa.events import CloseReason
from evolink.wa.stream_errors import from_failure

PHONE = "15550002222"
NEWER = (DEFAULT_VERSION[0], DEFAULT_VERSION[1], DEFAULT_VERSION[2] + 1)
NEWER_TEXT = ".".join(map(str, NEWER))


@pytest.mark.parametrize("bad", ["2.3000", "2.3000.x", "2.3000.1.4", "v2.3000.1", "2.٣٠٠٠.1", "2.3000.99999999999"])
def test_version_variable_is_validated(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="CONFIG_SESSION_PHONE_VERSION"):
        make_settings(tmp_path, CONFIG_SESSION_PHONE_VERSION=bad)
    with pytest.raises(EngineConfigError):
        parse_version(bad)


def test_version_variable_sets_the_engine_version(tmp_path: Path) -> None:
    assert make_settings(tmp_path).wa_version == DEFAULT_VERSION
    assert make_settings(tmp_path, CONFIG_SESSION_PHONE_VERSION="").wa_version == DEFAULT_VERSION
    s = make_settings(tmp_path, CONFIG_SESSION_PHONE_VERSION=" 2.3000.1099999999 ")
    assert s.wa_version == (2, 3000, 1099999999) and s.CONFIG_SESSION_PHONE_VERSION == "2.3000.1099999999"


def test_failure_405_names_the_variable() -> None:
    d = from_failure("405", None, (2, 3000, 5))
    assert d.reason is CloseReason.CLIENT_OUTDATED and not d.will_reconnect and not d.wipe_creds
    assert "CONFIG_SESSION_PHONE_VERSION" in d.message and "2.3000.5" in d.message


@pytest.fixture
async def strict_sandbox() -> AsyncIterator[Sandbox]:
    """A sandbox that, like WhatsApp after a retirement, refuses the engine's built-in version."""
    async with Sandbox.start(min_client_version=NEWER) as sb:
        yield sb


def _settings(tmp_path: Path, sb: Sandbox, **extra: Any) -> Any:
    return make_settings(tmp_path, WA_WEBSOCKET_URL=sb.ws_url, WA_ROOT_PUBLIC_KEY=sb.root_public_key,
                         CONNECT_WAIT_SECONDS=10, **extra)


async def _state(client: httpx.AsyncClient, name: str, want: str, within: float = 15.0) -> dict[str, Any]:
    async def loop() -> dict[str, Any]:
        while True:
            body: dict[str, Any] = (await client.get(f"/instance/connectionState/{name}")).json()
            if body["instance"]["state"] == want:
                return body
            await asyncio.sleep(0.05)  # polling an HTTP state: bounded by wait_for below

    return await asyncio.wait_for(loop(), within)


async def test_retired_version_says_which_variable_and_setting_it_links(tmp_path: Path,
                                                                         strict_sandbox: Sandbox) -> None:
    strict_sandbox.create_phone(PHONE)
    # 1. the built-in version is refused: the answer names the variable, no reconnect storm, no wipe
    async with running_gateway(_settings(tmp_path, strict_sandbox)) as (client, _):
        root = (await client.get("/")).json()
        assert root["whatsappWebVersion"] == ".".join(map(str, DEFAULT_VERSION))
        await create_instance(client, "old")
        answer = (await client.get("/instance/connect/old", params={"number": PHONE})).json()
        state = await _state(client, "old", "close")
        why = state["lastDisconnect"]
        assert why["statusReason"] == 405 and why["willReconnect"] is False, state
        assert "CONFIG_SESSION_PHONE_VERSION" in why["message"], why
        assert answer["error"] is True and "CONFIG_SESSION_PHONE_VERSION" in answer["message"], answer
    # 2. the operator sets the variable: the same instance links by code
    settings = _settings(tmp_path, strict_sandbox, CONFIG_SESSION_PHONE_VERSION=NEWER_TEXT)
    async with running_gateway(settings) as (client, _):
        assert (await client.get("/")).json()["whatsappWebVersion"] == NEWER_TEXT
        answer = (await client.get("/instance/connect/old", params={"number": PHONE})).json()
        code = answer.get("pairingCode")
        assert isinstance(code, str) and len(code) == 8, answer
        await strict_sandbox.link_code(PHONE, code)
        await _state(client, "old", "open", 20)
