"""Issue 5 acceptance: the gateway with the real engine against the sandbox, and a loopback webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from gw_helpers import (
    GLOBAL_KEY,
    Receiver,
    create_instance,
    make_settings,
    running_gateway,
    spawn_serve,
    until_up,
)

from evolink.api.apikey import ApiKey
from evolink.api.app import create_app
from evolink.api.settings import Settings
from evolink.gateway import EngineFactory
from evolink.gateway.engine_factory import real_engine_factory
from evolink.sandbox.server import Sandbox

PHONE = "15550001111"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(qr_first_ttl=1.0, qr_next_ttl=0.5, qr_ref_count=6) as sb:
        yield sb


def gw_settings(tmp_path: Path, sb: Sandbox, **extra: Any) -> Settings:
    values: dict[str, Any] = {"CONNECT_WAIT_SECONDS": 10, **extra}
    return make_settings(tmp_path, WA_WEBSOCKET_URL=sb.ws_url, WA_ROOT_PUBLIC_KEY=sb.root_public_key, **values)


def fast_engines(sb: Sandbox, **overrides: Any) -> EngineFactory:
    """The real engine, with QR refs shown as briefly as the sandbox rotates them."""
    return real_engine_factory(ws_url=sb.ws_url, root_public_key=bytes.fromhex(sb.root_public_key),
                               phone_client="Evolution API", phone_name="Chrome",
                               overrides={"qr_first_ttl": 1.0, "qr_next_ttl": 0.5, "reconnect_base": 0.05,
                                          "reconnect_cap": 0.5, **overrides})


async def connect(client: httpx.AsyncClient, name: str, number: str | None = None) -> dict[str, Any]:
    resp = await client.get(f"/instance/connect/{name}", params={"number": number} if number else None)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _opened(receiver: Receiver, name: str) -> bool:
    return any(e["instance"] == name and e["data"].get("state") == "open" for e in receiver.events("connection.update"))


async def test_link_by_code_first_try(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    """Items 1 and 2: first response has the code; repeats and QR rotations keep it; the phone links."""
    sandbox.create_phone(PHONE)
    async with running_gateway(gw_settings(tmp_path, sandbox), engine_factory=fast_engines(sandbox)) as (client, _):
        await create_instance(client, "acc1", receiver.url)
        t0 = time.perf_counter()
        first = await connect(client, "acc1", PHONE)
        code = first["pairingCode"]
        assert isinstance(code, str) and len(code) == 8, first
        assert time.perf_counter() - t0 < 10
        qr_seen = first["code"]
        for _ in range(3):
            again = await connect(client, "acc1", PHONE)
            assert again["pairingCode"] == code
        # let QR refs rotate (0.5 s each) and check the code survives
        await receiver.wait_for(lambda: len({e["data"]["qrcode"]["code"] for e in receiver.events("qrcode.updated")
                                             if "qrcode" in e["data"]}) >= 3)
        rotated = await connect(client, "acc1", PHONE)
        assert rotated["pairingCode"] == code and rotated["code"] != qr_seen
        await sandbox.link_code(PHONE, code)
        await receiver.wait_for(lambda: _opened(receiver, "acc1"), 15)
        state = (await client.get("/instance/connectionState/acc1")).json()
        assert state == {"instance": {"instanceName": "acc1", "state": "open"}}
        opened = next(e for e in receiver.events("connection.update") if e["data"].get("state") == "open")
        assert opened["data"]["wuid"] == f"{PHONE}@s.whatsapp.net"
        announced = {e["data"]["qrcode"]["pairingCode"] for e in receiver.events("qrcode.updated")
                     if "qrcode" in e["data"] and e["data"]["qrcode"]["pairingCode"]}
        assert announced == {code}


async def test_restart_logout_delete(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    """Item 3: a restarted gateway is back to open without relinking; logout; delete; name reusable."""
    sandbox.create_phone(PHONE)
    settings = gw_settings(tmp_path, sandbox)
    async with running_gateway(settings, engine_factory=fast_engines(sandbox)) as (client, _):
        await create_instance(client, "r1", receiver.url)
        code = (await connect(client, "r1", PHONE))["pairingCode"]
        await sandbox.link_code(PHONE, code)
        await receiver.wait_for(lambda: _opened(receiver, "r1"), 15)
    def devices() -> list[tuple[str, str]]:
        return [(d["jid"], d["identity_public_key"]) for d in sandbox.get_phone(PHONE)["devices"]]

    devices_before = devices()
    assert len(devices_before) == 1
    receiver.received.clear()
    async with running_gateway(settings, engine_factory=fast_engines(sandbox)) as (client, app):
        rt = app.state.gateway.manager.runtimes["r1"]
        assert await rt._wait(lambda: rt.state == "open", 15)
        assert (await client.get("/instance/connectionState/r1")).json()["instance"]["state"] == "open"
        assert devices() == devices_before  # no relink
        assert not receiver.events("qrcode.updated")

        resp = await client.delete("/instance/logout/r1")
        assert resp.status_code == 200 and resp.json()["response"]["message"] == "Instance logged out"
        assert (await client.get("/instance/connectionState/r1")).json()["instance"]["state"] == "close"
        await receiver.wait_for(lambda: any(e["data"].get("state") == "close"
                                            for e in receiver.events("connection.update")))
        closed = [e for e in receiver.events("connection.update") if e["data"].get("state") == "close"]
        assert closed[-1]["data"]["statusReason"] == 401 and receiver.events("logout.instance")
        assert devices() == []  # removed upstream too
        row = await app.state.gateway.store.get_instance("r1")
        assert await app.state.gateway.store.load_creds(row.id) is None

        resp = await client.delete("/instance/delete/r1")
        assert resp.json() == {"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}}
        gone = await client.get("/instance/connectionState/r1")
        assert gone.status_code == 404
        assert gone.json()["response"]["message"] == ['The "r1" instance does not exist']
        await create_instance(client, "r1")


async def test_webhooks_survive_receiver_outage_and_restart(tmp_path: Path, sandbox: Sandbox) -> None:
    """Item 4: receiver down, gateway restarted meanwhile: every event arrives, in order, after recovery."""
    receiver = Receiver(status=503)
    await receiver.start()
    settings = gw_settings(tmp_path, sandbox, WEBHOOK_RETRY_INITIAL_DELAY_SECONDS=0.1,
                           WEBHOOK_RETRY_MAX_DELAY_SECONDS=0.3, WEBHOOK_RETRY_MAX_ATTEMPTS=1000)
    sandbox.create_phone(PHONE)
    try:
        async with running_gateway(settings, engine_factory=fast_engines(sandbox)) as (client, app):
            await create_instance(client, "w1", receiver.url)
            code = (await connect(client, "w1", PHONE))["pairingCode"]
            await sandbox.link_code(PHONE, code)
            rt = app.state.gateway.manager.runtimes["w1"]
            assert await rt._wait(lambda: rt.state == "open", 15)
            await receiver.wait_for(lambda: receiver.hits >= 5)  # refused while down, retried
            counts = await app.state.gateway.store.outbox_counts()
            assert counts.get("pending", 0) >= 4 and not counts.get("delivered")
        # restarted gateway, receiver back
        receiver.status = 200
        async with running_gateway(settings, engine_factory=fast_engines(sandbox)) as (client, app):
            # The resumed instance's `open` is queued behind every older event of its lane, so once it
            # has arrived, everything stored before the restart has been delivered.
            await receiver.wait_for(lambda: sum(1 for e in receiver.events("connection.update")
                                                if e["data"].get("state") == "open") == 2, 20)
            store = app.state.gateway.store
            events = [e["event"] for e in receiver.events()]
            assert events[0] == "instance.create"
            assert "qrcode.updated" in events and events.count("connection.update") >= 2
            # per-instance order: the first open comes after the code was announced
            assert events.index("qrcode.updated") < next(
                i for i, e in enumerate(receiver.events()) if e["data"] and e["data"].get("state") == "open")
            assert (await store.outbox_counts()).get("failed", 0) == 0
    finally:
        await receiver.stop()


@contextlib.asynccontextmanager
async def http_gateway(settings: Settings, **kwargs: Any) -> AsyncIterator[str]:
    """The gateway on a real loopback port (uvicorn), for clients that bring their own HTTP stack."""
    kwargs.setdefault("clock_guard", None)
    kwargs.setdefault("api_key", ApiKey(GLOBAL_KEY, "env"))
    app = create_app(settings, **kwargs)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)  # uvicorn exposes no readiness event
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_pyevolutionapi_client_unmodified(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    """Item 5: the PyPI client drives create/connect/connectionState/logout/delete as it does Evolution."""
    from pyevolutionapi import EvolutionClient

    sandbox.create_phone(PHONE)
    async with http_gateway(gw_settings(tmp_path, sandbox), engine_factory=fast_engines(sandbox)) as base_url:
        client = EvolutionClient(base_url=base_url, api_key=GLOBAL_KEY, timeout=30)
        created = await asyncio.to_thread(client.instance.create, "py1", qrcode=False,
                                          webhook={"url": receiver.url, "events": []})
        assert created.hash and created.instance is not None and created.instance.instance_name == "py1"
        answer = await asyncio.to_thread(client.instance.connect, "py1", PHONE)
        assert answer.error is False and answer.code  # its model keeps `code`, drops `pairingCode`
        # so the user reads the code where Evolution users do: the QRCODE_UPDATED webhook
        await receiver.wait_for(lambda: any(e["data"].get("qrcode", {}).get("pairingCode")
                                            for e in receiver.events("qrcode.updated")))
        code = next(e["data"]["qrcode"]["pairingCode"] for e in receiver.events("qrcode.updated")
                    if e["data"].get("qrcode", {}).get("pairingCode"))
        await sandbox.link_code(PHONE, code)
        await receiver.wait_for(lambda: _opened(receiver, "py1"), 15)
        state = await asyncio.to_thread(client.instance.connection_state, "py1")
        assert state["instance"]["state"] == "open"
        listed = await asyncio.to_thread(client.instance.fetch_instances)
        assert [i.id for i in listed] == [created.instance.instance_id]  # Prisma rows: `id`, `name`
        out = await asyncio.to_thread(client.instance.logout, "py1")
        assert out["response"]["message"] == "Instance logged out"
        gone = await asyncio.to_thread(client.instance.delete, "py1")
        assert gone["response"]["message"] == "Instance deleted"
        from pyevolutionapi.exceptions import NotFoundError

        with pytest.raises(NotFoundError):
            await asyncio.to_thread(client.instance.connection_state, "py1")


@pytest.mark.slow
async def test_hundred_instances_link_concurrently(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    """Item 6: 100 instances connect at once: 100 distinct confirmed codes, and all of them link."""
    n = 100
    phones = [f"1555{i:07d}" for i in range(n)]
    for p in phones:
        sandbox.create_phone(p)
    settings = gw_settings(tmp_path, sandbox, CONNECT_WAIT_SECONDS=60)
    t_start = time.perf_counter()
    async with running_gateway(settings, engine_factory=fast_engines(sandbox, qr_first_ttl=30.0)) as (client, app):
        for i in range(n):
            await create_instance(client, f"bulk{i}", receiver.url if i == 0 else None)
        t0 = time.perf_counter()
        print(f"\ncreate: {t0 - t_start:.2f} s")
        answers = await asyncio.gather(*(connect(client, f"bulk{i}", phones[i]) for i in range(n)))
        t_codes = time.perf_counter() - t0
        codes = [a.get("pairingCode") for a in answers]
        assert all(isinstance(c, str) and len(c) == 8 for c in codes), [a for a in answers if "error" in a][:3]
        assert len(set(codes)) == n
        results = await asyncio.gather(*(sandbox.link_code(phones[i], codes[i]) for i in range(n)))
        assert len(results) == n
        manager = app.state.gateway.manager
        rts = [manager.runtimes[f"bulk{i}"] for i in range(n)]
        opened = await asyncio.gather(*(rt._wait(lambda rt=rt: rt.state == "open", 60) for rt in rts))
        t_open = time.perf_counter() - t0
        assert all(opened)
        print(f"\n100 instances: all codes in {t_codes:.2f} s, all open in {t_open:.2f} s")
        t_end = time.perf_counter()
    print(f"shutdown: {time.perf_counter() - t_end:.2f} s")


async def _spawn_serve(tmp_path: Path, sb: Sandbox, port: int) -> asyncio.subprocess.Process:
    return await spawn_serve(tmp_path, sb, port)


async def _poll_state(client: httpx.AsyncClient, name: str, want: str, within: float) -> None:
    async def loop() -> None:
        while True:
            try:
                resp = await client.get(f"/instance/connectionState/{name}")
                if resp.status_code == 200 and resp.json()["instance"]["state"] == want:
                    return
            except httpx.TransportError:
                pass  # uvicorn binds just after printing its banner
            await asyncio.sleep(0.1)  # a separate process: polling its HTTP API is the only signal

    await asyncio.wait_for(loop(), within)


async def test_killed_process_resumes_without_relink(tmp_path: Path, sandbox: Sandbox, receiver: Receiver) -> None:
    """Item 3 with a real process: link, SIGKILL the gateway, start it again: open, same device."""
    sandbox.create_phone(PHONE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers={"apikey": GLOBAL_KEY},
                                 timeout=30) as client:
        proc = await _spawn_serve(tmp_path, sandbox, port)
        try:
            await until_up(client)
            await create_instance(client, "k1", receiver.url)
            code = (await connect(client, "k1", PHONE))["pairingCode"]
            await sandbox.link_code(PHONE, code)
            await _poll_state(client, "k1", "open", 20)
        finally:
            proc.kill()
            await proc.wait()
        devices = [d["jid"] for d in sandbox.get_phone(PHONE)["devices"]]
        proc = await _spawn_serve(tmp_path, sandbox, port)
        try:
            await until_up(client)
            await _poll_state(client, "k1", "open", 20)
            assert [d["jid"] for d in sandbox.get_phone(PHONE)["devices"]] == devices
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)


