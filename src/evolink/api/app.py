"""FastAPI app factory: the Evolution-compatible gateway (store, instances, webhooks, routes)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
from fastapi import FastAPI

from evolink import __version__
from evolink.api import events_wiring, routes_manager
from evolink.api.apikey import ApiKey, resolve_api_key
from evolink.api.context import GatewayContext
from evolink.api.cors import install_cors
from evolink.api.errors import install_error_handlers
from evolink.api.forward import ForwardToOwner
from evolink.api.health import router as health_router
from evolink.api.limits import MESSAGE_PREFIX, BodyLimitMiddleware, BodyLimits
from evolink.api.metrics import METRICS_VARIABLES, create_metrics_router
from evolink.api.openapi import install_openapi
from evolink.api.routes_chat_messages import router as chat_messages_router
from evolink.api.routes_chats import router as chats_router
from evolink.api.routes_config import router as config_router
from evolink.api.routes_events import router as events_router
from evolink.api.routes_group import router as group_router
from evolink.api.routes_instance import router as instance_router
from evolink.api.routes_integrations import router as integrations_router
from evolink.api.routes_message import router as message_router
from evolink.api.routes_proxy import router as proxy_router
from evolink.api.routes_server import router as server_router
from evolink.api.routes_transports import router as transports_router
from evolink.api.settings import Settings
from evolink.clock import Clock, ClockGuard, CorrectedClock, SkewPolicy
from evolink.gateway import (
    DeliveryWorker,
    EngineFactory,
    EventPublisher,
    GlobalWebhook,
    InstanceManager,
    LinkGuard,
    RetryPolicy,
    RuntimeOptions,
    observe,
    stored_webhook,
)
from evolink.gateway.chat_feed import ChatFeed
from evolink.gateway.chats import ChatBook
from evolink.gateway.groups import GroupEvents
from evolink.gateway.messages import MessageHub
from evolink.gateway.observe import LinkRefusal, allow_all
from evolink.gateway.proxy import ProxySpec, global_proxy
from evolink.store import Store, normalise_postgres_url, open_database, sqlite_url
from evolink.store.chats_repo import ChatStore
from evolink.store.creds_key import prepare_creds_key
from evolink.store.keyfile import secure_data_dir
from evolink.store.message_repo import MessageRepo
from evolink.store.transport_repo import TransportSettingsRepo

log = logging.getLogger("evolink.api")


def database_url(settings: Settings) -> str:
    if settings.DATABASE_PROVIDER == "postgresql":
        assert settings.DATABASE_CONNECTION_URI is not None
        return normalise_postgres_url(settings.DATABASE_CONNECTION_URI)
    return sqlite_url(settings.EVOLINK_DATA_DIR)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.WEBHOOK_RETRY_MAX_ATTEMPTS,
                       initial_delay=settings.WEBHOOK_RETRY_INITIAL_DELAY_SECONDS,
                       exponential=settings.WEBHOOK_RETRY_USE_EXPONENTIAL_BACKOFF,
                       max_delay=settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS,
                       jitter=settings.WEBHOOK_RETRY_JITTER_FACTOR,
                       non_retryable=frozenset(settings.WEBHOOK_RETRY_NON_RETRYABLE_STATUS_CODES))


def default_engine_factory(settings: Settings) -> EngineFactory:
    from evolink.gateway.engine_factory import real_engine_factory

    root = bytes.fromhex(settings.WA_ROOT_PUBLIC_KEY) if settings.WA_ROOT_PUBLIC_KEY else None
    return real_engine_factory(ws_url=settings.WA_WEBSOCKET_URL, root_public_key=root,
                               phone_client=settings.CONFIG_SESSION_PHONE_CLIENT,
                               phone_name=settings.CONFIG_SESSION_PHONE_NAME, version=settings.wa_version,
                               overrides={"reconnect_stable_after": settings.WA_RECONNECT_STABLE_SECONDS})


def settings_proxy(settings: Settings) -> ProxySpec | None:
    """Evolution's global PROXY_* fallback (validated by load_settings)."""
    return global_proxy(settings.PROXY_HOST, settings.PROXY_PORT, settings.PROXY_PROTOCOL, settings.PROXY_USERNAME,
                        settings.PROXY_PASSWORD)


