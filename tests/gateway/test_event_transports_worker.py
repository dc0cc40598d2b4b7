"""Issue 14: the outbox worker with non-HTTP senders (SQLite and PostgreSQL): per-lane order, unreachable
brokers retried without limit, refusals bounded, switched-off transports, stable message ids, and the
per-instance settings rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evolink.clock import CorrectedClock
from evolink.gateway import DeliveryWorker, EventPublisher, GlobalWebhook, RetryPolicy
from evolink.gateway.event_transports import InstanceTransport, TransportConfig, TransportRouter
from evolink.gateway.senders import SendResult
from evolink.gateway.webhooks import InstanceRef
from evolink.store import Store
from evolink.store.transport_repo import TransportSettingsRepo

FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.02, jitter=0)
INST = InstanceRef("shop", "id-shop", "TOKEN")


@dataclass
class FakeBroker:
    """A sender whose answers the test scripts: unreachable until `up`, refusing listed events."""

    policy: RetryPolicy = FAST
    up: bool = False
    refuse: set[str] = field(default_factory=set)
    tries: int = 0
    got: list[tuple[str, dict[str, str], str, dict[str, Any]]] = field(default_factory=list)  # (id, address, …)

    async def send(self, address: dict[str, str], event: str, payload: dict[str, Any], message_id: str) -> SendResult:
        self.tries += 1
        if not self.up:
            return SendResult.unreachable("broker unreachable")
        if event in self.refuse:
            return SendResult.refused("PRECONDITION_FAILED")
        self.got.append((message_id, address, event, payload))
        return SendResult.done()

    async def close(self) -> None:
        return None


def _publisher(store: Store, cfg: TransportConfig, rows: dict[str, InstanceTransport]) -> EventPublisher:
    async def no_webhook(_iid: str) -> None:
        return None

    async def lookup(_iid: str) -> dict[str, InstanceTransport]:
        return rows

    pub = EventPublisher(store, CorrectedClock(), global_webhook=GlobalWebhook(), server_url=None,
                         expose_apikey=False, lookup_webhook=no_webhook)
    pub.transports = TransportRouter(cfg, lookup)
    return pub


async def test_unreachable_broker_is_retried_past_the_attempt_budget_then_gets_everything_in_order(
        store: Store) -> None:
    pub = _publisher(store, TransportConfig(nats=True),
                     {"nats": InstanceTransport(True, ("CONNECTION_UPDATE",))})
    broker = FakeBroker()
    worker = DeliveryWorker(store, FAST, pub.wake, senders={"nats": broker})
    worker.start()
    try:
        for i in range(5):
            await pub.publish(INST, "connection.update", {"n": i})
        await worker.wait_until(lambda: broker.tries >= 3 * FAST.max_attempts, 10)
        counts = await store.outbox_counts()
        assert counts.get("pending") == 5 and not counts.get("failed")  # nothing given up
        broker.up = True
        await worker.wait_until(lambda: len(broker.got) == 5, 10)
    finally:
        await worker.stop()
    assert [p["data"]["n"] for _, _, _, p in broker.got] == [0, 1, 2, 3, 4]
    assert {a["subject"] for _, a, _, _ in broker.got} == {"shop.connection.update"}
    assert len({mid for mid, _, _, _ in broker.got}) == 5
    assert (await store.outbox_counts()) == {"delivered": 5}


async def test_refusal_is_bounded_and_the_lane_moves_on(store: Store) -> None:
    pub = _publisher(store, TransportConfig(rabbitmq=True),
                     {"rabbitmq": InstanceTransport(True, ("QRCODE_UPDATED", "CONNECTION_UPDATE"))})
    broker = FakeBroker(up=True, refuse={"qrcode.updated"})
    worker = DeliveryWorker(store, RetryPolicy(max_attempts=1000), pub.wake, senders={"rabbitmq": broker})
    worker.start()
    try:
        await pub.publish(INST, "qrcode.updated", {"n": 0})
        await pub.publish(INST, "connection.update", {"n": 1})
        await worker.wait_until(lambda: len(broker.got) == 1, 10)
    finally:
        await worker.stop()
    assert broker.tries == FAST.max_attempts + 1  # the sender's policy, not the webhook one
    assert (await store.outbox_counts()) == {"failed": 1, "delivered": 1}


async def test_row_of_a_switched_off_transport_fails_at_once(store: Store) -> None:
    pub = _publisher(store, TransportConfig(websocket=True, websocket_global=True), {})
    assert await pub.publish(INST, "connection.update", {}) == 1
    worker = DeliveryWorker(store, FAST, pub.wake, senders={})  # restarted with WEBSOCKET_ENABLED=false
    worker.start()
    try:
        await worker.wait_until(lambda: worker.stats["failed"] == 1, 10)
    finally:
        await worker.stop()
    assert (await store.outbox_counts()) == {"failed": 1}


async def test_message_id_is_stable_across_attempts(store: Store) -> None:
    pub = _publisher(store, TransportConfig(nats=True), {"nats": InstanceTransport(True, ("CONNECTION_UPDATE",))})
    ids: list[str] = []

    class Flaky(FakeBroker):
        async def send(self, address: dict[str, str], event: str, payload: dict[str, Any],
                       message_id: str) -> SendResult:
            ids.append(message_id)
            self.up = len(ids) >= 3
            return await super().send(address, event, payload, message_id)

    broker = Flaky()
    worker = DeliveryWorker(store, FAST, pub.wake, senders={"nats": broker})
    worker.start()
    try:
        await pub.publish(INST, "connection.update", {})
        await worker.wait_until(lambda: len(broker.got) == 1, 10)
    finally:
        await worker.stop()
    assert len(ids) == 3 and len(set(ids)) == 1


async def test_settings_rows_upsert_and_cascade(store: Store) -> None:
    iid = "11111111-2222-3333-4444-555555555555"
    await store.create_instance(instance_id=iid, name="shop", token="TOK", integration="WHATSAPP-BAILEYS",
                                number=None, client_name="evolution", settings={}, webhook=None)
    repo = TransportSettingsRepo(store.db)
    assert await repo.get(iid, "nats") is None and await repo.all_for(iid) == {}
    first = await repo.upsert(iid, "nats", enabled=True, events=["QRCODE_UPDATED"])
    again = await repo.upsert(iid, "nats", enabled=False, events=[])
    await repo.upsert(iid, "rabbitmq", enabled=True, events=["CONNECTION_UPDATE"])
    assert again.id == first.id and again.created_at == first.created_at
    rows = await repo.all_for(iid)
    assert {t: (r.enabled, r.events) for t, r in rows.items()} == {"nats": (False, []),
                                                                    "rabbitmq": (True, ["CONNECTION_UPDATE"])}
    await store.delete_instance(iid)
    assert await repo.all_for(iid) == {}
