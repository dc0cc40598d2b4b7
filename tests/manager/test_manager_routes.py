"""The manager's API over a real loopback port: session tokens, the scoped SSE stream, views, history, page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gw_fakes import FakeHub
from gw_helpers import GLOBAL_KEY, create_instance, make_settings
from mgr_helpers import SseReader, served

from evolink.gateway.live import LiveScope, LiveTokens
from evolink.wa.events import CloseEvent, CloseReason

PHONE = "15550001111"


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, FakeHub, Any]]:
    hub = FakeHub()
    async with served(make_settings(tmp_path), engine_factory=hub.factory) as (base, app):
        async with httpx.AsyncClient(base_url=base, headers={"apikey": GLOBAL_KEY}, timeout=15) as client:
            yield client, hub, app


async def _token(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    resp = await client.post("/manager/api/session", headers={"apikey": key})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_stream_is_scoped_to_the_key(gw: tuple[httpx.AsyncClient, FakeHub, Any]) -> None:
    client, hub, app = gw
    a = await create_instance(client, "a")
    await create_instance(client, "b")
    session_a = await _token(client, a["hash"])
    assert session_a["scope"] == "instance" and session_a["instance"] == "a" and a["hash"] not in session_a["token"]
    session_all = await _token(client, GLOBAL_KEY)
    assert session_all["scope"] == "global" and session_all["instance"] is None

    async with client.stream("GET", "/manager/api/events", params={"token": session_a["token"]}) as only_a, \
            client.stream("GET", "/manager/api/events", params={"token": session_all["token"]}) as everyone:
        assert only_a.status_code == 200 and only_a.headers["content-type"].startswith("text/event-stream")
        ra, rall = SseReader(only_a), SseReader(everyone)
        assert (await ra.next_event())[0] == "ready" and (await rall.next_event())[0] == "ready"
        assert len(app.state.live_bus) == 2
        (await client.get("/instance/connect/b")).raise_for_status()
        (await client.get("/instance/connect/a", params={"number": PHONE})).raise_for_status()
        # the global stream sees b's QR, then a's code; a's stream sees only a's events
        seen_b = await rall.until(lambda _n, d: d.get("instance") == "b" and d["event"] == "qrcode.updated")
        assert seen_b["data"]["qrcode"]["base64"].startswith("data:image/png;base64,")
        code_ev = await ra.until(lambda _n, d: d["event"] == "qrcode.updated" and d["data"]["qrcode"]["pairingCode"])
        assert code_ev["instance"] == "a" and code_ev["date_time"].endswith("Z")
        await rall.until(lambda _n, d: d.get("instance") == "a" and d["event"] == "qrcode.updated"
                         and d["data"]["qrcode"]["pairingCode"])
        await hub.latest("a").link(PHONE)
        opened = await ra.until(lambda _n, d: d["event"] == "connection.update" and d["data"]["state"] == "open")
        assert opened["data"]["wuid"] == f"{PHONE}@s.whatsapp.net"
        assert all(d.get("instance") == "a" for name, d in ra.named if name == "message")

    async def unsubscribed() -> None:
        while True:
            if len(app.state.live_bus) == 0:
                return
            await asyncio.sleep(0.02)  # the server notices the closed streams on its own schedule

    await asyncio.wait_for(unsubscribed(), 10)  # closed browsers leave no subscriber behind


@pytest.mark.parametrize("token", ["", "nope", "YWJj.ZGVm", GLOBAL_KEY])
async def test_stream_refuses_bad_tokens(gw: tuple[httpx.AsyncClient, FakeHub, Any], token: str) -> None:
    client, _hub, _app = gw
    resp = await client.get("/manager/api/events", params={"token": token})
    assert resp.status_code == 401
    body = resp.json()
    assert body["status"] == 401 and body["error"] == "Unauthorized" and "stream token" in str(body["response"])


async def test_stream_refuses_expired_token(gw: tuple[httpx.AsyncClient, FakeHub, Any]) -> None:
    client, _hub, app = gw
    tokens: LiveTokens = app.state.live_tokens
    stale = LiveTokens(tokens._secret, ttl=-1).issue(LiveScope("*"))
    resp = await client.get("/manager/api/events", params={"token": stale})
    assert resp.status_code == 401 and "expired" in resp.text


async def test_session_needs_a_known_key(gw: tuple[httpx.AsyncClient, FakeHub, Any]) -> None:
    client, _hub, _app = gw
    assert (await client.post("/manager/api/session", headers={"apikey": "wrong"})).status_code == 401
    bare = httpx.AsyncClient(base_url=str(client.base_url))
    async with bare:
        resp = await bare.post("/manager/api/session")
    assert resp.status_code == 401 and resp.json()["response"]["message"] == "Unauthorized"


async def test_views_history_and_instance_token_scope(gw: tuple[httpx.AsyncClient, FakeHub, Any]) -> None:
    client, hub, _app = gw
    a = await create_instance(client, "a")
    await create_instance(client, "b")
    answer = (await client.get("/instance/connect/a", params={"number": PHONE})).json()
    code = answer["pairingCode"]

    view = (await client.get("/manager/api/instances/a")).json()
    assert view["state"] == "connecting" and view["mode"] == "code" and view["qrLimit"] == 30
    assert view["pairing"]["pairingCode"] == code and view["pairing"]["pairingCodeExpiresAt"].endswith("Z")
    assert view["browser"] == "Chrome on Mac OS" and view["serverNow"].endswith("Z")

    token_a = {"apikey": a["hash"]}
    listed = (await client.get("/manager/api/instances", headers=token_a)).json()
    assert [r["name"] for r in listed] == ["a"]
    assert {r["name"] for r in (await client.get("/manager/api/instances")).json()} == {"a", "b"}
    assert (await client.get("/manager/api/instances/b", headers=token_a)).status_code == 401
    assert (await client.get("/manager/api/instances/b/history", headers=token_a)).status_code == 401
    assert (await client.get("/manager/api/instances/zzz")).status_code == 404

    await hub.latest("a").link(PHONE)
    await (await _app_runtime(_app, "a")).settle()
    history = (await client.get("/manager/api/instances/a/history", headers=token_a)).json()
    assert [(h["method"], h["codeSuffix"], h["outcome"]) for h in history] == [("code", code[-2:], "success")]
    assert code not in str(history)  # only the last two characters are stored and shown
    assert history[0]["issuedAtCorrected"].endswith("Z") and history[0]["durationSeconds"] >= 0
    done = (await client.get("/manager/api/instances/a")).json()
    assert done["state"] == "open" and done["pairing"] is None and done["ownerJid"] == f"{PHONE}@s.whatsapp.net"
    assert done["lastSuccessSeconds"] == history[0]["durationSeconds"]

    clock = (await client.get("/manager/api/clock", headers=token_a)).json()
    assert clock["guard"] is False and clock["allowed"] is True


async def _app_runtime(app: Any, name: str) -> Any:
    return app.state.gateway.manager.runtimes[name]


async def test_last_disconnect_reason_in_plain_keys(gw: tuple[httpx.AsyncClient, FakeHub, Any]) -> None:
    client, hub, app = gw
    await create_instance(client, "a")
    (await client.get("/instance/connect/a")).raise_for_status()
    rt = await _app_runtime(app, "a")
    hub.latest("a").emit(CloseEvent(CloseReason.FORBIDDEN, 403, False, "banned"))
    await rt.settle()
    view = (await client.get("/manager/api/instances/a")).json()
    assert view["state"] == "close"
    assert view["lastDisconnect"] == {"reason": "server_refused", "code": 403, "message": "banned", "at": None}


async def test_page_and_assets_are_served(gw: tuple[httpx.AsyncClient, FakeHub, Any]) -> None:
    client, _hub, _app = gw
    redirect = await client.get("/manager")
    assert redirect.status_code in (301, 302, 307) and redirect.headers["location"] == "/manager/"
    page = await client.get("/manager/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/manager/static/app.js" in page.text and "https://" not in page.text  # nothing from a CDN
    for asset, kind in (("app.js", "javascript"), ("i18n.js", "javascript"), ("app.css", "css")):
        resp = await client.get(f"/manager/static/{asset}")
        assert resp.status_code == 200 and kind in resp.headers["content-type"], asset
    root = (await client.get("/")).json()
    assert root["manager"] == str(client.base_url).rstrip("/") + "/manager"  # as in Evolution's GET /
    i18n = (await client.get("/manager/static/i18n.js")).text
    assert '"pt-BR"' in i18n and '"zh-CN"' in i18n


async def test_server_disable_manager(tmp_path: Path) -> None:
    hub = FakeHub()
    async with served(make_settings(tmp_path, SERVER_DISABLE_MANAGER=True), engine_factory=hub.factory) as (base, app):
        async with httpx.AsyncClient(base_url=base, headers={"apikey": GLOBAL_KEY}) as client:
            assert "manager" not in (await client.get("/")).json()
            for path in ("/manager/", "/manager/static/app.js"):
                assert (await client.get(path)).status_code == 404
            assert (await client.post("/manager/api/session")).status_code == 404
            # no live-stream listener of the manager; only the chats feed (gateway/chat_feed.py) listens
            assert app.state.gateway.publisher.listeners == [app.state.chat_feed.listener]