def clock_link_guard(guard: ClockGuard) -> LinkGuard:
    """Adapt `ClockGuard.authorize_link` (it logs and counts refusals itself) to the gateway's hook."""

    async def check(method: str) -> LinkRefusal | None:
        decision = await guard.authorize_link(method)
        if decision.allowed:
            return None
        return LinkRefusal(decision.message, dict(decision.clock))

    return check


def create_app(settings: Settings, *, engine_factory: EngineFactory | None = None, clock: Clock | None = None,
               link_guard: LinkGuard | None = None, api_key: ApiKey | None = None,
               http_client: httpx.AsyncClient | None = None, db_schema: str | None = None,
               sandbox_admin_url: str | None = None,
               clock_guard: ClockGuard | Literal["auto"] | None = "auto") -> FastAPI:
    """Build the app; everything with I/O starts in the lifespan (database, instances, webhook worker,
    clock guard). `clock_guard="auto"` builds `evolink.clock.ClockGuard` from the CLOCK_* variables;
    None runs without one (tests), in which case `link_guard` (default: allow) decides."""
    if clock_guard == "auto":
        clock_guard = ClockGuard(clock=clock if isinstance(clock, CorrectedClock) else None)
    the_clock: Clock = clock or (clock_guard.clock if clock_guard is not None else CorrectedClock())
    if link_guard is None and clock_guard is not None:
        link_guard = clock_link_guard(clock_guard)
    key = api_key or resolve_api_key(settings.AUTHENTICATION_API_KEY, settings.EVOLINK_DATA_DIR)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        secure_data_dir(settings.EVOLINK_DATA_DIR, sqlite=settings.DATABASE_PROVIDER == "sqlite")
        db = open_database(database_url(settings), schema=db_schema)
        try:
            await db.migrate()
            creds_key = await prepare_creds_key(db, settings.EVOLINK_SECRET_KEY, settings.EVOLINK_DATA_DIR,
                                                settings.DATABASE_CONNECTION_CLIENT_NAME)
        except BaseException:
            await db.dispose()
            raise
        store = Store(db, creds_key.cipher, clock=the_clock, client_name=settings.DATABASE_CONNECTION_CLIENT_NAME)

        async def lookup(instance_id: str) -> Any:
            return await stored_webhook(store, instance_id)

        publisher = EventPublisher(
            store, the_clock,
            global_webhook=GlobalWebhook(enabled=settings.WEBHOOK_GLOBAL_ENABLED, url=settings.WEBHOOK_GLOBAL_URL,
                                         by_events=settings.WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS,
                                         events=dict(settings.webhook_events)),
            server_url=settings.SERVER_URL, expose_apikey=settings.AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES,
            lookup_webhook=lookup)
        transport_settings = TransportSettingsRepo(db, the_clock.now)
        publisher.transports = events_wiring.transport_router(settings, transport_settings)
        if not settings.SERVER_DISABLE_MANAGER:
            routes_manager.attach(app, publisher)
        chat_feed = ChatFeed(ChatBook(ChatStore(db, creds_key.cipher, the_clock.now), publisher))
        publisher.listeners.append(chat_feed.listener)  # chats/contacts follow every message record
        app.state.chat_feed = chat_feed
        worker = DeliveryWorker(store, retry_policy(settings), publisher.wake,
                                timeout=settings.WEBHOOK_REQUEST_TIMEOUT_MS / 1000, client=http_client,
                                clock=the_clock, retention=settings.EVOLINK_OUTBOX_DELIVERED_RETENTION_SECONDS,
                                failed_retention=settings.EVOLINK_OUTBOX_FAILED_RETENTION_SECONDS,
                                senders=events_wiring.senders(settings, hub),
                                claim_for=settings.WEBHOOK_REQUEST_TIMEOUT_MS / 1000 + 30 if settings.cluster_mode else None)
        cluster = None
        if settings.cluster_mode:  # docs/cluster.md
            from evolink.gateway.cluster import ClusterNode
            from evolink.store.leases import LeaseRepo

            cluster = ClusterNode(LeaseRepo(db, client_name=settings.DATABASE_CONNECTION_CLIENT_NAME),
                                  node_id=settings.EVOLINK_NODE_ID, url=settings.EVOLINK_NODE_URL,
                                  ttl=settings.EVOLINK_LEASE_SECONDS)
        app.state.cluster = cluster
        manager = InstanceManager(
            store=store, publisher=publisher, clock=the_clock,
            engine_factory=engine_factory or default_engine_factory(settings),
            options=RuntimeOptions(qrcode_limit=settings.QRCODE_LIMIT, qrcode_color=settings.QRCODE_COLOR,
                                   connect_wait=settings.CONNECT_WAIT_SECONDS),
            client_name=settings.DATABASE_CONNECTION_CLIENT_NAME, link_guard=link_guard or allow_all,
            del_instance_after=(settings.del_instance_minutes or 0) * 60 or None,
            proxy_fallback=settings_proxy(settings),
            messages=MessageHub(repo=MessageRepo(db, creds_key.cipher), publisher=publisher, store=store,
                                clock=the_clock, send_min_gap=settings.EVOLINK_SEND_MIN_GAP_MS / 1000),
            cluster=cluster)
        manager.event_hooks.append(GroupEvents(ChatStore(db, creds_key.cipher, the_clock.now)).on_event)
        app.state.gateway = GatewayContext(settings=settings, api_key=key, clock=the_clock, db=db, store=store,
                                           publisher=publisher, worker=worker, manager=manager,
                                           sandbox_admin_url=sandbox_admin_url, clock_guard=clock_guard,
                                           transport_settings=transport_settings)
        app.state.clock_guard = clock_guard
        app.state.database = db
        app.state.instance_states = manager.states
        observe.set_environment_info(__version__, settings.DATABASE_CONNECTION_CLIENT_NAME, settings.SERVER_URL or "")
        if cluster is not None:
            observe.set_cluster_node(cluster.node_id)
        stop_step_events = None
        if clock_guard is not None:
            # CLOCK_STEP (evolink extension event) for every loaded instance that subscribed to it.
            stop_step_events = clock_guard.add_step_listener(
                lambda report: manager.announce_clock_step(report.to_dict()))
            clock_guard.start()
        worker.start()
        chat_feed.start()
        if clock_guard is not None:
            rows = await store.list_instances(client_name=settings.DATABASE_CONNECTION_CLIENT_NAME)
            resuming = any(r.connection_status in ("open", "connecting") for r in rows)
            compensating = clock_guard.config.skew_policy is SkewPolicy.COMPENSATE
            if resuming or compensating:
                # Resumed logins check the server certificate against the corrected clock, and under
                # `compensate` every timestamp served (webhook date_time, createdAt, JWT iat) must be true
                # time from the first request on: measure first (bounded).
                await clock_guard.wait_first(10.0)
        resumed = await manager.load()
        log.info("gateway ready", extra={"instances": len(manager.runtimes), "resumed": resumed})
        try:
            yield
        finally:
            if stop_step_events is not None:
                stop_step_events()
            await manager.shutdown()
            await chat_feed.stop()
            await worker.stop()
            for sender in worker.senders.values():
                await sender.close()
            if clock_guard is not None:
                await clock_guard.stop()
            await db.dispose()

    app = FastAPI(title="evolink", version=__version__, lifespan=lifespan,
                  description="WhatsApp gateway, wire-compatible with Evolution API 2.3.7 (instance surface). "
                              "Authenticate with the `apikey` header.")
    install_error_handlers(app)
    app.add_middleware(ForwardToOwner)  # cluster mode only (no-op without app.state.cluster)
    # added before CORS, so it runs inside it: a a 401/413 still carries the CORS headers a browser needs to read it
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits(
        settings.EVOLINK_MAX_BODY_BYTES, ((MESSAGE_PREFIX, settings.EVOLINK_MAX_MESSAGE_BODY_BYTES),)))
    install_cors(app, settings)
    hub = events_wiring.socket_hub(settings, app)
    if hub is not None:
        app.add_middleware(events_wiring.SocketIOMount, hub=hub)
    app.include_router(config_router)
    app.include_router(server_router)
    app.include_router(events_router)
    app.include_router(transports_router)
    app.include_router(integrations_router)
    app.include_router(proxy_router)
    app.include_router(instance_router)
    app.include_router(chats_router)
    app.include_router(group_router)
    app.include_router(message_router)
    app.include_router(chat_messages_router)
    app.include_router(health_router)
    app.include_router(create_metrics_router({name: value for name in METRICS_VARIABLES
                                              if (value := getattr(settings, name)) is not None}))
    if not settings.SERVER_DISABLE_MANAGER:
        routes_manager.install(app)
    install_openapi(app)  # after every router: the error responses and `apikey` scheme are inferred per route
    return app
