"""Server-side protocol behaviour, driven by a small Python companion built on evolink.wire."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest
from sandbox_client import (
    Client,
    Closed,
    Creds,
    iq,
    login_payload,
    pair_device_sign,
    prekey_upload,
    registration_payload,
)
from websockets.exceptions import ConnectionClosed

from evolink.sandbox.errors import AdminError
from evolink.sandbox.server import Sandbox
from evolink.wire import certs, qr
from evolink.wire.binary import Node

PHONE = "15550002222"


async def _register(sb: Sandbox, creds: Creds | None = None, **kw: object) -> tuple[Client, Creds, list[str]]:
    creds = creds or Creds()
    client = await Client.connect(sb.ws_url, creds, registration_payload(creds), **kw)  # type: ignore[arg-type]
    node = await client.recv()
    assert node.tag == "iq" and node.attrs["type"] == "set"
    pair_device = node.child("pair-device")
    assert pair_device is not None
    refs = []
    for ref in pair_device.children("ref"):
        assert isinstance(ref.content, bytes)  # refs must travel as BINARY content
        refs.append(ref.content.decode())
    return client, creds, refs


async def _link(sb: Sandbox, phone: str = PHONE) -> Creds:
    client, creds, refs = await _register(sb)
    text = qr.build_qr(refs[0], creds.noise.public, creds.identity.public, creds.adv_secret)
    scan = asyncio.create_task(sb.scan(phone, text))
    success = await client.recv()
    assert success.attrs.get("t") and success.child("pair-success") is not None
    await client.send(pair_device_sign(creds, success))
    restart = await client.recv()
    assert restart.tag == "stream:error" and restart.attrs["code"] == "515"
    device = await scan
    assert device["jid"] == f"{phone}:{creds.device}@s.whatsapp.net"
    await client.wait_closed()
    return creds


async def _login(sb: Sandbox, creds: Creds) -> tuple[Client, Node]:
    assert creds.phone is not None
    client = await Client.connect(sb.ws_url, creds, login_payload(creds.phone, creds.device))
    return client, await client.recv()


@pytest.fixture
async def sb() -> object:
    async with Sandbox.start() as sandbox:
        sandbox.create_phone(PHONE)
        yield sandbox


async def test_cert_chain_is_signed_by_the_persisted_root(sb: Sandbox) -> None:
    client, _, refs = await _register(sb)
    info = certs.verify_cert_chain(client.cert_payload, server_static=client.server_static,
                                   root_public=bytes.fromhex(sb.root_public_key), now=sb.clock.time())
    assert info.intermediate.issuer_serial == 0 and info.leaf.key == client.server_static
    now = sb.clock.time()
    assert info.leaf.not_before <= now - 86_000 and info.leaf.not_after >= now + 29 * 86_400
    assert len(refs) == 6 and len(set(refs)) == 6
    # The real WhatsApp root does not validate the sandbox chain.
    with pytest.raises(certs.CertificateError):
        certs.verify_cert_chain(client.cert_payload, server_static=client.server_static,
                                root_public=certs.WA_CERT_PUBLIC_KEY, now=now)
    await client.close()


async def test_cert_validity_follows_settings_and_clock(sb: Sandbox) -> None:
    sb.set_cert_validity(-3600, 60)
    sb.set_clock_offset(-7200)  # sandbox two hours behind: certs end before host "now"
    client, _, _ = await _register(sb)
    with pytest.raises(certs.CertificateError) as err:
        certs.verify_cert_chain(client.cert_payload, server_static=client.server_static,
                                root_public=bytes.fromhex(sb.root_public_key), now=time.time())
    assert err.value.check == "intermediate_validity"
    await client.close()


async def test_edge_routing_intro_is_accepted(sb: Sandbox) -> None:
    client, _, _ = await _register(sb, routing_info=b"\x08\x02\x08\x05")
    conn = next(c for c in sb.list_connections() if c["open"])
    assert conn["edge_routing"] is True and conn["state"] == "registration"
    await client.close()


async def test_link_login_success_and_post_login_answers(sb: Sandbox) -> None:
    creds = await _link(sb)
    client, success = await _login(sb, creds)
    assert success.tag == "success"
    phone = sb.get_phone(PHONE)
    assert success.attrs["lid"] == f"{phone['lid'].split('@')[0]}:{creds.device}@lid"
    assert abs(int(success.attrs["t"]) - time.time()) <= 2
    count = await client.query(iq("encrypt", "get", [Node("count")]))
    assert count.child("count").attrs["value"] == "0"  # type: ignore[union-attr]
    upload = await client.query(prekey_upload(creds, range(1, 31)))
    assert upload.attrs["type"] == "result"
    count = await client.query(iq("encrypt", "get", [Node("count")]))
    assert count.child("count").attrs["value"] == "30"  # type: ignore[union-attr]
    digest = await client.query(iq("encrypt", "get", [Node("digest")]))
    assert digest.child("digest") is not None
    privacy = await client.query(iq("privacy", "get", [Node("privacy")]))
    assert {c.attrs["name"] for c in privacy.child("privacy").children("category")} >= {"last", "online"}  # type: ignore[union-attr]
    blocklist = await client.query(iq("blocklist", "get"))
    assert blocklist.child("list") is not None
    props = await client.query(iq("abt", "get", [Node("props", {"protocol": "1"})]))
    assert props.child("props") is not None
    pong = await client.query(iq("w:p", "get"))  # whatsmeow's childless ping
    assert pong.attrs["type"] == "result"
    # Edge routing info follows success; a client presenting it in the ED intro is accepted.
    routing = client.ib[0].child("edge_routing").child("routing_info")  # type: ignore[union-attr]
    assert routing is not None and routing.content == sb.config.edge_routing_info
    await client.close()
    again = await Client.connect(sb.ws_url, creds, login_payload(creds.phone or "", creds.device),
                                 routing_info=routing.content)  # type: ignore[arg-type]
    assert (await again.recv()).tag == "success"
    assert sb.list_connections()[-1]["edge_routing"] is True
    await again.close()


@pytest.mark.parametrize("case", ["unknown_device", "wrong_noise_key", "no_device_field", "unknown_phone"])
async def test_login_failure_401(sb: Sandbox, case: str) -> None:
    creds = await _link(sb)
    assert creds.phone is not None and creds.device is not None
    phone, device = creds.phone, creds.device
    if case == "unknown_device":
        device += 5
    elif case == "wrong_noise_key":
        creds = Creds()
    elif case == "unknown_phone":
        phone = "15559999999"
    client = await Client.connect(sb.ws_url, creds,
                                  login_payload(phone, None if case == "no_device_field" else device))
    failure = await client.recv()
    assert failure.tag == "failure" and failure.attrs["reason"] == "401"
    await client.wait_closed()


async def test_refs_exhausted_server_closes_with_408() -> None:
    async with Sandbox.start(qr_first_ttl=0.3, qr_next_ttl=0.1, qr_close_grace=0.1) as sb:
        sb.create_phone(PHONE)
        client, creds, refs = await _register(sb)
        end = await client.recv(within=5)
        assert end.tag == "stream:error" and end.attrs["code"] == "408"
        await client.wait_closed()
        text = qr.build_qr(refs[-1], creds.noise.public, creds.identity.public, creds.adv_secret)
        with pytest.raises(AdminError) as err:
            await sb.scan(PHONE, text)
        assert err.value.error == "unknown_ref"
        assert sb.get_phone(PHONE)["devices"] == []


async def test_expired_ref_is_refused(sb: Sandbox) -> None:
    client, creds, refs = await _register(sb)
    sb.set_clock_offset(61)  # the first ref lives 60 s
    text = qr.build_qr(refs[0], creds.noise.public, creds.identity.public, creds.adv_secret)
    with pytest.raises(AdminError) as err:
        await sb.scan(PHONE, text)
    assert err.value.status == 410
    # The second ref (80 s) is still good.
    text = qr.build_qr(refs[1], creds.noise.public, creds.identity.public, creds.adv_secret)
    scan = asyncio.create_task(sb.scan(PHONE, text))
    success = await client.recv()
    assert int(success.attrs["t"]) >= int(time.time()) + 60  # t is sandbox time
    await client.send(pair_device_sign(creds, success))
    assert (await scan)["device"] == creds.device


async def test_bad_device_signature_is_not_linked(sb: Sandbox) -> None:
    client, creds, refs = await _register(sb)
    text = qr.build_qr(refs[0], creds.noise.public, creds.identity.public, creds.adv_secret)
    scan = asyncio.create_task(sb.scan(PHONE, text))
    success = await client.recv()
    reply = pair_device_sign(creds, success)
    ident = reply.child("pair-device-sign").child("device-identity")  # type: ignore[union-attr]
    assert ident is not None and isinstance(ident.content, bytes)
    ident.content = ident.content[:-1] + bytes([ident.content[-1] ^ 1])  # corrupt deviceSignature
    await client.send(reply)
    with pytest.raises(AdminError) as err:
        await scan
    assert err.value.error == "bad_device_signature"
    assert sb.get_phone(PHONE)["devices"] == []


async def test_scan_checks_the_qr_against_the_socket(sb: Sandbox) -> None:
    client, creds, refs = await _register(sb)
    other = Creds()
    with pytest.raises(AdminError) as err:
        await sb.scan(PHONE, qr.build_qr(refs[0], other.noise.public, creds.identity.public, creds.adv_secret))
    assert err.value.error == "noise_key_mismatch"
    with pytest.raises(AdminError) as err:
        await sb.scan(PHONE, qr.build_qr(refs[0], creds.noise.public, other.identity.public, creds.adv_secret))
    assert err.value.error == "identity_mismatch"
    await client.close()


@pytest.mark.parametrize(("code", "expect"), [
    (515, ("515", None)), (503, ("503", None)), (500, ("500", None)),
    (401, ("401", "device_removed")), (440, (None, "replaced")),
])
async def test_kick_sends_the_matching_stream_error(sb: Sandbox, code: int, expect: tuple[str | None, str | None]) -> None:
    creds = await _link(sb)
    client, success = await _login(sb, creds)
    assert success.tag == "success"
    conn = next(c for c in sb.list_connections() if c["open"] and c["state"] == "login")
    await sb.kick(conn["id"], code)
    node = await client.recv()
    assert node.tag == "stream:error" and node.attrs.get("code") == expect[0]
    conflict = node.child("conflict")
    assert (conflict.attrs["type"] if conflict else None) == expect[1]
    await client.wait_closed()


async def test_second_login_replaces_the_first(sb: Sandbox) -> None:
    creds = await _link(sb)
    first, _ = await _login(sb, creds)
    second, success = await _login(sb, creds)
    assert success.tag == "success"
    node = await first.recv()
    assert node.tag == "stream:error" and node.child("conflict").attrs["type"] == "replaced"  # type: ignore[union-attr]
    pong = await second.query(iq("w:p", "get", [Node("ping")]))
    assert pong.attrs["type"] == "result"
    await second.close()


async def test_companion_logout_removes_the_device(sb: Sandbox) -> None:
    creds = await _link(sb)
    client, _ = await _login(sb, creds)
    jid = f"{creds.phone}:{creds.device}@s.whatsapp.net"
    await client.send(iq("md", "set", [Node("remove-companion-device", {"jid": jid, "reason": "user_initiated"})]))
    seen = [await client.recv(), await client.recv()]
    assert seen[0].attrs.get("type") == "result"
    assert seen[1].tag == "stream:error" and seen[1].attrs["code"] == "401"
    assert sb.get_phone(PHONE)["devices"] == []
    _, failure = await _login(sb, creds)
    assert failure.tag == "failure" and failure.attrs["reason"] == "401"


async def test_idle_socket_is_closed() -> None:
    async with Sandbox.start(idle_timeout=0.3) as sb:
        client, _, _ = await _register(sb)
        with pytest.raises(Closed):
            await client.recv(within=5)
        conn = sb.list_connections()[0]
        assert conn["open"] is False and conn["close_reason"] == "idle timeout"


async def test_faults_latency_and_drop(sb: Sandbox) -> None:
    sb.set_faults(latency_ms=150)
    started = time.monotonic()
    client, _, _ = await _register(sb)  # two server frames: server hello + pair-device
    assert time.monotonic() - started >= 0.3
    await client.close()
    sb.set_faults(drop_after_frames=1)  # the server hello goes out, then the TCP link is cut
    with pytest.raises((Closed, ConnectionClosed)):
        await _register(sb)
    dropped = sb.list_connections()[-1]
    assert dropped["close_reason"].startswith("fault: drop")
    sb.set_faults()
    client, _, _ = await _register(sb)
    await client.close()


async def test_clock_offset_drives_t_and_http_date(sb: Sandbox) -> None:
    async with httpx.AsyncClient(base_url=sb.admin_url) as http:
        res = await http.put("/admin/clock", json={"offset_seconds": -3600})
        assert res.status_code == 200 and res.json()["offset_seconds"] == -3600
        for path in ("/admin/clock", "/nope"):
            res = await http.get(path)
            assert abs(parsedate_to_datetime(res.headers["date"]).timestamp() - (time.time() - 3600)) <= 2
    # The WebSocket endpoint's HTTP answers carry the sandbox Date too (pre-login clock check).
    ws_http = sb.ws_url.replace("ws://", "http://").replace("/ws/chat", "/")
    async with httpx.AsyncClient() as http:
        res = await http.get(ws_http)
        assert abs(parsedate_to_datetime(res.headers["date"]).timestamp() - (time.time() - 3600)) <= 2
    creds = await _link(sb)
    client, success = await _login(sb, creds)
    assert abs(int(success.attrs["t"]) - (time.time() - 3600)) <= 2
    assert client.ws.response is not None  # the 101 upgrade response
    upgrade_date = parsedate_to_datetime(client.ws.response.headers["Date"]).timestamp()
    assert abs(upgrade_date - (time.time() - 3600)) <= 2
