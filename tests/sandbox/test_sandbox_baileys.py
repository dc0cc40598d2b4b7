"""Acceptance: the unmodified Baileys 7.0.0-rc14 client links and logs in against the sandbox.

Each test runs over ws:// and wss:// (self-signed; the driver passes an agent that skips
verification). Timeouts are shortened through configuration, never by sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandbox_baileys import BaileysDriver, available

from evolink.sandbox.server import Sandbox
from evolink.wire.crypto import generate_pairing_code

pytestmark = [
    pytest.mark.baileys,
    pytest.mark.skipif(not available(), reason="node or the pinned Baileys peer is missing"),
]

PHONE = "15550001111"
Start = Callable[..., Awaitable[BaileysDriver]]


@pytest.fixture(params=["ws", "wss"])
async def sb(request: pytest.FixtureRequest) -> AsyncIterator[Sandbox]:
    async with Sandbox.start(tls=request.param == "wss") as sandbox:
        sandbox.create_phone(PHONE)
        yield sandbox


@pytest.fixture
async def http(sb: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sb.admin_url, timeout=30) as client:
        yield client


def _driver_args(sb: Sandbox, auth: Path, **kw: Any) -> dict[str, Any]:
    return {"url": sb.ws_url, "root_key": sb.root_public_key, "auth": auth, **kw}


async def _link_by_qr(drv: BaileysDriver, http: httpx.AsyncClient) -> dict[str, Any]:
    qr = await drv.expect("qr")
    assert qr["qr"].startswith("https://wa.me/settings/linked_devices#")
    res = await http.post(f"/admin/phones/{PHONE}/scan", json={"qr": qr["qr"]})
    assert res.status_code == 200, res.text
    device: dict[str, Any] = res.json()
    await drv.expect("paired", me=device["jid"])
    await drv.expect("close", status=515)
    return device


async def test_qr_link_keepalive_and_removal(sb: Sandbox, http: httpx.AsyncClient, drivers: Start,
                                              tmp_path: Path) -> None:
    drv = await drivers(**_driver_args(sb, tmp_path, keepalive_ms=700, hold_ms=1600))
    device = await _link_by_qr(drv, http)
    opened = await drv.expect("open")
    assert opened["me"] == device["jid"] and opened["lid"] == device["lid"]
    held = await drv.expect("held")
    assert held["still_open"] is True and held["pongs"] >= 2

    phone = (await http.get(f"/admin/phones/{PHONE}")).json()
    assert [d["device"] for d in phone["devices"]] == [device["device"]]
    assert phone["devices"][0]["online"] is True
    assert phone["devices"][0]["prekeys"] > 0  # Baileys uploaded its pre-keys after success
    conns = (await http.get("/admin/connections")).json()
    login = [c for c in conns if c["open"] and c["state"] == "login"]
    assert len(login) == 1 and login[0]["jid"] == device["jid"]
    assert login[0]["pings_answered"] >= 2 and login[0]["stanzas"]["ping"] >= 2
    # The init queries were answered (Baileys would otherwise stall 60 s before them).
    assert {"count", "registration", "active", "digest", "props", "privacy", "iq:get:blocklist"} <= set(
        login[0]["stanzas"]
    )

    res = await http.delete(f"/admin/phones/{PHONE}/devices/{device['device']}")
    assert res.status_code == 200
    await drv.expect("close", status=401)
    assert (await http.get(f"/admin/phones/{PHONE}")).json()["devices"] == []


async def test_pairing_code_link(sb: Sandbox, http: httpx.AsyncClient, drivers: Start, tmp_path: Path) -> None:
    drv = await drivers(**_driver_args(sb, tmp_path, mode="code", phone=PHONE, until="open"))
    code = (await drv.expect("pairing_code"))["code"]
    res = await http.post(f"/admin/phones/{PHONE}/link-code", json={"code": f"{code[:4]}-{code[4:].lower()}"})
    assert res.status_code == 200, res.text
    device = res.json()
    assert device["method"] == "code"
    await drv.expect("paired", me=device["jid"])
    await drv.expect("close", status=515)
    opened = await drv.expect("open")
    assert opened["me"] == device["jid"] and opened["lid"] == device["lid"]
    conns = (await http.get("/admin/connections")).json()
    registration = next(c for c in conns if c["state"] == "registration")
    assert registration["stanzas"]["companion_hello"] == 1
    assert registration["stanzas"]["companion_finish"] == 1


async def test_wrong_code_then_right_code(sb: Sandbox, http: httpx.AsyncClient, drivers: Start,
                                          tmp_path: Path) -> None:
    drv = await drivers(**_driver_args(sb, tmp_path, mode="code", phone=PHONE, until="open"))
    code = (await drv.expect("pairing_code"))["code"]
    wrong = generate_pairing_code()
    while wrong == code:
        wrong = generate_pairing_code()
    res = await http.post(f"/admin/phones/{PHONE}/link-code", json={"code": wrong})
    assert res.status_code == 400 and res.json()["error"] == "wrong_code"
    assert (await http.get(f"/admin/phones/{PHONE}")).json()["devices"] == []
    assert not drv.seen("paired")
    # Not linked, but the registration socket is still usable: the right code links it.
    res = await http.post(f"/admin/phones/{PHONE}/link-code", json={"code": code})
    assert res.status_code == 200, res.text
    await drv.expect("open")


async def test_expired_code_not_linked(sb: Sandbox, http: httpx.AsyncClient, drivers: Start,
                                       tmp_path: Path) -> None:
    sb.config.pairing_code_ttl = 5.0
    drv = await drivers(**_driver_args(sb, tmp_path, mode="code", phone=PHONE))
    code = (await drv.expect("pairing_code"))["code"]
    # Move the sandbox clock past the TTL instead of waiting for it.
    assert (await http.put("/admin/clock", json={"offset_seconds": 6})).status_code == 200
    res = await http.post(f"/admin/phones/{PHONE}/link-code", json={"code": code})
    assert res.status_code == 410 and res.json()["error"] == "expired"
    assert (await http.get(f"/admin/phones/{PHONE}")).json()["devices"] == []
    assert not drv.seen("paired")


async def test_qr_refs_exhausted_close_408(sb: Sandbox, http: httpx.AsyncClient, drivers: Start,
                                           tmp_path: Path) -> None:
    drv = await drivers(**_driver_args(sb, tmp_path, qr_timeout_ms=150))
    closed = await drv.expect("close")
    assert closed["status"] == 408
    qrs = drv.seen("qr")
    assert len(qrs) == sb.config.qr_ref_count == 6
    assert len({q["qr"] for q in qrs}) == 6
    assert (await http.get(f"/admin/phones/{PHONE}")).json()["devices"] == []


async def test_restart_logs_in_with_stored_creds(sb: Sandbox, http: httpx.AsyncClient, drivers: Start,
                                                 tmp_path: Path) -> None:
    first = await drivers(**_driver_args(sb, tmp_path, until="open"))
    device = await _link_by_qr(first, http)
    await first.expect("open")
    assert await first.wait() == 0

    second = await drivers(**_driver_args(sb, tmp_path, mode="login", until="open"))
    socket = await second.expect("socket")
    assert socket["registered"] is True and socket["me"] == device["jid"]
    opened = await second.expect("open")
    assert opened["me"] == device["jid"]
    assert not second.seen("qr")
    assert await second.wait() == 0
    phone = (await http.get(f"/admin/phones/{PHONE}")).json()
    assert len(phone["devices"]) == 1 and phone["devices"][0]["last_login_at"] is not None
    # The first login taught Baileys its edge routing info; the restarted process uses the ED intro.
    logins = [c for c in (await http.get("/admin/connections")).json() if c["state"] == "login"]
    assert [c["edge_routing"] for c in logins] == [False, True]
