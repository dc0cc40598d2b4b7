"""Issue 14: `/websocket|rabbitmq|nats` set/find, the same keys on create, the env variables, socket.io
authentication, and a broker that hangs not holding up the API or the webhooks."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
from gw_helpers import GLOBAL_KEY, Receiver, create_instance, make_settings, running_gateway
from test_acceptance import http_gateway

from evolink.api.settings import EVENT_KEYS, ConfigError, load_settings

ON = {"WEBSOCKET_ENABLED": True, "RABBITMQ_ENABLED": True, "RABBITMQ_URI": "amqp://127.0.0.1:9/",
      "NATS_ENABLED": True, "NATS_URI": "nats://127.0.0.1:9"}
TRANSPORTS = ("websocket", "rabbitmq", "nats")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_set_and_find_as_evolution(tmp_path: Path, transport: str) -> None:
    async with running_gateway(make_settings(tmp_path, **ON)) as (client, _app):
        created = await create_instance(client, "shop")
        assert (await client.get(f"/{transport}/find/shop")).json() is None

        resp = await client.post(f"/{transport}/set/shop", json={transport: {"enabled": True, "events": []}})
        assert resp.status_code == 201, resp.text
        row = resp.json()
        assert row["enabled"] is True and row["events"] == list(EVENT_KEYS)  # empty = every Evolution event
        assert row["instanceId"] == created["instance"]["instanceId"]
        assert set(row) == {"id", "enabled", "events", "createdAt", "updatedAt", "instanceId"}

        resp = await client.post(f"/{transport}/set/shop", json={transport: {
            "enabled": True, "events": ["CONNECTION_UPDATE", "QRCODE_UPDATED", "CONNECTION_UPDATE"]}})
        assert resp.json()["events"] == ["CONNECTION_UPDATE", "QRCODE_UPDATED"] and resp.json()["id"] == row["id"]
        resp = await client.post(f"/{transport}/set/shop", json={transport: {"enabled": False,
                                                                            "events": ["QRCODE_UPDATED"]}})
        assert resp.json()["enabled"] is False and resp.json()["events"] == []  # Evolution stores none
        found = (await client.get(f"/{transport}/find/shop")).json()
        assert found == {**resp.json(), "updatedAt": found["updatedAt"]}

        # an instance token opens its own instance only
        await create_instance(client, "other")
        resp = await client.get(f"/{transport}/find/shop", headers={"apikey": created["hash"]})
        assert resp.status_code == 200
        resp = await client.post(f"/{transport}/set/other", headers={"apikey": created["hash"]},
                                 json={transport: {"enabled": True}})
        assert resp.status_code == 401


@pytest.mark.parametrize(("body", "needle"), [
    ({"rabbitmq": {"enabled": True, "events": ["NOPE"]}}, "unknown event(s) NOPE"),
    ({"rabbitmq": {"events": []}}, 'requires property "rabbitmq.enabled"'),
    ({"rabbitmq": "yes"}, '"rabbitmq" must be an object'),
    ({"nats": {"enabled": True}}, 'requires property "rabbitmq"'),
    ({"rabbitmq": {"enabled": "maybe"}}, "rabbitmq.enabled"),
])
async def test_bad_bodies_are_clear_400s(tmp_path: Path, body: dict[str, Any], needle: str) -> None:
    async with running_gateway(make_settings(tmp_path, **ON)) as (client, _app):
        await create_instance(client, "shop")
        resp = await client.post("/rabbitmq/set/shop", json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["status"] == 400 and needle in str(resp.json()["response"]["message"])
        assert (await client.get("/rabbitmq/find/shop")).json() is None  # nothing stored


async def test_names_the_broker_would_refuse_are_400s(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, **ON)) as (client, _app):
        await create_instance(client, "my shop")
        resp = await client.post("/nats/set/my shop", json={"nats": {"enabled": True}})
        assert resp.status_code == 400 and "NATS subject" in resp.json()["response"]["message"][0]
        assert (await client.post("/nats/set/my shop", json={"nats": {"enabled": False}})).status_code == 201
        assert (await client.post("/rabbitmq/set/my shop", json={"rabbitmq": {"enabled": True}})).status_code == 201
        long_name = "x" * 240
        resp = await client.post("/instance/create", json={"instanceName": long_name, "rabbitmq": {}})
        assert resp.status_code == 400 and "too long for RabbitMQ" in resp.json()["response"]["message"][0]
        assert (await client.get("/instance/fetchInstances", params={"instanceName": long_name})).status_code == 404


async def test_switched_off_transport_says_which_variable(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as (client, _app):
        await create_instance(client, "shop")
        for transport, env in (("websocket", "WEBSOCKET_ENABLED"), ("rabbitmq", "RABBITMQ_ENABLED"),
                               ("nats", "NATS_ENABLED")):
            resp = await client.post(f"/{transport}/set/shop", json={transport: {"enabled": True}})
            assert resp.status_code == 400 and f"{env}=true" in resp.json()["response"]["message"][0]
            assert (await client.get(f"/{transport}/find/shop")).json() is None
        assert (await client.get("/socket.io/?EIO=4&transport=polling")).status_code == 404  # no socket.io


async def test_create_enables_the_transports_given(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, **ON)) as (client, _app):
        await create_instance(client, "shop", rabbitmq={"events": ["QRCODE_UPDATED"]}, nats={"enabled": False},
                              websocket={})
        rabbit = (await client.get("/rabbitmq/find/shop")).json()
        assert rabbit["enabled"] is True and rabbit["events"] == ["QRCODE_UPDATED"]
        nats = (await client.get("/nats/find/shop")).json()
        assert nats["enabled"] is True and nats["events"] == list(EVENT_KEYS)  # given = enabled, as Evolution
        assert (await client.get("/websocket/find/shop")).json()["enabled"] is True
        [listed] = (await client.get("/instance/fetchInstances", params={"instanceName": "shop"})).json()
        assert listed["Rabbitmq"] == rabbit and listed["Nats"] == nats and listed["Websocket"]["enabled"] is True
        assert listed["Sqs"] is None

        resp = await client.post("/instance/create", json={"instanceName": "bad", "rabbitmq": {"events": ["X"]}})
        assert resp.status_code == 400 and "unknown event(s) X" in str(resp.json())
        assert (await client.get("/instance/fetchInstances", params={"instanceName": "bad"})).status_code == 404


def test_env_names_and_defaults() -> None:
    s = load_settings(env_file=None)
    assert (s.WEBSOCKET_ENABLED, s.WEBSOCKET_GLOBAL_EVENTS, s.RABBITMQ_ENABLED, s.NATS_ENABLED) == (False,) * 4
    assert s.RABBITMQ_EXCHANGE_NAME == "evolution_exchange" and s.RABBITMQ_GLOBAL_ENABLED is False
    with pytest.raises(ConfigError, match="RABBITMQ_URI: required when RABBITMQ_ENABLED=true"):
        load_settings(env_file=None, RABBITMQ_ENABLED=True)
    with pytest.raises(ConfigError, match="NATS_URI"):
        load_settings(env_file=None, NATS_ENABLED=True, NATS_URI="http://x")


def test_event_flags_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_EVENTS_QRCODE_UPDATED", "true")
    monkeypatch.setenv("NATS_EVENTS_CONNECTION_UPDATE", "1")
    monkeypatch.setenv("NATS_EVENTS_QRCODE_UPDATED", "false")
    s = load_settings(env_file=None)
    assert s.rabbitmq_events == {"QRCODE_UPDATED": True}
    assert s.nats_events == {"CONNECTION_UPDATE": True, "QRCODE_UPDATED": False}
    monkeypatch.setenv("RABBITMQ_EVENTS_CALL", "maybe")
    with pytest.raises(ConfigError, match="RABBITMQ_EVENTS_CALL: expected true or false"):
        load_settings(env_file=None)


async def _try_connect(base_url: str, namespace: str, auth: Any = None, query: str = "") -> str | None:
    """None when socket.io accepted the namespace, else the refusal."""
    client = socketio.AsyncClient(reconnection=False)
    try:
        await client.connect(base_url + query, namespaces=[namespace], auth=auth, transports=["websocket"],
                             wait_timeout=10)
    except socketio.exceptions.ConnectionError as exc:
        return str(exc) or "refused"
    finally:
        await client.disconnect()
    return None


async def test_socketio_authentication(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, WEBSOCKET_ENABLED=True, WEBSOCKET_GLOBAL_EVENTS=True)
    async with http_gateway(settings) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers={"apikey": GLOBAL_KEY}) as client:
            token = (await create_instance(client, "shop"))["hash"]
            await create_instance(client, "other")
        assert await _try_connect(base_url, "/", {"apikey": GLOBAL_KEY}) is None
        assert await _try_connect(base_url, "/shop", None, f"?apikey={GLOBAL_KEY}") is None  # query, as Evolution
        assert await _try_connect(base_url, "/shop", {"apikey": token}) is None
        assert await _try_connect(base_url, "/", {"apikey": token}) is not None  # not the global stream
        assert await _try_connect(base_url, "/other", {"apikey": token}) is not None
        assert await _try_connect(base_url, "/shop", {"apikey": "wrong"}) is not None
        assert await _try_connect(base_url, "/shop") is not None


async def test_hanging_broker_holds_up_neither_api_nor_webhooks(tmp_path: Path, receiver: Receiver,
                                                                 hanging_broker: int) -> None:
    settings = make_settings(tmp_path, RABBITMQ_ENABLED=True, RABBITMQ_URI=f"amqp://127.0.0.1:{hanging_broker}/",
                             RABBITMQ_GLOBAL_ENABLED=True, rabbitmq_events={"INSTANCE_CREATE": True},
                             NATS_ENABLED=True, NATS_URI=f"nats://127.0.0.1:{hanging_broker}",
                             NATS_GLOBAL_ENABLED=True, nats_events={"INSTANCE_CREATE": True})
    async with running_gateway(settings) as (client, app):
        t0 = time.perf_counter()
        for i in range(5):
            await create_instance(client, f"s{i}", receiver.url, rabbitmq={}, nats={})
        assert time.perf_counter() - t0 < 3.0  # publishing only writes the outbox
        await receiver.wait_for(lambda: len(receiver.events("instance.create")) == 5, 5)
        assert time.perf_counter() - t0 < 4.0  # the webhook lanes did not wait for the broker lanes
        counts = await app.state.gateway.store.outbox_counts()
        assert counts.get("pending", 0) >= 10  # the broker rows wait (5 instances x global rabbitmq + nats)


async def test_instance_lifecycle_events_reach_its_subjects(tmp_path: Path) -> None:
    """create (settings stored before `instance.create` is published) and delete (the farewell events
    still go to the instance's transports) on the real NATS server."""
    from event_consumers import NATS_URL, NatsSubjects, need_brokers

    await need_brokers()
    name = f"life{uuid.uuid4().hex[:10]}"
    sub = NatsSubjects()
    await sub.start([f"{name}.>"])
    try:
        async with running_gateway(make_settings(tmp_path, NATS_ENABLED=True, NATS_URI=NATS_URL)) as (client, _app):
            await create_instance(client, name, nats={})
            assert (await client.delete(f"/instance/delete/{name}")).status_code == 200
            await sub.inbox.wait_for(lambda: len(sub.inbox.items) == 3, 10)
        assert [b["event"] for b in sub.inbox.bodies()] == ["instance.create", "instance.delete", "remove.instance"]
        assert {b["instance"] for b in sub.inbox.bodies()} == {name}
    finally:
        await sub.stop()
