"""What the routers reach through `request.app.state.gateway`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request

from evolink.api.apikey import ApiKey
from evolink.api.settings import Settings
from evolink.clock import Clock
from evolink.gateway import DeliveryWorker, EventPublisher, InstanceManager
from evolink.store import Database, Store


@dataclass
class GatewayContext:
    settings: Settings
    api_key: ApiKey
    clock: Clock
    db: Database
    store: Store
    publisher: EventPublisher
    worker: DeliveryWorker
    manager: InstanceManager
    sandbox_admin_url: str | None = None
    clock_guard: Any = None  # evolink.clock.guard.ClockGuard when running with one
    transport_settings: Any = None  # evolink.store.transport_repo.TransportSettingsRepo (docs/events.md)


def get_context(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.gateway
    return ctx
