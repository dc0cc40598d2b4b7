"""`evolink link` in a pseudo-terminal (pexpect) against the gateway + engine + sandbox: the code
shown large with a countdown, a code left to expire, Enter to retry, exit 0 once linked; QR mode
draws the QR and links on a scan."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pexpect  # type: ignore[import-untyped]
import pytest
from gw_helpers import GLOBAL_KEY, make_settings
from mgr_helpers import served

from evolink.gateway.engine_factory import real_engine_factory
from evolink.sandbox.server import Sandbox

PHONE = "15550001111"
TTL = 4.0
CODE = re.compile(rb"pairing code: ([A-Z0-9]{4}-[A-Z0-9]{4})")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[str, Sandbox]]:
    async with Sandbox.start(qr_first_ttl=TTL, qr_ref_count=1, qr_close_grace=0.3, pairing_code_ttl=TTL) as sb:
        sb.create_phone(PHONE)
        engines = real_engine_factory(ws_url=sb.ws_url, root_public_key=bytes.fromhex(sb.root_public_key),
                                      phone_client="Evolution API", phone_name="Chrome",
                                      overrides={"qr_first_ttl": TTL, "pairing_code_ttl": TTL})
        settings = make_settings(tmp_path, WA_WEBSOCKET_URL=sb.ws_url, WA_ROOT_PUBLIC_KEY=sb.root_public_key,
                                 CONNECT_WAIT_SECONDS=10)
        async with served(settings, engine_factory=engines) as (base, _app):
            yield base, sb


def spawn(base: str, *args: str) -> Any:
    return pexpect.spawn(sys.executable, ["-m", "evolink", "link", *args, "--url", base, "--key", GLOBAL_KEY,
                                          "--poll", "0.25", "--backoff", "0.5"],
                         timeout=30, dimensions=(60, 120), maxread=20000)


async def expect(child: Any, pattern: Any, within: float = 30) -> Any:
    try:
        await asyncio.to_thread(child.expect, pattern, timeout=within)
    except pexpect.TIMEOUT:
        raise AssertionError(f"{pattern!r} not seen; the terminal showed:\n{child.before.decode(errors='replace')}") from None
    return child.match


async def test_link_by_code_with_expiry_and_enter(gateway: tuple[str, Sandbox]) -> None:
    base, sb = gateway
    child = spawn(base, "shop", "--create", "--number", PHONE, "--attempts", "1")
    try:
        await expect(child, rb"Created instance shop")
        first = (await expect(child, CODE)).group(1).decode()
        await expect(child, rb"Link with phone number instead")
        seen = {int(m.group(1)) for _ in range(2) for m in [await expect(child, rb"expires in 0:0(\d)")]}
        assert len(seen) == 2  # the countdown moves
        # nobody types it: the only attempt expires, the CLI says why and waits for Enter
        await expect(child, rb"Not linked: 1 pairing code\(s\) expired")
        await expect(child, rb"Press Enter to try again")
        child.sendline("")
        second = (await expect(child, CODE)).group(1).decode()
        assert second != first
        await sb.link_code(PHONE, second)
        await expect(child, rf"Linked as \+{PHONE} in \d+\.\d s".encode())
        await asyncio.to_thread(child.expect, pexpect.EOF, timeout=10)
    finally:
        child.close()
    assert child.exitstatus == 0


async def test_link_by_qr_draws_and_links(gateway: tuple[str, Sandbox]) -> None:
    base, sb = gateway
    async with httpx.AsyncClient(base_url=base, headers={"apikey": GLOBAL_KEY}) as api:
        (await api.post("/instance/create", json={"instanceName": "kiosk"})).raise_for_status()
    child = spawn(base, "kiosk")
    try:
        await expect(child, rb"QR 1 \(series 1\): scan it with WhatsApp")
        await expect(child, "[█▀▄]".encode())  # the QR is drawn
        async with httpx.AsyncClient(base_url=base, headers={"apikey": GLOBAL_KEY}) as api:
            qr = (await api.get("/instance/connect/kiosk")).json()["code"]
        await sb.scan(PHONE, qr)
        await expect(child, rf"Linked as \+{PHONE}".encode())
        await asyncio.to_thread(child.expect, pexpect.EOF, timeout=10)
    finally:
        child.close()
    assert child.exitstatus == 0


async def test_bad_key_exits_2(gateway: tuple[str, Sandbox]) -> None:
    base, _sb = gateway
    child = pexpect.spawn(sys.executable, ["-m", "evolink", "link", "x", "--url", base, "--key", "nope"], timeout=30)
    try:
        await expect(child, rb"evolink link: HTTP (401|404)")
        await asyncio.to_thread(child.expect, pexpect.EOF, timeout=10)
    finally:
        child.close()
    assert child.exitstatus == 2
