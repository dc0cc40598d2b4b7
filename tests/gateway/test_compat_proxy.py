"""Issue 15: proxies are real — Evolution's `/proxy/set|find` bodies and `create` fields, the password
sealed at rest and never shown or logged, the engine linking through an HTTP CONNECT and a SOCKS5
proxy to the sandbox, and a proxy that refuses or is down reported with backoff (no storm)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from gw_fakes import FakeHub
from gw_helpers import Receiver, create_instance, make_settings, running_gateway
from proxy_servers import HttpConnectProxy, ProxyServer, Socks5Proxy

from evolink.gateway import EngineFactory
from evolink.gateway.engine_factory import real_engine_factory
from evolink.gateway.proxy import MASK, InvalidProxy, ProxySpec
from evolink.sandbox.server import Sandbox

PHONE = "15550002222"
SECRET = "s3cr:et/p@ss"  # characters that must be percent-encoded in a proxy URL


@pytest.fixture
async def http_proxy() -> AsyncIterator[HttpConnectProxy]:
    p = HttpConnectProxy(username="alice", password=SECRET)
    await p.start()
    yield p
    await p.stop()


@pytest.fixture
async def socks_proxy() -> AsyncIterator[Socks5Proxy]:
    p = Socks5Proxy(username="bob", password=SECRET)
    await p.start()
    yield p
    await p.stop()


def _body(proxy: ProxyServer, protocol: str, **extra: Any) -> dict[str, Any]:
    return {"enabled": True, "host": "127.0.0.1", "port": str(proxy.port), "protocol": protocol,
            "username": proxy.username, "password": proxy.password, **extra}


async def _closed_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


def test_spec_urls_and_validation() -> None:
    spec = ProxySpec.parse("proxy.example", "3128", "HTTP", "al ice", SECRET)
    assert spec.url() == "http://al%20ice:s3cr%3Aet%2Fp%40ss@proxy.example:3128"
    assert spec.redacted() == "http://al ice:***@proxy.example:3128" and SECRET not in repr(spec)
    assert ProxySpec.parse("10.0.0.1", 1080, "socks5").url() == "socks5h://10.0.0.1:1080"  # remote DNS
    assert ProxySpec.parse("::1", "1080", "socks4").url() == "socks4://[::1]:1080"
    for args, field in ((("h", "80", "ftp"), "protocol"), (("", "80", "http"), "host"),
                        (("http://h", "80", "http"), "host"), (("h", "0", "http"), "port"),
                        (("h", "x", "http"), "port"), (("h", "99999", "http"), "port")):
        with pytest.raises(InvalidProxy, match=f'"{field}"'):
            ProxySpec.parse(*args)


async def test_set_find_mask_seal_and_create(tmp_path: Path, http_proxy: HttpConnectProxy, receiver: Receiver,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    hub = FakeHub()
    # the proxy check tunnels to the upstream the engine would use: a loopback listener here
    settings = make_settings(tmp_path, WA_WEBSOCKET_URL=f"ws://127.0.0.1:{receiver.port}/ws/chat",
                             EVOLINK_SECRET_KEY="k" * 32)
    async with running_gateway(settings, engine_factory=hub.factory) as (client, app):
        await create_instance(client, "shop")
        assert (await client.get("/proxy/find/shop")).json() is None

        bad = await client.post("/proxy/set/shop", json=_body(http_proxy, "gopher"))
        assert bad.status_code == 400 and bad.json()["response"]["message"][0] == "Invalid proxy"
        wrong_pw = await client.post("/proxy/set/shop", json=_body(http_proxy, "http", password="nope"))
        assert wrong_pw.status_code == 400, wrong_pw.text
        assert wrong_pw.json()["response"]["message"][0] == "Invalid proxy"
        assert "407" in wrong_pw.json()["response"]["message"][1]  # the reason: the proxy wants credentials
        down = await client.post("/proxy/set/shop", json={**_body(http_proxy, "http"), "port": str(await _closed_port())})
        assert down.status_code == 400 and "did not open a tunnel" in down.json()["response"]["message"][1]

        ok = await client.post("/proxy/set/shop", json=_body(http_proxy, "http"))
        assert ok.status_code == 201, ok.text
        assert ok.json() == {"proxy": {"instanceName": "shop", "proxy": {
            "enabled": True, "host": "127.0.0.1", "port": str(http_proxy.port), "protocol": "http",
            "username": "alice", "password": MASK}}}
        assert http_proxy.tunnels == 1 and http_proxy.targets == [("127.0.0.1", receiver.port)]
        found = (await client.get("/proxy/find/shop")).json()
        assert {k: found[k] for k in ("enabled", "host", "port", "protocol", "username", "password")} == {
            "enabled": True, "host": "127.0.0.1", "port": str(http_proxy.port), "protocol": "http",
            "username": "alice", "password": MASK}
        assert set(found) >= {"id", "createdAt", "updatedAt", "instanceId"}

        store = app.state.gateway.store
        row_id = found["instanceId"]
        raw = await store.raw_proxy_password(row_id)
        assert raw.startswith("enc:v1:") and SECRET not in raw  # sealed at rest
        # the masked value sent back (a form round-trip) keeps the stored password
        again = await client.post("/proxy/set/shop", json=_body(http_proxy, "http", password=MASK))
        assert again.status_code == 201 and (await store.get_proxy(row_id)).password == SECRET
        rows = (await client.get("/instance/fetchInstances")).json()
        assert rows[0]["Proxy"]["password"] == MASK and rows[0]["Proxy"]["host"] == "127.0.0.1"

        # the engine gets the proxy URL at the next connection
        await client.get("/instance/connect/shop")
        assert hub.latest("shop").req.proxy == ProxySpec.parse(
            "127.0.0.1", http_proxy.port, "http", "alice", SECRET).url()

        off = await client.post("/proxy/set/shop", json={"enabled": False})
        assert off.status_code == 201 and off.json()["proxy"]["proxy"]["enabled"] is False
        assert (await client.get("/proxy/find/shop")).json()["host"] == ""

        # create with Evolution's proxy* fields: tested first; a bad proxy creates nothing
        refused = await client.post("/instance/create", json={
            "instanceName": "other", "integration": "WHATSAPP-BAILEYS", "proxyHost": "127.0.0.1",
            "proxyPort": str(await _closed_port()), "proxyProtocol": "http"})
        assert refused.status_code == 400 and refused.json()["response"]["message"][0] == "Invalid proxy"
        assert (await client.get("/proxy/find/other")).status_code == 404
        await create_instance(client, "other", proxyHost="127.0.0.1", proxyPort=str(http_proxy.port),
                              proxyProtocol="http", proxyUsername="alice", proxyPassword=SECRET)
        made = (await client.get("/proxy/find/other")).json()
        assert made["enabled"] is True and made["port"] == str(http_proxy.port) and made["password"] == MASK

    assert SECRET not in caplog.text  # never logged


async def test_global_proxy_fallback(tmp_path: Path, socks_proxy: Socks5Proxy) -> None:
    hub = FakeHub()
    settings = make_settings(tmp_path, PROXY_HOST="127.0.0.1", PROXY_PORT=str(socks_proxy.port),
                             PROXY_PROTOCOL="socks5", PROXY_USERNAME="bob", PROXY_PASSWORD=SECRET)
    async with running_gateway(settings, engine_factory=hub.factory) as (client, _):
        await create_instance(client, "g")
        await client.get("/instance/connect/g")
        assert hub.latest("g").req.proxy == f"socks5h://bob:s3cr%3Aet%2Fp%40ss@127.0.0.1:{socks_proxy.port}"


def _engines(sb: Sandbox, **overrides: Any) -> EngineFactory:
    return real_engine_factory(ws_url=sb.ws_url, root_public_key=bytes.fromhex(sb.root_public_key),
                               phone_client="Evolution API", phone_name="Chrome",
                               overrides={"qr_first_ttl": 2.0, "qr_next_ttl": 1.0, **overrides})


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(qr_first_ttl=2.0, qr_next_ttl=1.0, qr_ref_count=6) as sb:
        yield sb


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_links_through_proxy_to_sandbox(tmp_path: Path, sandbox: Sandbox, kind: str,
                                              http_proxy: HttpConnectProxy, socks_proxy: Socks5Proxy) -> None:
    proxy: ProxyServer = http_proxy if kind == "http" else socks_proxy
    sandbox.create_phone(PHONE)
    settings = make_settings(tmp_path, WA_WEBSOCKET_URL=sandbox.ws_url, WA_ROOT_PUBLIC_KEY=sandbox.root_public_key,
                             CONNECT_WAIT_SECONDS=10)
    async with running_gateway(settings, engine_factory=_engines(sandbox)) as (client, _):
        await create_instance(client, "via")
        assert (await client.post("/proxy/set/via", json=_body(proxy, kind))).status_code == 201
        checked = proxy.tunnels
        first = (await client.get("/instance/connect/via")).json()
        assert first.get("code"), first
        await sandbox.scan(PHONE, first["code"])
        deadline = time.monotonic() + 15
        while (await client.get("/instance/connectionState/via")).json()["instance"]["state"] != "open":
            assert time.monotonic() < deadline, "instance did not open through the proxy"
            await asyncio.sleep(0.1)
        assert proxy.tunnels > checked and proxy.auth_failures == 0
        # the sandbox's connection log: every WhatsApp socket of the gateway came from the proxy's side
        conns = sandbox.list_connections()
        assert conns and any(c["jid"] and c["jid"].startswith(PHONE) for c in conns)
        for c in conns:
            port = c["remote"].rpartition(":")[2]
            assert int(port) in proxy.upstream_ports[checked:], (c["remote"], proxy.upstream_ports)
        assert sandbox.ws_url.split("//")[1].split("/")[0] == f"{proxy.targets[-1][0]}:{proxy.targets[-1][1]}"


async def test_refusing_and_dead_proxy_reported_without_storm(tmp_path: Path, sandbox: Sandbox,
                                                              http_proxy: HttpConnectProxy) -> None:
    settings = make_settings(tmp_path, WA_WEBSOCKET_URL=sandbox.ws_url, WA_ROOT_PUBLIC_KEY=sandbox.root_public_key,
                             CONNECT_WAIT_SECONDS=1.5)
    engines = _engines(sandbox, reconnect_base=0.5, reconnect_cap=30.0, connect_timeout=3.0)
    async with running_gateway(settings, engine_factory=engines) as (client, _):
        await create_instance(client, "dead")
        assert (await client.post("/proxy/set/dead", json=_body(http_proxy, "http"))).status_code == 201
        http_proxy.refuse = True  # from now on every CONNECT gets 502
        t0 = time.monotonic()
        answer = (await client.get("/instance/connect/dead")).json()
        assert answer["error"] is True and "via proxy http://alice:***@127.0.0.1" in answer["message"], answer
        assert "502" in answer["message"] and SECRET not in answer["message"]
        state = (await client.get("/instance/connectionState/dead")).json()
        assert state["instance"]["state"] == "connecting"
        why = state["lastDisconnect"]
        assert why["reason"] == "connect_failed" and why["willReconnect"] is True and "502" in why["message"]
        assert why["proxy"] == f"http://alice:***@127.0.0.1:{http_proxy.port}"
        await asyncio.sleep(max(0.0, 5.0 - (time.monotonic() - t0)))  # observe a 5 s window
        # full-jitter exponential backoff (base 0.5 s): a handful of attempts, not a storm
        assert 2 <= http_proxy.refused <= 10, http_proxy.refused
        assert len(sandbox.list_connections()) == 0  # nothing reached WhatsApp around the proxy

        # down altogether: the reason says the proxy cannot be reached
        await http_proxy.stop()
        await client.post("/instance/restart/dead")
        deadline = time.monotonic() + 10
        while True:
            why = (await client.get("/instance/connectionState/dead")).json().get("lastDisconnect") or {}
            if "502" not in why.get("message", "502"):
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert why["reason"] == "connect_failed" and "via proxy" in why["message"], why
        assert len(sandbox.list_connections()) == 0
