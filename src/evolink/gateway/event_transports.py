"""Which event transports get an event, and where: WebSocket (socket.io), RabbitMQ and NATS.

Names follow Evolution 2.3.7 (`src/api/integrations/event/{websocket,rabbitmq,nats}`), so a consumer
written for Evolution finds its events where it looks:

| transport | per instance (`/<t>/set/{instance}`)                    | global (env)                          |
| --------- | ------------------------------------------------------- | ------------------------------------- |
| websocket | namespace `/{instance}`                                 | default namespace `/`                 |
| rabbitmq  | exchange `{instance}` (topic), queue `{instance}.{ev}`  | exchange `RABBITMQ_EXCHANGE_NAME`,    |
|           | bound with routing key `{ev}`                           | queue `[{RABBITMQ_PREFIX_KEY}.]{ev}`  |
| nats      | subject `{instance}.{ev}`                               | subject `[{NATS_PREFIX_KEY}.]{ev}`    |

`{ev}` is the event name as sent (`qrcode.updated`); the socket.io event name is the same string.
Every message is the webhook body without `destination` (Evolution's message has exactly the other
fields). Each destination is one outbox row in its own lane (`{instance}|{transport}:{scope}`), so
a down broker holds back only its own lanes and each consumer sees an instance's events in order.

`route` is pure (tested row by row); `TransportRouter` is its thin I/O shell (one settings query per
event). The outbox row's `url` column carries the destination as `<transport>:?<query>`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlencode

from evolink.store import OutboxItem


class Transport(StrEnum):
    WEBSOCKET = "websocket"
    RABBITMQ = "rabbitmq"
    NATS = "nats"


class Scope(StrEnum):
    INSTANCE = "instance"
    GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """The process-wide switches (Evolution's env names in brackets)."""

    websocket: bool = False  # WEBSOCKET_ENABLED
    websocket_global: bool = False  # WEBSOCKET_GLOBAL_EVENTS
    rabbitmq: bool = False  # RABBITMQ_ENABLED
    rabbitmq_global: bool = False  # RABBITMQ_GLOBAL_ENABLED
    rabbitmq_exchange: str = "evolution_exchange"  # RABBITMQ_EXCHANGE_NAME
    rabbitmq_prefix: str | None = None  # RABBITMQ_PREFIX_KEY
    rabbitmq_events: Mapping[str, bool] = field(default_factory=dict)  # RABBITMQ_EVENTS_<KEY>
    nats: bool = False  # NATS_ENABLED
    nats_global: bool = False  # NATS_GLOBAL_ENABLED
    nats_prefix: str | None = None  # NATS_PREFIX_KEY
    nats_events: Mapping[str, bool] = field(default_factory=dict)  # NATS_EVENTS_<KEY>

    def enabled(self, transport: Transport) -> bool:
        return {Transport.WEBSOCKET: self.websocket, Transport.RABBITMQ: self.rabbitmq,
                Transport.NATS: self.nats}[transport]

    @property
    def any_enabled(self) -> bool:
        return self.websocket or self.rabbitmq or self.nats


@dataclass(frozen=True, slots=True)
class InstanceTransport:
    """An instance's row for one transport (`/<transport>/set`)."""

    enabled: bool
    events: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Destination:
    transport: Transport
    scope: Scope
    address: dict[str, str]  # websocket: namespace; rabbitmq: exchange, queue, key; nats: subject

    @property
    def url(self) -> str:
        return f"{self.transport.value}:?{urlencode(self.address)}"

    def lane(self, instance: str) -> str:
        return f"{instance}|{self.transport.value}:{self.scope.value}"


def message_id(lane: str, row_id: int, created_at: datetime) -> str:
    """Stable id of one outbox row (the same on every attempt), unique across databases sharing a broker."""
    return hashlib.sha256(f"{lane}|{row_id}|{created_at.isoformat()}".encode()).hexdigest()[:32]


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """`rabbitmq:?exchange=…` -> ("rabbitmq", {...}); a webhook URL -> ("http"/"https", {})."""
    scheme, _, rest = url.partition(":")
    if scheme in {t.value for t in Transport} and rest.startswith("?"):
        return scheme, dict(parse_qsl(rest[1:], keep_blank_values=True))
    return scheme, {}


def _prefixed(prefix: str | None, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _rabbit_name(event: str) -> str:
    """Evolution's queue/bind naming: `_` -> `.`, lower case (`qrcode.updated` stays as it is)."""
    return event.replace("_", ".").lower()


def route(cfg: TransportConfig, instance: str, event: str, key: str,
          rows: Mapping[str, InstanceTransport], *, opt_in: frozenset[str] = frozenset()) -> list[Destination]:
    """Every transport destination of one event. `key` is the UPPER_SNAKE event key; `opt_in` holds
    evolink's extension keys, which only an explicit per-instance listing or env flag delivers."""

    def local(t: Transport) -> bool:
        row = rows.get(t.value)
        return cfg.enabled(t) and row is not None and row.enabled and key in row.events

    out: list[Destination] = []
    if cfg.websocket and cfg.websocket_global and key not in opt_in:
        out.append(Destination(Transport.WEBSOCKET, Scope.GLOBAL, {"namespace": "/"}))
    if local(Transport.WEBSOCKET):
        out.append(Destination(Transport.WEBSOCKET, Scope.INSTANCE, {"namespace": f"/{instance}"}))
    if local(Transport.RABBITMQ):
        name = _rabbit_name(event)
        out.append(Destination(Transport.RABBITMQ, Scope.INSTANCE,
                               {"exchange": instance, "queue": f"{instance}.{name}", "bind": name, "key": event}))
    if cfg.rabbitmq and cfg.rabbitmq_global and cfg.rabbitmq_events.get(key, False):
        out.append(Destination(Transport.RABBITMQ, Scope.GLOBAL,
                               {"exchange": cfg.rabbitmq_exchange,
                                "queue": _prefixed(cfg.rabbitmq_prefix, _rabbit_name(event)),
                                "bind": event, "key": event}))
    if local(Transport.NATS):
        out.append(Destination(Transport.NATS, Scope.INSTANCE, {"subject": f"{instance}.{event.lower()}"}))
    if cfg.nats and cfg.nats_global and cfg.nats_events.get(key, False):
        out.append(Destination(Transport.NATS, Scope.GLOBAL,
                               {"subject": _prefixed(cfg.nats_prefix, event.lower())}))
    return out


_LONGEST_EVENT = "group.participants.update"  # the longest Evolution event name (queue/subject suffix)
_NATS_FORBIDDEN = frozenset(" \t\r\n*>")


def naming_problem(transport: Transport, instance: str) -> str | None:
    """Why this instance's name cannot name its destinations on `transport` (None when it can), so
    `/<transport>/set` refuses it instead of the broker refusing every event later."""
    if transport is Transport.RABBITMQ and len(f"{instance}.{_LONGEST_EVENT}".encode()) > 255:
        return (f'the instance name is too long for RabbitMQ: queue "{instance}.<event>" would pass 255 bytes '
                f"(at most {255 - len(_LONGEST_EVENT) - 1} bytes of name)")
    if transport is Transport.NATS and (set(instance) & _NATS_FORBIDDEN or instance.startswith(".")
                                        or instance.endswith(".") or ".." in instance):
        return ('the instance name cannot start a NATS subject "<instance>.<event>": no spaces, "*", ">" '
                "and no empty dot-separated part")
    return None


RowsLookup = Callable[[str], Awaitable[Mapping[str, InstanceTransport]]]


class TransportRouter:
    """Turns one event into outbox items for the enabled transports (used by `EventPublisher`)."""

    def __init__(self, cfg: TransportConfig, lookup: RowsLookup, *, opt_in: frozenset[str] = frozenset()) -> None:
        self.cfg = cfg
        self._lookup = lookup  # async (instance_id) -> {transport: InstanceTransport}
        self._opt_in = opt_in

    async def items(self, instance: str, instance_id: str, event: str, key: str,
                    body: dict[str, Any]) -> list[OutboxItem]:
        if not self.cfg.any_enabled:
            return []
        rows = await self._lookup(instance_id)
        return [OutboxItem(lane=d.lane(instance), instance_name=instance, event=event, url=d.url, payload=body)
                for d in route(self.cfg, instance, event, key, rows, opt_in=self._opt_in)]
