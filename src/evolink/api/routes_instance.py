"""`/instance/*` routes: Evolution 2.3.7 paths, verbs, status codes and bodies."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from evolink.api.auth import global_guard, instance_guard, presented_key, same_key
from evolink.api.context import GatewayContext, get_context
from evolink.api.errors import ApiError
from evolink.api.openapi import SECURED, error_responses
from evolink.api.responses import (
    ConnectBody,
    ConnectionStateBody,
    CreateAnswer,
    InstanceRow,
    PresenceAnswer,
    StatusResponse,
)
from evolink.api.routes_proxy import create_proxy_spec, proxy_row, spec_values
from evolink.api.routes_transports import apply_create_confs, create_confs, transport_rows
from evolink.api.schemas import InstanceCreateBody, PresenceBody, instance_row
from evolink.gateway import CreateRequest, InstanceRuntime, InvalidNumber, NotConnected
from evolink.gateway.inputs import lookup_name
from evolink.gateway.runtime import PresenceError
from evolink.store import NameInUse, SealError, TokenInUse
from evolink.store.models import Instance

router = APIRouter(prefix="/instance", tags=["instance"])

BAILEYS = "WHATSAPP-BAILEYS"
_KNOWN_INTEGRATIONS = {"WHATSAPP-BAILEYS", "WHATSAPP-BUSINESS", "EVOLUTION"}


async def _runtime(ctx: GatewayContext, row: Instance) -> InstanceRuntime:
    rt = await ctx.manager.get(row.name)
    if rt is None:  # deleted between the guard and here
        raise ApiError(404, f'The "{row.name}" instance does not exist')
    return rt


@router.post("/create", status_code=201, dependencies=[Depends(global_guard)],
             summary="Create an instance (global key)", response_model=CreateAnswer, response_model_exclude_unset=True,
             responses=error_responses(403))
async def create_instance(body: InstanceCreateBody, ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    integration = body.integration or BAILEYS  # Evolution 400s on a missing one; defaulting is additive
    if integration != BAILEYS:
        if integration in _KNOWN_INTEGRATIONS:
            raise ApiError(400, f'Invalid integration: evolink links "{BAILEYS}" instances only, not "{integration}"')
        raise ApiError(400, "Invalid integration")
    if await ctx.store.get_instance(body.instanceName) is not None:
        raise ApiError(403, f'This name "{body.instanceName}" is already in use.')
    webhook = body.webhook.columns() if body.webhook is not None else None
    proxy = await create_proxy_spec(ctx, body.model_extra or {})
    transports = create_confs(ctx, body.instanceName, body.model_extra or {})
    try:
        row, rt = await ctx.manager.create(CreateRequest(
            name=body.instanceName, token=body.token, integration=integration, number=body.number,
            settings=body.settings_columns(), webhook=webhook,
            prepare=lambda instance_id: apply_create_confs(ctx, instance_id, transports)))
    except NameInUse:
        raise ApiError(403, f'This name "{body.instanceName}" is already in use.') from None
    except TokenInUse:  # evolink: a token opens its instance, so two instances never share one
        raise ApiError(403, "This token is already in use by another instance.") from None
    if proxy is not None:
        await ctx.store.upsert_proxy(row.id, spec_values(proxy))

    qrcode: dict[str, Any] | None = None
    if body.qrcode:
        try:
            answer = await rt.connect(body.number)
        except InvalidNumber as exc:
            answer = {"error": True, "message": str(exc)}
        qrcode = answer if "error" not in answer else {"count": rt.qr.count, **answer}
        if "instance" in answer:  # already open (cannot happen for a new instance, kept for safety)
            qrcode = None

    setting = await ctx.store.get_setting(row.id)
    extra = body.model_extra or {}
    out: dict[str, Any] = {
        "instance": {"instanceName": row.name, "instanceId": row.id, "integration": integration,
                     "webhookWaBusiness": None, "accessTokenWaBusiness": "", "status": rt.state},
        "hash": row.token,
        "webhook": ({"webhookUrl": body.webhook.url, "webhookHeaders": body.webhook.headers,
                     "webhookByEvents": body.webhook.byEvents, "webhookBase64": body.webhook.base64}
                    if body.webhook is not None else {}),
    }
    for transport in ("websocket", "rabbitmq", "nats", "sqs"):
        conf = extra.get(transport)
        out[transport] = {"enabled": conf.get("enabled")} if isinstance(conf, dict) and "enabled" in conf else {}
    out["settings"] = {
        "rejectCall": setting.reject_call if setting else False, "msgCall": setting.msg_call if setting else "",
        "groupsIgnore": setting.groups_ignore if setting else False,
        "alwaysOnline": setting.always_online if setting else False,
        "readMessages": setting.read_messages if setting else False,
        "readStatus": setting.read_status if setting else False,
        "syncFullHistory": setting.sync_full_history if setting else False,
        "wavoipToken": setting.wavoip_token if setting else "",
    }
    if qrcode is not None:
        out["qrcode"] = qrcode
    return out


@router.get("/connect/{instanceName}", summary="Start linking; returns the QR object or the pairing code",
            response_model=ConnectBody, response_model_exclude_unset=True)
async def connect(number: str | None = None, row: Instance = Depends(instance_guard),
                  ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    rt = await _runtime(ctx, row)
    try:
        return await rt.connect(number)
    except InvalidNumber as exc:
        return {"error": True, "message": str(exc)}


@router.get("/connectionState/{instanceName}", response_model=ConnectionStateBody, response_model_exclude_unset=True)
async def connection_state(row: Instance = Depends(instance_guard),
                           ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    rt = await _runtime(ctx, row)
    body = rt.state_body()
    why = rt.last_disconnect_body()
    if why is not None:  # additive: why a closed/retrying instance is not open (e.g. its proxy refuses)
        body["lastDisconnect"] = why
    return body


@router.post("/restart/{instanceName}", summary="Restart the connection", response_model=ConnectBody, response_model_exclude_unset=True)
@router.put("/restart/{instanceName}", summary="Restart the connection (v1 verb, kept for old clients)",
            operation_id="restart_instance_put", response_model=ConnectBody, response_model_exclude_unset=True)
async def restart(row: Instance = Depends(instance_guard), ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    return await (await _runtime(ctx, row)).restart()


@router.get("/fetchInstances", response_model=list[InstanceRow], response_model_exclude_unset=True,
            responses=error_responses(401, 404), openapi_extra=SECURED)
async def fetch_instances(request: Request, instanceName: str | None = None,
                          instanceId: str | None = None, number: str | None = None,
                          ctx: GatewayContext = Depends(get_context)) -> list[dict[str, Any]]:
    key = presented_key(request)
    if key is None:
        raise ApiError(401)
    if same_key(key, ctx.api_key.value):
        if instanceId or number:
            rows = await ctx.store.list_instances(instance_id=instanceId, number=number)
            if not rows:
                raise ApiError(404, f'Instance "{instanceId or number}" not found')
        elif instanceName:
            rows = await ctx.store.list_instances(name=lookup_name(instanceName))
            if not rows:
                raise ApiError(404, f'Instance "{instanceName}" not found')
        else:
            rows = await ctx.store.list_instances(client_name=ctx.settings.DATABASE_CONNECTION_CLIENT_NAME)
    else:
        rows = await ctx.store.list_instances(token=key, name=lookup_name(instanceName) if instanceName else None,
                                              instance_id=instanceId)
        if not rows:
            raise ApiError(401)
    out = []
    for row in rows:
        rt = ctx.manager.running(row.name)  # cluster: another node's live state is the stored one
        item = instance_row(row, await ctx.store.get_setting(row.id), rt.state if rt else None)
        try:
            item["Proxy"] = proxy_row(await ctx.store.get_proxy(row.id))
        except SealError:
            item["Proxy"] = None  # unreadable with this EVOLINK_SECRET_KEY; /proxy/find says why
        item.update(await transport_rows(ctx, row.id))
        out.append(item)
    return out


@router.post("/setPresence/{instanceName}", status_code=201, response_model=PresenceAnswer,
             responses=error_responses(400))
async def set_presence(body: PresenceBody, row: Instance = Depends(instance_guard),
                       ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    rt = await _runtime(ctx, row)
    try:
        await rt.set_presence(body.presence)
    except (NotConnected, PresenceError) as exc:
        raise ApiError(400, str(exc)) from None
    return {"presence": body.presence}


@router.delete("/logout/{instanceName}", response_model=StatusResponse, responses=error_responses(400))
async def logout(row: Instance = Depends(instance_guard), ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    try:
        await (await _runtime(ctx, row)).logout()
    except NotConnected as exc:
        raise ApiError(400, str(exc)) from None
    return {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}


@router.delete("/delete/{instanceName}", response_model=StatusResponse)
async def delete(row: Instance = Depends(instance_guard), ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    await ctx.manager.delete(row.name)
    return {"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}}

