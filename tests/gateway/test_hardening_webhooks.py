"""Issue 10, item 1: a poisoned webhook is backed off like an HTTP error, refused when configured, and
deleting its instance ends its deliveries."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from gw_fakes import FakeHub
from gw_helpers import Receiver, create_instance, make_settings, running_gateway
from sqlalchemy import select

from evolink.clock import CorrectedClock
from evolink.gateway import DeliveryWorker, EventPublisher, GlobalWebhook, RetryPolicy, WebhookTarget
from evolink.gateway.webhooks import InstanceRef
from evolink.store import OutboxItem, Store
from evolink.store.models import OutboxEvent


async def _publisher(store: Store, target: WebhookTarget) -> EventPublisher:
    async def lookup(_iid: str) -> WebhookTarget:
        return target

    return EventPublisher(store, CorrectedClock(), global_webhook=GlobalWebhook(), server_url=None,
                          expose_apikey=False, lookup_webhook=lookup)


POISONS: list[tuple[str, dict[str, Any] | None]] = [
    ("value", {"x": "é"}),
    ("name", {"é": "1"}),
    ("port", None),
    ("line-break", {"x": "a\r\nInjected: 1"}),
]


@pytest.mark.parametrize(("kind", "headers"), POISONS, ids=[p[0] for p in POISONS])
async def test_any_attempt_failure_is_recorded_and_backed_off(store: Store, receiver: Receiver, kind: str,
                                                              headers: dict[str, Any] | None) -> None:
    url = "http://127.0.0.1:99999/hook" if kind == "port" else receiver.url
    pub = await _publisher(store, WebhookTarget(url=url, by_events=False, headers=headers, events=[]))
    policy = RetryPolicy(max_attempts=3, initial_delay=0.05, max_delay=0.1, jitter=0)
    worker = DeliveryWorker(store, policy, pub.wake)
    worker.start()
    try:
        await pub.publish(InstanceRef("p", str(uuid.uuid4()), "T"), "connection.update", {"state": "open"})
        # Before the fix the exception escaped the attempt: no bookkeeping, the row stayed due, hot loop.
        await worker.wait_until(lambda: worker.stats["failed"] == 1, 5)
        assert worker.stats["retry"] == 2 and worker.stats["delivered"] == 0
        async with store.db.sessions() as s:
            row = (await s.execute(select(OutboxEvent))).scalar_one()
        assert row.status == "failed" and row.attempts == 3
        assert row.last_error and "Traceback" not in row.last_error
    finally:
        await worker.stop()
    assert receiver.received == []


BAD_WEBHOOKS: list[tuple[str, dict[str, Any]]] = [
    ("non-ascii value", {"url": "http://127.0.0.1:9/h", "headers": {"x": "é"}}),
    ("non-ascii name", {"url": "http://127.0.0.1:9/h", "headers": {"é": "1"}}),
    ("content-length", {"url": "http://127.0.0.1:9/h", "headers": {"Content-Length": "5"}}),
    ("transfer-encoding", {"url": "http://127.0.0.1:9/h", "headers": {"transfer-encoding": "chunked"}}),
    ("crlf", {"url": "http://127.0.0.1:9/h", "headers": {"x": "a\r\nb: c"}}),
    ("nested value", {"url": "http://127.0.0.1:9/h", "headers": {"x": {"y": 1}}}),
    ("port", {"url": "http://127.0.0.1:99999/h"}),
    ("no host", {"url": "http:///h"}),
    ("space", {"url": "http://a b/h"}),
    ("ipv6", {"url": "http://[::1/h"}),
]


@pytest.mark.parametrize(("what", "webhook"), BAD_WEBHOOKS, ids=[b[0] for b in BAD_WEBHOOKS])
async def test_bad_webhook_settings_are_refused(tmp_path: Path, what: str, webhook: dict[str, Any]) -> None:
    async with running_gateway(make_settings(tmp_path), engine_factory=FakeHub().factory) as (client, _):
        await create_instance(client, "a")
        resp = await client.post("/webhook/set/a", json={"webhook": {"enabled": True, **webhook}})
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert body["status"] == 400 and body["error"] == "Bad Request"
        assert isinstance(body["response"]["message"], list) and body["response"]["message"]
        assert (await client.get("/webhook/find/a")).json() is None

        created = await client.post("/instance/create", json={"instanceName": "b", "webhook": webhook})
        assert created.status_code == 400, created.text
        assert created.json()["error"] == "Bad Request"
        assert (await client.get("/instance/fetchInstances", params={"instanceName": "b"})).status_code == 404


async def test_good_headers_still_accepted(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path), engine_factory=FakeHub().factory) as (client, _):
        await create_instance(client, "a")
        hook = {"enabled": True, "url": "https://example.com:8443/h?x=1",
                "headers": {"X-Token": "abc def", "jwt_key": "sécret", "x-n": 5, "x-b": True}}
        resp = await client.post("/webhook/set/a", json={"webhook": hook})
        assert resp.status_code == 201, resp.text
        assert resp.json()["headers"] == hook["headers"]


async def test_delete_ends_the_instance_deliveries(tmp_path: Path) -> None:
    dead = Receiver(status=503)
    await dead.start()
    settings = make_settings(tmp_path, WEBHOOK_RETRY_INITIAL_DELAY_SECONDS=30, WEBHOOK_RETRY_MAX_DELAY_SECONDS=60)
    try:
        async with running_gateway(settings, engine_factory=FakeHub().factory) as (client, app):
            await create_instance(client, "a", webhook_url=dead.url)
            store: Store = app.state.gateway.store
            await store.enqueue([OutboxItem(lane="a|instance", instance_name="a", event="connection.update",
                                            url="http://127.0.0.1:99999/x", payload={"n": i}) for i in range(3)])
            assert (await client.delete("/instance/delete/a")).status_code == 200
            async with store.db.sessions() as s:
                rows = list((await s.execute(select(OutboxEvent).where(OutboxEvent.status == "pending"))).scalars())
            # Only the farewell events (queued by the delete itself) remain; nothing queued before it.
            assert sorted(r.event for r in rows) == ["instance.delete", "remove.instance"]
    finally:
        await dead.stop()
