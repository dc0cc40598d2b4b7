"""Issue 14: the RabbitMQ and NATS senders against the machine's servers: confirmed publishes, refusals
vs unreachable brokers, and a hanging broker tying up one caller, not all (logged once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import aio_pika
import pytest
from event_consumers import NATS_URL, RABBIT_URL, NatsSubjects, need_brokers

from evolink.gateway.amqp_sender import RabbitSender, redact_uri
from evolink.gateway.nats_sender import NatsSender


def test_uri_passwords_are_masked() -> None:
    assert redact_uri("amqp://user:s3cret@host:5672/vh") == "amqp://user:***@host:5672/vh"
    assert redact_uri("nats://host:4222") == "nats://host:4222"


async def test_rabbit_refusal_then_recovery() -> None:
    await need_brokers()
    u = uuid.uuid4().hex[:10]
    conn = await aio_pika.connect(RABBIT_URL)
    channel = await conn.channel()
    await channel.declare_queue(f"classic{u}", durable=True)  # a classic queue where a quorum one is expected
    sender = RabbitSender(RABBIT_URL)
    try:
        bad = {"exchange": f"x{u}", "queue": f"classic{u}", "bind": "k", "key": "k"}
        refused = await sender.send(bad, "qrcode.updated", {}, "m1")
        assert not refused.ok and not refused.transient and "PRECONDITION_FAILED" in (refused.error or "")
        good = {"exchange": f"x{u}", "queue": f"q{u}", "bind": "k", "key": "k"}
        assert (await sender.send(good, "qrcode.updated", {"a": 1}, "m2")).ok  # a fresh channel
        queue = await channel.declare_queue(f"q{u}", durable=True, arguments={"x-queue-type": "quorum"})
        msg = await queue.get(timeout=5)
        assert msg.message_id == "m2" and msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert msg.content_type == "application/json" and msg.body == b'{"a": 1}'
        await msg.ack()
    finally:
        await sender.close()
        for name in (f"classic{u}", f"q{u}"):
            with contextlib.suppress(Exception):
                await channel.queue_delete(name, if_unused=False, if_empty=False)
        with contextlib.suppress(Exception):
            await channel.exchange_delete(f"x{u}")
        await conn.close()


async def test_nats_publish_is_flushed_and_bad_subjects_refused() -> None:
    await need_brokers()
    u = uuid.uuid4().hex[:10]
    sub = NatsSubjects()
    await sub.start([f"s{u}.>"])
    sender = NatsSender(NATS_URL)
    try:
        assert (await sender.send({"subject": f"s{u}.qrcode.updated"}, "qrcode.updated", {"b": 2}, "id1")).ok
        await sub.inbox.wait_for(lambda: bool(sub.inbox.items), 5)
        assert sub.inbox.items == [(f"s{u}.>", {"b": 2}, "id1")]
        bad = await sender.send({"subject": "has space.x"}, "e", {}, "id2")
        assert not bad.ok and not bad.transient
    finally:
        await sender.close()
        await sub.stop()


@pytest.mark.parametrize("kind", ["rabbitmq", "nats"])
async def test_hanging_broker_ties_up_one_caller_and_logs_once(kind: str, hanging_broker: int,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    sender: RabbitSender | NatsSender
    if kind == "rabbitmq":
        sender = RabbitSender(f"amqp://guest:pw@127.0.0.1:{hanging_broker}/", connect_timeout=3)
    else:
        sender = NatsSender(f"nats://127.0.0.1:{hanging_broker}", connect_timeout=1)
    caplog.set_level(logging.WARNING, logger="evolink.gateway")
    address = {"exchange": "x", "queue": "q", "bind": "k", "key": "k", "subject": "s"}

    async def timed(i: int) -> tuple[float, bool]:
        t0 = time.perf_counter()
        r = await sender.send(address, "e", {}, str(i))
        return time.perf_counter() - t0, not r.ok and r.transient

    results = await asyncio.gather(*(timed(i) for i in range(8)))
    assert all(unreachable for _, unreachable in results)
    waits = sorted(t for t, _ in results)
    assert waits[-2] < 1.5 <= waits[-1] or kind == "nats"  # one caller waits for the connect, the rest ~1 s
    assert waits[-1] < 5.0
    again = await sender.send(address, "e", {}, "9")
    assert not again.ok and again.transient
    await sender.close()
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and "pw" not in str(getattr(warnings[0], "uri", ""))
