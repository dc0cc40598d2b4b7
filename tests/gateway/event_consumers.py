"""Consumers for the event transports (issue 14 tests): RabbitMQ queues, NATS subjects, socket.io
namespaces, plus a TCP forwarder that plays a broker going down and coming back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import nats
import pytest
import socketio

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"


class Inbox:
    """Messages received, with a bounded wait on a condition."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any], str | None]] = []  # (where, body, message id)
        self._changed = asyncio.Event()

    def add(self, where: str, body: dict[str, Any], message_id: str | None = None) -> None:
        self.items.append((where, body, message_id))
        self._changed.set()

    def bodies(self, where: str | None = None) -> list[dict[str, Any]]:
        return [b for w, b, _ in self.items if where is None or w == where]

    def unique(self, where: str) -> list[dict[str, Any]]:
        """Bodies with repeats of a message id dropped (what a de-duplicating consumer sees)."""
        seen: set[str] = set()
        out = []
        for w, body, mid in self.items:
            if w != where:
                continue
            assert mid, "every broker message carries its id"
            if mid not in seen:
                seen.add(mid)
                out.append(body)
        return out

    async def wait_for(self, predicate: Callable[[], bool], within: float = 20.0) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), within)


async def _reachable(host: str, port: int, what: str) -> None:
    try:
        _r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 3)
    except (OSError, TimeoutError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{what} at {host}:{port} not reachable in CI: {exc}")
        pytest.skip(f"{what} at {host}:{port} not reachable: {exc}")
    w.close()


async def need_brokers() -> None:
    await _reachable("127.0.0.1", 5672, "RabbitMQ")
    await _reachable("127.0.0.1", 4222, "NATS")


@dataclass
class RabbitQueues:
    """Declares quorum queues as Evolution (and evolink) declare them and collects their messages."""

    inbox: Inbox = field(default_factory=Inbox)
    names: list[str] = field(default_factory=list)
    _conn: Any = None
    _channel: Any = None

    async def start(self, bindings: list[tuple[str, str, str]]) -> None:
        """bindings: (exchange, queue, routing key)."""
        self._conn = await aio_pika.connect(RABBIT_URL)
        self._channel = await self._conn.channel()
        for exchange_name, queue_name, key in bindings:
            exchange = await self._channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
            queue = await self._channel.declare_queue(queue_name, durable=True,
                                                      arguments={"x-queue-type": "quorum"})
            await queue.bind(exchange, routing_key=key)
            self.names.append(queue_name)

            async def on_message(msg: aio_pika.abc.AbstractIncomingMessage, q: str = queue_name) -> None:
                async with msg.process():
                    assert msg.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
                    self.inbox.add(q, json.loads(msg.body), msg.message_id)

            await queue.consume(on_message)

    async def stop(self, exchanges: list[str]) -> None:
        if self._channel is None:
            return
        with contextlib.suppress(Exception):
            for name in self.names:
                await self._channel.queue_delete(name, if_unused=False, if_empty=False)
            for name in exchanges:
                await self._channel.exchange_delete(name)
        await self._conn.close()


@dataclass
class NatsSubjects:
    inbox: Inbox = field(default_factory=Inbox)
    _nc: Any = None

    async def start(self, subjects: list[str]) -> None:
        self._nc = await nats.connect(NATS_URL)
        for subject in subjects:
            async def on_message(msg: Any, s: str = subject) -> None:
                self.inbox.add(s, json.loads(msg.data), (msg.headers or {}).get("Nats-Msg-Id"))

            await self._nc.subscribe(subject, cb=on_message)
        await self._nc.flush()

    async def stop(self) -> None:
        if self._nc is not None:
            await self._nc.close()


@dataclass
class SocketListener:
    """A python-socketio client on several namespaces; bodies are recorded per namespace."""

    inbox: Inbox = field(default_factory=Inbox)
    client: socketio.AsyncClient = field(default_factory=lambda: socketio.AsyncClient(reconnection=False))

    async def start(self, base_url: str, namespaces: list[str], apikey: str) -> None:
        async def any_event(event: str, namespace: str, data: Any) -> None:
            assert data["event"] == event
            self.inbox.add(namespace, data)

        self.client.on("*", any_event, namespace="*")
        await self.client.connect(base_url, namespaces=namespaces, auth={"apikey": apikey},
                                  transports=["websocket"], wait_timeout=10)

    async def stop(self) -> None:
        await self.client.disconnect()


class TcpForwarder:
    """127.0.0.1:<port> -> target; `down()` closes the listener and every forwarded connection (the
    broker "stops"), `up()` listens again on the same port (it "starts")."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def reserve(self) -> int:
        """Pick the port by listening once, then close: until `up()` the port refuses connections."""
        await self.up()
        await self.down()
        return self.port

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_w})

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                w.close()
                self._writers.discard(w)

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
