"""`POST /proxy/set/{instance}`, `GET /proxy/find/{instance}` and the `proxy*` fields of `create`.

Evolution 2.3.7's bodies and checks, with these differences (docs/gateway.md "Proxies"):
- the proxy is tested by opening a tunnel through it to the WhatsApp WebSocket host the engine uses
  (Evolution fetches https://icanhazip.com through it); failure is Evolution's 400 `Invalid proxy`
  plus a second message with the reason;
- the password is sealed at rest and shown as `********` by `find` and `set` (Evolution returns it
  in clear); sending `********` back keeps the stored password, so a form round-trip loses nothing;
- a disabled proxy needs no host/port/protocol (Evolution's schema demands them, then blanks them).
A new proxy applies from the instance's next connection (`connect` of a closed instance, `restart`),
as in Evolution; the connection it replaces is not cut.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from evolink.api.auth import instance_guard
from evolink.api.context import GatewayContext, get_context
from evolink.api.errors import ApiError
from evolink.api.openapi import error_responses
from evolink.api.responses import ProxyRow, ProxySetAnswer
from evolink.clock.base import iso_utc
from evolink.gateway.proxy import MASK, InvalidProxy, ProxySpec
from evolink.store import ProxyRecord, SealError
from evolink.store.models import Instance

router = APIRouter(tags=["proxy"])

CHECK_SECONDS = 10.0
_BLANK: dict[str, Any] = {"enabled": False, "host": "", "port": "", "protocol": "", "username": "", "password": ""}


class ProxyBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    enabled: bool
    host: str | None = None
    port: str | int | None = None
    protocol: str | None = None
    username: str | None = None
    password: str | None = None


def masked(password: str) -> str:
    return MASK if password else ""


def proxy_row(rec: ProxyRecord | None) -> dict[str, Any] | None:
    """The Prisma `Proxy` row (password masked), or None."""
    if rec is None:
        return None
    return {"id": rec.id, "enabled": rec.enabled, "host": rec.host, "port": rec.port, "protocol": rec.protocol,
            "username": rec.username, "password": masked(rec.password), "createdAt": iso_utc(rec.created_at),
            "updatedAt": iso_utc(rec.updated_at), "instanceId": rec.instance_id}


def spec_values(spec: ProxySpec) -> dict[str, Any]:
    return {"enabled": True, "host": spec.host, "port": str(spec.port), "protocol": spec.protocol,
            "username": spec.username, "password": spec.password}


def parse_or_400(host: str | None, port: str | int | None, protocol: str | None, username: str | None,
                 password: str | None) -> ProxySpec:
    try:
        return ProxySpec.parse(host, port, protocol, username, password)
    except InvalidProxy as exc:
        raise ApiError(400, "Invalid proxy", str(exc)) from None


async def check_or_400(ctx: GatewayContext, spec: ProxySpec) -> None:
    try:
        await spec.check(ctx.settings.WA_WEBSOCKET_URL, within=CHECK_SECONDS)
    except InvalidProxy as exc:
        raise ApiError(400, "Invalid proxy", str(exc)) from None


async def _stored(ctx: GatewayContext, instance_id: str) -> ProxyRecord | None:
    try:
        return await ctx.store.get_proxy(instance_id)
    except SealError as exc:
        raise ApiError(400, f"The stored proxy password cannot be read: {exc}") from None


@router.post("/proxy/set/{instanceName}", status_code=201, summary="Set (and test) the instance's proxy",
             response_model=ProxySetAnswer)
async def proxy_set(body: ProxyBody, row: Instance = Depends(instance_guard),
                    ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    if not body.enabled:
        values: dict[str, Any] = dict(_BLANK)
    else:
        password = body.password or ""
        if password == MASK:  # the masked value `find` showed: keep what is stored
            current = await _stored(ctx, row.id)
            password = current.password if current is not None else ""
        spec = parse_or_400(body.host, body.port, body.protocol, body.username, password)
        await check_or_400(ctx, spec)
        values = spec_values(spec)
    await ctx.store.upsert_proxy(row.id, values)
    shown = {**values, "password": masked(values["password"])}
    return {"proxy": {"instanceName": row.name, "proxy": shown}}


@router.get("/proxy/find/{instanceName}", summary="The instance's proxy (null when none)",
            response_model=ProxyRow | None, responses=error_responses(400))
async def proxy_find(row: Instance = Depends(instance_guard),
                     ctx: GatewayContext = Depends(get_context)) -> dict[str, Any] | None:
    return proxy_row(await _stored(ctx, row.id))


async def create_proxy_spec(ctx: GatewayContext, fields: dict[str, Any]) -> ProxySpec | None:
    """`create`'s `proxyHost`/`proxyPort`/`proxyProtocol` (+ user/password): parsed and tested before the
    instance exists (Evolution tests after creating it and leaves a half-made instance on failure)."""
    host, port, protocol = fields.get("proxyHost"), fields.get("proxyPort"), fields.get("proxyProtocol")
    if not (host and port and protocol):
        return None
    spec = parse_or_400(str(host), port, str(protocol), fields.get("proxyUsername"), fields.get("proxyPassword"))
    await check_or_400(ctx, spec)
    return spec
