"""Webhook envelope, destinations, retry policy and delivery semantics (SQLite and PostgreSQL outbox)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import uuid
from datetime import UTC, datetime

import pytest
from gw_helpers import Receiver

from evolink.clock import CorrectedClock
from evolink.gateway import DeliveryWorker, EventPublisher, GlobalWebhook, RetryPolicy, WebhookTarget
from evolink.gateway.jwt import webhook_jwt
from evolink.gateway.webhooks import EVENT_ID_HEADER, InstanceRef
from evolink.store import Store


def test_retry_policy_defaults_match_evolution() -> None:
    p = RetryPolicy()
    mid = lambda: 0.5  # noqa: E731 - no jitter
    assert [p.delay(n, mid) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert p.max_attempts == 10 and p.non_retryable == frozenset({400, 401, 403, 404, 422})
    rng = random.Random(7)
    for n in range(1, 10):
        d = p.delay(n, rng.random)
        base = min(5 * 2 ** (n - 1), 300)
        assert max(5.0, base * 0.8) <= d <= base * 1.2
    assert RetryPolicy(exponential=False).delay(5, mid) == 5


def test_jwt_is_hs256_with_evolution_claims() -> None:
    token = webhook_jwt("secret", 1_700_000_000)
    header, body, sig = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    assert json.loads(base64.urlsafe_b64decode(pad(body))) == {
        "iat": 1_700_000_000, "exp": 1_700_000_600, "app": "evolution", "action": "webhook"}
    expected = hmac.new(b"secret", f"{header}.{body}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(pad(sig)) == expected


class FixedClock(CorrectedClock):
    def now(self) -> datetime:
        return datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


async def _publisher(store: Store, target: WebhookTarget | None, glob: GlobalWebhook | None = None,
                     expose: bool = False) -> EventPublisher:
    async def lookup(_iid: str) -> WebhookTarget | None:
        return target

    return EventPublisher(store, FixedClock(), global_webhook=glob or GlobalWebhook(), server_url="https://gw.example",
                          expose_apikey=expose, lookup_webhook=lookup)


async def test_envelope_destinations_and_filters(store: Store) -> None:
    target = WebhookTarget(url="http://127.0.0.1:1/hook", by_events=True, headers={"x-a": "1"},
                           events=["CONNECTION_UPDATE", "LOGOUT_INSTANCE"])
    glob = GlobalWebhook(enabled=True, url="http://127.0.0.1:2/g", by_events=False,
                         events={"CONNECTION_UPDATE": True, "QRCODE_UPDATED": False})
    pub = await _publisher(store, target, glob, expose=True)
    ref = InstanceRef("i1", str(uuid.uuid4()), "TOK", "155@s.whatsapp.net")
    assert await pub.publish(ref, "connection.update", {"state": "open"}) == 2
    assert await pub.publish(ref, "qrcode.updated", {"qrcode": {}}) == 0  # filtered by both
    assert await pub.publish(ref, "logout.instance", None) == 1  # per-instance only, never global
    rows = await store.due_heads(now=1.0)
    by_lane = {r.lane: r for r in rows}
    by_url = {r.url: r for r in rows}
    inst, glob_row = by_url["http://127.0.0.1:1/hook/connection-update"], by_url["http://127.0.0.1:2/g"]
    assert len(by_lane) == 2
    assert inst.url == "http://127.0.0.1:1/hook/connection-update" and inst.headers == {"x-a": "1"}
    assert inst.payload == {"event": "connection.update", "instance": "i1", "data": {"state": "open"},
                            "destination": "http://127.0.0.1:1/hook", "date_time": "2026-01-02T03:04:05.678Z",
                            "sender": "155@s.whatsapp.net", "server_url": "https://gw.example", "apikey": "TOK"}
    assert glob_row.url == "http://127.0.0.1:2/g" and glob_row.headers is None


async def test_delivery_order_retries_and_dead_letters(store: Store) -> None:
    receiver = Receiver(status=503)
    await receiver.start()
    target = WebhookTarget(url=receiver.url, by_events=False, headers={"jwt_key": "k", "x-b": "2"}, events=[])
    pub = await _publisher(store, target)
    worker = DeliveryWorker(store, RetryPolicy(max_attempts=1000, initial_delay=0.02, max_delay=0.05), pub.wake)
    worker.start()
    try:
        ref = InstanceRef("ord", str(uuid.uuid4()), "T")
        for n in range(5):
            await pub.publish(ref, "connection.update", {"n": n})
        await receiver.wait_for(lambda: receiver.hits >= 3)
        assert receiver.received == []  # the head keeps failing; nothing overtakes it
        receiver.status = 200
        await receiver.wait_for(lambda: len(receiver.received) == 5)
        assert [r.body["data"]["n"] for r in receiver.received] == [0, 1, 2, 3, 4]
        first = receiver.received[0]
        assert first.headers["x-b"] == "2" and "jwt_key" not in first.headers
        assert first.headers["authorization"].startswith("Bearer ")
        # X-Evolink-Event-Id: the outbox row id (the head was retried: still one id per event)
        ids = [int(r.headers[EVENT_ID_HEADER.lower()]) for r in receiver.received]
        assert ids == sorted(set(ids)) and len(ids) == 5, ids

        receiver.status = 404  # non-retryable: dropped after one attempt, the lane moves on
        hits = receiver.hits
        await pub.publish(ref, "connection.update", {"n": 5})
        await receiver.wait_for(lambda: receiver.hits == hits + 1)
        receiver.status = 200
        await pub.publish(ref, "connection.update", {"n": 6})
        await receiver.wait_for(lambda: len(receiver.received) == 6)
        assert receiver.received[-1].body["data"]["n"] == 6
        assert receiver.hits == hits + 2
        await worker.wait_until(lambda: worker.stats["delivered"] == 6, 5)
        counts = await store.outbox_counts()
        assert counts == {"delivered": 6, "failed": 1}
    finally:
        await worker.stop()
        await receiver.stop()


async def test_gives_up_after_max_attempts(store: Store) -> None:
    receiver = Receiver(status=500)
    await receiver.start()
    pub = await _publisher(store, WebhookTarget(url=receiver.url, by_events=False, headers=None, events=None))
    worker = DeliveryWorker(store, RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0),
                            pub.wake)
    worker.start()
    try:
        await pub.publish(InstanceRef("g", str(uuid.uuid4()), "T"), "instance.create", {})
        await worker.wait_until(lambda: worker.stats["failed"] == 1, 5)
        assert receiver.hits == 3 and worker.stats["retry"] == 2
        assert (await store.outbox_counts()) == {"failed": 1}
    finally:
        await worker.stop()
        await receiver.stop()


@pytest.mark.parametrize("url", ["ftp://x", "", "localhost:80"])
async def test_invalid_urls_are_not_sent(store: Store, url: str) -> None:
    pub = await _publisher(store, WebhookTarget(url=url, by_events=False, headers=None, events=None))
    assert await pub.publish(InstanceRef("u", str(uuid.uuid4()), "T"), "instance.create", {}) == 0


async def test_new_destination_is_not_blocked_by_a_dead_old_one(store: Store) -> None:
    new = Receiver()
    await new.start()
    target = WebhookTarget(url="http://127.0.0.1:9/dead", by_events=False, headers=None, events=[])
    pub = await _publisher(store, target)
    worker = DeliveryWorker(store, RetryPolicy(max_attempts=1000, initial_delay=30, max_delay=60), pub.wake)
    worker.start()
    try:
        ref = InstanceRef("mv", str(uuid.uuid4()), "T")
        await pub.publish(ref, "connection.update", {"n": 0})
        await worker.wait_until(lambda: worker.stats["retry"] >= 1, 5)  # old head now waits 30 s
        await pub.publish(ref, "connection.update", {"n": 1}, WebhookTarget(url=new.url, by_events=False,
                                                                              headers=None, events=[]))
        await new.wait_for(lambda: len(new.received) == 1, within=5)
        assert new.received[0].body["data"] == {"n": 1}
    finally:
        await worker.stop()
        await new.stop()
