"""Two installations on one PostgreSQL database are isolated by DATABASE_CONNECTION_CLIENT_NAME
(issue 10 item 5): neither global key nor instance token of one reaches the other's instances,
and neither webhook worker delivers the other's events."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from gw_fakes import FakeHub
from gw_helpers import PG_URL, Receiver, _pg_schema, make_settings, running_gateway

from evolink.api.apikey import ApiKey
from evolink.store import OutboxItem, Store

KEY_A, KEY_B = "KEY-OF-ALPHA", "KEY-OF-BETA"


def _gateway(tmp_path: Path, who: str, key: str, schema: str, hub: FakeHub):  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path / who, DATABASE_PROVIDER="postgresql", DATABASE_CONNECTION_URI=PG_URL,
                             DATABASE_CONNECTION_CLIENT_NAME=who, AUTHENTICATION_API_KEY=key)
    return running_gateway(settings, engine_factory=hub.factory, db_schema=schema, api_key=ApiKey(key, "env"))


@pytest.mark.postgres
async def test_installations_sharing_postgresql_are_isolated(tmp_path: Path, receiver: Receiver) -> None:
    schema = f"evolink_iso_{uuid.uuid4().hex[:10]}"
    await _pg_schema("create", schema)
    try:
        async with _gateway(tmp_path, "alpha", KEY_A, schema, FakeHub()) as (a, _app_a), \
                _gateway(tmp_path, "beta", KEY_B, schema, FakeHub()) as (b, _app_b):
            ha, hb = {"apikey": KEY_A}, {"apikey": KEY_B}
            made = await a.post("/instance/create", headers=ha, json={
                "instanceName": "inst-a", "integration": "WHATSAPP-BAILEYS",
                "webhook": {"url": receiver.url + "/a", "enabled": True, "events": []}})
            assert made.status_code == 201, made.text
            token_a = made.json()["hash"]
            assert (await b.post("/instance/create", headers=hb, json={
                "instanceName": "inst-b", "integration": "WHATSAPP-BAILEYS"})).status_code == 201

            # beta's global key, and alpha's token presented to beta: alpha's instance does not exist there
            for headers in (hb, {"apikey": token_a}):
                for method, path, body in (
                        ("GET", "/instance/connectionState/inst-a", None),
                        ("GET", "/instance/connect/inst-a", None),
                        ("POST", "/webhook/set/inst-a", {"webhook": {"url": "http://127.0.0.1:9/x", "enabled": True}}),
                        ("GET", "/webhook/find/inst-a", None),
                        ("POST", "/settings/set/inst-a", {"rejectCall": True}),
                        ("POST", "/instance/restart/inst-a", None),
                        ("DELETE", "/instance/logout/inst-a", None),
                        ("DELETE", "/instance/delete/inst-a", None)):
                    resp = await b.request(method, path, headers=headers, json=body)
                    assert resp.status_code == 404, (method, path, headers, resp.text)
                    assert resp.json()["response"]["message"] == ['The "inst-a" instance does not exist']
            assert (await b.get("/instance/fetchInstances?instanceName=inst-a", headers=hb)).status_code == 404
            assert [r["name"] for r in (await b.get("/instance/fetchInstances", headers=hb)).json()] == ["inst-b"]
            ids = (await a.get("/instance/fetchInstances", headers=ha)).json()
            assert [r["name"] for r in ids] == ["inst-a"]
            assert (await b.get(f"/instance/fetchInstances?instanceId={ids[0]['id']}", headers=hb)).status_code == 404
            assert (await b.get("/instance/fetchInstances", headers={"apikey": token_a})).status_code == 401
            # alpha's instance and its webhook are untouched
            hook = (await a.get("/webhook/find/inst-a", headers=ha)).json()
            assert hook["url"] == receiver.url + "/a"
            assert (await a.get("/instance/connectionState/inst-a", headers=ha)).status_code == 200
    finally:
        await _pg_schema("drop", schema)


@pytest.mark.postgres
async def test_webhook_worker_delivers_only_its_installations_events(tmp_path: Path) -> None:
    schema = f"evolink_iso_{uuid.uuid4().hex[:10]}"
    await _pg_schema("create", schema)
    mine, theirs = Receiver(), Receiver()
    await mine.start()
    await theirs.start()
    try:
        async with _gateway(tmp_path, "beta", KEY_B, schema, FakeHub()) as (b, app_b):
            db = app_b.state.gateway.db
            # an event of installation alpha, queued while alpha's gateway is down
            await Store(db, client_name="alpha").enqueue([OutboxItem(
                lane="inst-a|instance", instance_name="inst-a", event="instance.create",
                url=theirs.url, payload={"event": "instance.create", "instance": "inst-a"})])
            made = await b.post("/instance/create", headers={"apikey": KEY_B}, json={
                "instanceName": "inst-b", "integration": "WHATSAPP-BAILEYS",
                "webhook": {"url": mine.url, "enabled": True, "events": []}})
            assert made.status_code == 201
            await mine.wait_for(lambda: bool(mine.events("instance.create")), within=10)
            assert theirs.hits == 0
            counts = await Store(db, client_name="alpha").outbox_counts()
            assert counts.get("pending") == 1, counts
    finally:
        await mine.stop()
        await theirs.stop()
        await _pg_schema("drop", schema)
