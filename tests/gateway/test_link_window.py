"""The window between the phone accepting a pairing code and `open` (pair-success → 515 → login):
`connect?number=` must not request a new code on the restarting socket (the engine is linked)."""

from __future__ import annotations

from pathlib import Path

from gw_fakes import FakeHub
from gw_helpers import create_instance, make_settings, running_gateway

from evolink.wa.events import CloseEvent, CloseReason, ConnectingEvent, OpenEvent

PHONE = "15550001111"


async def test_connect_during_the_post_pairing_restart_requests_no_code(tmp_path: Path) -> None:
    hub = FakeHub()
    async with running_gateway(make_settings(tmp_path, CONNECT_WAIT_SECONDS=0.5),
                               engine_factory=hub.factory) as (client, app):
        await create_instance(client, "a")
        first = (await client.get("/instance/connect/a", params={"number": PHONE})).json()
        assert first["pairingCode"] and hub.code_requests == 1
        engine = hub.latest("a")
        rt = app.state.gateway.manager.runtimes["a"]
        # the phone typed the code: pair-success, then the server's 515; login has not finished yet
        engine.emit(CloseEvent(CloseReason.RESTART_REQUIRED, 515, True, "restart required"))
        engine.emit(ConnectingEvent(1))
        await rt.settle()
        during = (await client.get("/instance/connect/a", params={"number": PHONE})).json()
        assert hub.code_requests == 1, during  # no code request on a linked engine
        assert "already linked" not in str(during)
        engine.emit(OpenEvent(f"{PHONE}:3@s.whatsapp.net", None, "Alice", True))
        await rt.settle()
        done = (await client.get("/instance/connect/a", params={"number": PHONE})).json()
        assert done == {"instance": {"instanceName": "a", "state": "open"}}
