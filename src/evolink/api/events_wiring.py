"""Builds the event transports from the settings and plugs them into the app (docs/events.md).

- `transport_config` maps Evolution's env variables onto `TransportConfig`;
- `SocketHub` (WEBSOCKET_ENABLED) is built with the app and served at `/socket.io/` by
  `SocketIOMount`, a plain ASGI dispatcher in front of FastAPI (python-socketio's own ASGI app);
- `senders` gives the delivery worker one sender per enabled transport; brokers are reached lazily
  (a broker that is down at start-up neither delays nor fails the start).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from evolink.api.auth import same_key
from evolink.api.settings import Settings
from evolink.gateway.event_transports import InstanceTransport, Transport, TransportConfig, TransportRouter
from evolink.gateway.senders import BROKER_POLICY, EventSender
from evolink.gateway.socketio_hub import SocketHub
from evolink.gateway.webhooks import OPT_IN_EVENTS, RetryPolicy
from evolink.store.transport_repo import TransportSettingsRepo


def transport_config(settings: Settings) -> TransportConfig:
    return TransportConfig(
        websocket=settings.WEBSOCKET_ENABLED, websocket_global=settings.WEBSOCKET_GLOBAL_EVENTS,
        rabbitmq=settings.RABBITMQ_ENABLED, rabbitmq_global=settings.RABBITMQ_GLOBAL_ENABLED,
        rabbitmq_exchange=settings.RABBITMQ_EXCHANGE_NAME, rabbitmq_prefix=settings.RABBITMQ_PREFIX_KEY or None,
        rabbitmq_events=dict(settings.rabbitmq_events), nats=settings.NATS_ENABLED,
        nats_global=settings.NATS_GLOBAL_ENABLED, nats_prefix=settings.NATS_PREFIX_KEY or None,
        nats_events=dict(settings.nats_events))


def broker_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=BROKER_POLICY.max_attempts, initial_delay=BROKER_POLICY.initial_delay,
                       exponential=True, max_delay=settings.EVOLINK_EVENTS_RETRY_MAX_SECONDS,
                       jitter=BROKER_POLICY.jitter, non_retryable=frozenset())


def transport_router(settings: Settings, repo: TransportSettingsRepo) -> TransportRouter:
    async def lookup(instance_id: str) -> Mapping[str, InstanceTransport]:
        rows = await repo.all_for(instance_id)
        return {t: InstanceTransport(r.enabled, tuple(r.events or ())) for t, r in rows.items()}

    return TransportRouter(transport_config(settings), lookup, opt_in=frozenset(OPT_IN_EVENTS))


def socket_hub(settings: Settings, app: Any) -> SocketHub | None:
    """The socket.io server, or None when WEBSOCKET_ENABLED is off. Keys are checked against the
    running gateway (`app.state.gateway`): the global key opens every namespace, an instance token
    only `/{its instance}`."""
    if not settings.WEBSOCKET_ENABLED:
        return None

    async def authorize(key: str | None, namespace: str) -> bool:
        ctx = getattr(app.state, "gateway", None)
        if ctx is None or key is None:
            return False
        if same_key(key, ctx.api_key.value):
            return True
        if namespace == "/":
            return False
        row = await ctx.store.get_instance(namespace[1:])
        return row is not None and same_key(key, row.token)

    return SocketHub(authorize, cors_origins=list(settings.CORS_ORIGIN), policy=broker_policy(settings))


def senders(settings: Settings, hub: SocketHub | None) -> dict[str, EventSender]:
    out: dict[str, EventSender] = {}
    policy = broker_policy(settings)
    if hub is not None:
        out[Transport.WEBSOCKET.value] = hub
    if settings.RABBITMQ_ENABLED:
        from evolink.gateway.amqp_sender import RabbitSender

        out[Transport.RABBITMQ.value] = RabbitSender(settings.RABBITMQ_URI, policy=policy)
    if settings.NATS_ENABLED:
        from evolink.gateway.nats_sender import NatsSender

        out[Transport.NATS.value] = NatsSender(settings.NATS_URI, policy=policy)
    return out


class SocketIOMount:
    """ASGI: `/socket.io/…` (HTTP long-polling and WebSocket) to socket.io, everything else to FastAPI."""

    def __init__(self, app: ASGIApp, hub: SocketHub) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and str(scope.get("path", "")).startswith("/socket.io/"):
            await self.hub.asgi(scope, receive, send)
            return
        await self.app(scope, receive, send)
