"""setPresence and the QR object's `code`/`base64`, through the gateway with the real engine and sandbox."""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gw_helpers import GLOBAL_KEY, Receiver, create_instance, make_settings, running_gateway

from evolink.gateway.engine_factory import real_engine_factory
from evolink.gateway.qr import evolution_code, render_png_data_url
from evolink.sandbox.server import Sandbox

PHONE = "15550001111"
KEY_B64 = r"[A-Za-z0-9+/]{43}="  # 32 bytes in padded standard base64
CODE = re.compile(rf"^(2@[^,\s]+),({KEY_B64}),({KEY_B64}),({KEY_B64})$")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(qr_first_ttl=5.0, qr_next_ttl=1.0, link_timeout=5.0) as sb:
        sb.create_phone(PHONE)
        yield sb


def test_evolution_code_drops_prefix_and_platform_id() -> None:
    key = base64.b64encode(bytes(32)).decode()
    bare = f"2@abc,{key},{key},{key}"
    assert evolution_code(f"https://wa.me/settings/linked_devices#{bare},1") == bare
    assert evolution_code(f"{bare},1") == bare
    assert evolution_code(bare) == bare


async def test_qr_code_format_then_presence(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    settings = make_settings(tmp_path, WA_WEBSOCKET_URL=sandbox.ws_url, WA_ROOT_PUBLIC_KEY=sandbox.root_public_key,
                             CONNECT_WAIT_SECONDS=10)
    engines = real_engine_factory(ws_url=sandbox.ws_url, root_public_key=bytes.fromhex(sandbox.root_public_key),
                                  phone_client="Evolution API", phone_name="Chrome",
                                  overrides={"qr_first_ttl": 5.0, "qr_next_ttl": 1.0, "push_name": "Front Desk"})
    async with running_gateway(settings, engine_factory=engines) as (client, _):
        await create_instance(client, "p", receiver.url)
        first = (await client.get("/instance/connect/p")).json()
        code = first["code"]
        match = CODE.match(code)
        assert match is not None, code  # Evolution 2.3.7: ref,noise,identity,adv: no URL, no platform id
        for part in match.groups()[1:]:
            assert len(base64.b64decode(part, validate=True)) == 32
        # The PNG encodes `code` itself (same renderer and colour as Evolution), not the wa.me URL form.
        assert first["base64"] == render_png_data_url(code, settings.QRCODE_COLOR)

        await sandbox.scan(PHONE, code)  # the four-part code is what a phone scans
        await receiver.wait_for(lambda: any(e["data"].get("state") == "open"
                                            for e in receiver.events("connection.update")))
        qr_events = [e["data"]["qrcode"] for e in receiver.events("qrcode.updated")]
        assert qr_events and all(CODE.match(q["code"]) for q in qr_events)

        ok = await client.post("/instance/setPresence/p", json={"presence": "available"})
        assert (ok.status_code, ok.json()) == (201, {"presence": "available"})
        off = await client.post("/instance/setPresence/p", json={"presence": "unavailable"})
        assert (off.status_code, off.json()) == (201, {"presence": "unavailable"})
        chat_state = await client.post("/instance/setPresence/p", json={"presence": "composing"})
        assert chat_state.status_code == 400
        assert chat_state.json() == {"status": 400, "error": "Bad Request", "response": {"message": [
            "Error: presence must be 'available' or 'unavailable', got 'composing'"]}}

        # logout waits for the server's answer to remove-companion-device, so by then the sandbox has
        # read (and logged) every stanza sent before it on that connection
        assert (await client.delete("/instance/logout/p")).status_code == 200
        login = [c for c in sandbox.list_connections() if c["state"] == "login"][-1]
        sent = [s for s in login["stanza_log"] if s.startswith("presence")]
        assert sent == ["presence:available", "presence:unavailable"]

        closed = await client.post("/instance/setPresence/p", json={"presence": "available"},
                                   headers={"apikey": GLOBAL_KEY})
        assert closed.status_code == 400
        assert closed.json()["response"]["message"] == ['The "p" instance is not connected']
