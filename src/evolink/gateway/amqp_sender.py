"""RabbitMQ sender (aio-pika): Evolution's exchanges and quorum queues, persistent messages, publisher confirms.

Per publish, as Evolution does: the topic exchange (durable) and the quorum queue (durable) are
declared and the queue is bound with the event's routing key, so a consumer that starts later still
finds every event in its queue. A row counts as delivered only when the broker confirms it (the
channel runs in confirm mode), and messages are persistent (delivery mode 2), so neither side's
restart loses one. Declarations are cached per connection.

One connection and one channel for the whole process, opened on first use (a broker that is down at
start-up does not delay start-up). While the broker is unreachable, a reconnect is tried at most
once per `reconnect_gap` seconds; every other publish answers "unreachable" at once, so the delivery
worker's lanes back off instead of each waiting for a connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange
from aio_pika.exceptions import AMQPChannelError, DeliveryError

from evolink.gateway.broker_gate import ConnectGate
from evolink.gateway.senders import BROKER_POLICY, SendResult
from evolink.gateway.webhooks import RetryPolicy

log = logging.getLogger("evolink.gateway.rabbitmq")


def redact_uri(uri: str) -> str:
    """`amqp://user:secret@host:5672/vh` -> `amqp://user:***@host:5672/vh` (for logs and errors)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{netloc}").geturl()


class RabbitSender:
    def __init__(self, uri: str, *, policy: RetryPolicy = BROKER_POLICY, connect_timeout: float = 5.0,
                 publish_timeout: float = 10.0, reconnect_gap: float = 0.5) -> None:
        self.policy = policy
        self._uri = uri
        self._shown = redact_uri(uri)
        self._connect_timeout = connect_timeout
        self._publish_timeout = publish_timeout
        self._gate = ConnectGate("RabbitMQ", self._shown, log, reconnect_gap=reconnect_gap)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._bound: set[tuple[str, str, str]] = set()

    async def _ensure(self) -> AbstractChannel:
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._gate.held():
            channel = self._channel
            if channel is not None and not channel.is_closed:
                return channel
            await self._drop()
            self._gate.check()
            try:
                conn = await aio_pika.connect(self._uri, timeout=self._connect_timeout,
                                              client_properties={"connection_name": "evolink"})
                try:
                    channel = await conn.channel(publisher_confirms=True)
                except BaseException:
                    await conn.close()
                    raise
            except Exception as exc:
                raise self._gate.failed(exc) from None
            self._connection, self._channel = conn, channel
            self._gate.connected()
            return channel

    async def _drop(self) -> None:
        conn, self._connection, self._channel = self._connection, None, None
        self._exchanges.clear()
        self._bound.clear()
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)

    async def _exchange(self, channel: AbstractChannel, name: str) -> AbstractExchange:
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True,
                                                      auto_delete=False)
            self._exchanges[name] = exchange
        return exchange

    async def _publish(self, channel: AbstractChannel, address: dict[str, str], payload: dict[str, Any],
                       message_id: str) -> None:
        exchange = await self._exchange(channel, address["exchange"])
        binding = (address["exchange"], address["queue"], address["bind"])
        if binding not in self._bound:
            queue = await channel.declare_queue(address["queue"], durable=True, auto_delete=False,
                                                arguments={"x-queue-type": "quorum"})
            await queue.bind(exchange, routing_key=address["bind"])
            self._bound.add(binding)
        message = aio_pika.Message(json.dumps(payload, ensure_ascii=False).encode(), content_type="application/json",
                                   delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id)
        await exchange.publish(message, routing_key=address["key"], timeout=self._publish_timeout)

    async def send(self, address: dict[str, str], event: str, payload: dict[str, Any],
                   message_id: str) -> SendResult:
        try:
            channel = await self._ensure()
        except ConnectionError as exc:
            return SendResult.unreachable(str(exc))
        try:
            await self._publish(channel, address, payload, message_id)
        except asyncio.CancelledError:
            raise
        except (AMQPChannelError, DeliveryError) as exc:
            # The broker answered (e.g. a queue of that name exists with other arguments, or a nack);
            # the channel is closed by then: start afresh on the next publish.
            await self._drop_if(channel)
            return SendResult.refused(f"RabbitMQ refused {event} to {address.get('exchange')!r}: "
                                      f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            await self._drop_if(channel)
            return SendResult.unreachable(f"RabbitMQ at {self._shown}: {type(exc).__name__}: {exc}")
        return SendResult.done()

    async def _drop_if(self, channel: AbstractChannel) -> None:
        """Drop the connection the failed publish used, unless another lane has replaced it already."""
        with contextlib.suppress(ConnectionError):
            async with self._gate.held():
                if self._channel is channel:
                    await self._drop()

    async def close(self) -> None:
        async with self._gate.lock:
            await self._drop()
