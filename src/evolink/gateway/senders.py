"""What the delivery worker needs from a non-HTTP transport (socket.io, RabbitMQ, NATS).

A sender publishes one outbox row and says how it went; it never raises. `transient` failures (the
broker is unreachable, the connection dropped) are retried for as long as it takes, so a broker
that is down gets every event once it is back; any other failure (the broker answered with an
error) counts against `policy.max_attempts` like a webhook's HTTP error.

Delivery is at least once: a broker that stored a message but whose confirmation was lost (the
connection broke, the gateway was killed) gets it again. `message_id` is the same on every attempt
of one outbox row (AMQP `message_id`, NATS `Nats-Msg-Id` header, which JetStream de-duplicates), so
consumers can drop repeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from evolink.gateway.webhooks import RetryPolicy

BROKER_POLICY = RetryPolicy(max_attempts=10, initial_delay=0.5, exponential=True, max_delay=30.0, jitter=0.2,
                            non_retryable=frozenset())
"""Default for brokers: 0.5 s doubling to 30 s (EVOLINK_EVENTS_RETRY_MAX_SECONDS); a transient
failure is retried without limit, a refusal 10 times."""


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    error: str | None = None
    transient: bool = False

    @classmethod
    def done(cls) -> SendResult:
        return cls(True)

    @classmethod
    def unreachable(cls, error: str) -> SendResult:
        return cls(False, error[:1000], transient=True)

    @classmethod
    def refused(cls, error: str) -> SendResult:
        return cls(False, error[:1000], transient=False)


class EventSender(Protocol):
    policy: RetryPolicy

    async def send(self, address: dict[str, str], event: str, payload: dict[str, Any],
                   message_id: str) -> SendResult: ...

    async def close(self) -> None: ...
