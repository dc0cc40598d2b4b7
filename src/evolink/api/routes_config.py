"""Per-instance configuration routes: `/webhook/{set,find}` and `/settings/{set,find}`, and `GET /`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from evolink import __version__
from evolink.api.auth import instance_guard
from evolink.api.context import GatewayContext, get_context
from evolink.api.responses import RootInfo, SettingRow, WebhookRow
from evolink.api.schemas import SettingsBody, WebhookSetBody, setting_row, webhook_row
from evolink.store.models import Instance

router = APIRouter()

EVOLUTION_VERSION = "2.3.7"


@router.get("/", tags=["server"], summary="Welcome / liveness (Evolution's de-facto health check)",
            response_model=RootInfo, response_model_exclude_unset=True)
async def root(request: Request, ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": 200,
        "message": "Welcome to the Evolution API, it is working!",
        "version": EVOLUTION_VERSION,
        "clientName": ctx.settings.DATABASE_CONNECTION_CLIENT_NAME,
    }
    if not ctx.settings.SERVER_DISABLE_MANAGER:  # omitted when disabled, as Evolution does
        body["manager"] = f"{str(request.base_url).rstrip('/')}/manager"  # the web manager (docs/manager.md)
    version = ".".join(str(p) for p in ctx.settings.wa_version)  # what the engine announces, as Evolution shows it
    body.update({"documentation": "/docs", "whatsappWebVersion": version, "evolink": __version__})
    return body


@router.post("/webhook/set/{instanceName}", status_code=201, tags=["webhook"], response_model=WebhookRow | None)
async def webhook_set(body: WebhookSetBody, row: Instance = Depends(instance_guard),
                      ctx: GatewayContext = Depends(get_context)) -> dict[str, Any] | None:
    saved = await ctx.store.upsert_webhook(row.id, body.webhook.columns())
    return webhook_row(saved)


@router.get("/webhook/find/{instanceName}", tags=["webhook"], response_model=WebhookRow | None)
async def webhook_find(row: Instance = Depends(instance_guard),
                       ctx: GatewayContext = Depends(get_context)) -> dict[str, Any] | None:
    return webhook_row(await ctx.store.get_webhook(row.id))


@router.post("/settings/set/{instanceName}", status_code=201, tags=["settings"], response_model=SettingRow | None)
async def settings_set(body: SettingsBody, row: Instance = Depends(instance_guard),
                       ctx: GatewayContext = Depends(get_context)) -> dict[str, Any] | None:
    return setting_row(await ctx.store.upsert_setting(row.id, body.columns()))


@router.get("/settings/find/{instanceName}", tags=["settings"], response_model=SettingRow | None)
async def settings_find(row: Instance = Depends(instance_guard),
                        ctx: GatewayContext = Depends(get_context)) -> dict[str, Any] | None:
    return setting_row(await ctx.store.get_setting(row.id))
