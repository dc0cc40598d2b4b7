"""The web manager at `/manager` (static page shipped in the package) and its evolink-only API.

| route | auth | what |
| --- | --- | --- |
| `GET /manager` | none | the page (HTML/CSS/JS from `evolink/api/manager/`, no CDN) |
| `POST /manager/api/session` | global key or an instance token | `{token, expiresIn, scope, instance}`: a stream token |
| `GET /manager/api/events?token=` | stream token | Server-Sent Events: the gateway's events, scoped |
| `GET /manager/api/instances` | global key (all) or instance token (its own) | instance views |
| `GET /manager/api/instances/{name}` | global or instance token | one view (state, code/QR, last close) |
| `GET /manager/api/instances/{name}/history` | global or instance token | pairing attempts |
| `GET /manager/api/clock` | global key or an instance token | clock panel (verdict, offset, policy, fix) |

Views and tokens live in `evolink.gateway.console` / `evolink.gateway.live`; this module only
authenticates, fetches and serialises.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from evolink.api.auth import instance_guard, presented_key, same_key
from evolink.api.context import GatewayContext, get_context
from evolink.api.errors import ApiError
from evolink.api.openapi import error_responses, register_guard
from evolink.api.responses import ClockPanel, LiveSession, ManagerInstance, PairingAttemptView
from evolink.clock.base import iso_utc
from evolink.gateway import EventPublisher
from evolink.gateway.console import clock_view, history_view, instance_view
from evolink.gateway.live import GLOBAL, OVERFLOW, LiveBus, LiveEvent, LiveScope, LiveTokens, TokenError
from evolink.gateway.webhooks import InstanceRef
from evolink.store.models import Instance

STATIC_DIR = Path(__file__).with_name("manager")
KEEPALIVE_SECONDS = 15.0

router = APIRouter(tags=["manager (evolink extension)"])


def install(app: FastAPI) -> None:
    """Mount the page and its API on `app`; `attach` connects the live bus once the publisher exists."""
    app.state.live_bus = LiveBus()
    app.state.live_tokens = LiveTokens()
    app.include_router(router)
    app.mount("/manager/static", StaticFiles(directory=STATIC_DIR), name="manager-static")


def attach(app: FastAPI, publisher: EventPublisher) -> None:
    bus: LiveBus = app.state.live_bus

    def offer(inst: InstanceRef, event: str, data: Any, stamp: str) -> None:
        bus.offer(LiveEvent(event, inst.name, inst.instance_id, data, stamp))

    publisher.listeners.append(offer)


async def caller_scope(request: Request, ctx: GatewayContext = Depends(get_context)) -> LiveScope:
    """Global key → every instance; an instance token → that instance only; anything else → 401."""
    key = presented_key(request)
    if key is None:
        raise ApiError(401)
    if same_key(key, ctx.api_key.value):
        return LiveScope(GLOBAL)
    rows = await ctx.store.list_instances(token=key)
    if len(rows) != 1:
        raise ApiError(401)
    return LiveScope(rows[0].id, rows[0].name)


register_guard(caller_scope, 401)


class EventStreamResponse(StreamingResponse):
    media_type = "text/event-stream"


@router.get("/manager", include_in_schema=False)
async def page_redirect() -> RedirectResponse:
    return RedirectResponse("/manager/")


@router.get("/manager/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})


@router.post("/manager/api/session", summary="A short-lived token to open the live event stream",
             response_model=LiveSession)
async def session(request: Request, scope: LiveScope = Depends(caller_scope)) -> dict[str, Any]:
    tokens: LiveTokens = request.app.state.live_tokens
    return {"token": tokens.issue(scope), "expiresIn": tokens.ttl,
            "scope": "global" if scope.is_global else "instance", "instance": scope.instance_name}


def _sse(event: str | None, payload: Any) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(payload, separators=(',', ':'), default=str)}\n\n"


@router.get("/manager/api/events", summary="Server-Sent Events: the gateway's events for this scope",
            response_class=EventStreamResponse, responses={
                200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                      "description": "the event stream"},
                401: {**error_responses(401)[401], "description": "invalid or expired stream token"}})
async def events(request: Request, token: str = "") -> StreamingResponse:
    tokens: LiveTokens = request.app.state.live_tokens
    bus: LiveBus = request.app.state.live_bus
    try:
        scope = tokens.verify(token)
    except TokenError as exc:
        raise ApiError(401, str(exc)) from None
    async def stream() -> AsyncIterator[str]:
        # Subscribed before `ready` is sent: the page (re)loads its state on `ready`, so nothing is missed;
        # subscribed inside the generator, so `finally` always unsubscribes.
        sub = bus.subscribe(scope)
        try:
            yield "retry: 3000\n\n"
            yield _sse("ready", {"scope": "global" if scope.is_global else "instance",
                                 "instance": scope.instance_name})
            while True:
                ev = await sub.next(KEEPALIVE_SECONDS)
                if ev is None:
                    yield ": keep-alive\n\n"
                elif ev is OVERFLOW:
                    yield _sse("overflow", {"message": "too many events at once; reload the state"})
                    return
                else:
                    yield _sse(None, ev.to_json())
        finally:
            bus.unsubscribe(sub)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


def _view(ctx: GatewayContext, row: Instance, attempts: list[Any] | None = None) -> dict[str, Any]:
    s = ctx.settings
    view = instance_view(row, ctx.manager.running(row.name), qrcode_limit=s.QRCODE_LIMIT,
                         phone_client=s.CONFIG_SESSION_PHONE_CLIENT, phone_name=s.CONFIG_SESSION_PHONE_NAME,
                         attempts=attempts)
    view["serverNow"] = iso_utc(ctx.clock.now())  # the page counts down on the gateway's (corrected) time
    return view


@router.get("/manager/api/instances", summary="Instances this key may see, with live state",
            response_model=list[ManagerInstance])
async def instances(scope: LiveScope = Depends(caller_scope),
                    ctx: GatewayContext = Depends(get_context)) -> list[dict[str, Any]]:
    if scope.is_global:
        rows = await ctx.store.list_instances(client_name=ctx.settings.DATABASE_CONNECTION_CLIENT_NAME)
    else:
        rows = await ctx.store.list_instances(instance_id=scope.instance_id)
    return [_view(ctx, row) for row in rows]


@router.get("/manager/api/instances/{instanceName}", summary="One instance: state, active QR/code, last close",
            response_model=ManagerInstance)
async def one_instance(row: Instance = Depends(instance_guard),
                       ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    return _view(ctx, row, await ctx.store.list_pairing_attempts(row.id))


@router.get("/manager/api/instances/{instanceName}/history", summary="Pairing attempts of an instance",
            response_model=list[PairingAttemptView])
async def history(row: Instance = Depends(instance_guard),
                  ctx: GatewayContext = Depends(get_context)) -> list[dict[str, Any]]:
    return history_view(await ctx.store.list_pairing_attempts(row.id))


@router.get("/manager/api/clock", summary="Clock guard: verdict, offset, policy and what linking is told",
            response_model=ClockPanel)
async def clock(_scope: LiveScope = Depends(caller_scope),
                ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    return clock_view(ctx.clock_guard)
