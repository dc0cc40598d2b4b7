"""`/websocket`, `/rabbitmq`, `/nats` `set`/`find` (Evolution 2.3.7's `EventController`), and the same
settings given to `POST /instance/create`.

`set` takes `{"<transport>": {"enabled": bool, "events": [KEY, …]}}` and answers 201 with the row
`{id, enabled, events, createdAt, updatedAt, instanceId}`; as in Evolution, `enabled: false` stores
no events and an empty list means every Evolution event. `find` answers the row or `null`.
Delta (docs/events.md): when the transport is switched off by its env variable, Evolution answers
`set` with an empty 201 and stores nothing; evolink answers 400 naming the variable.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from evolink.api.auth import instance_guard
from evolink.api.context import GatewayContext, get_context
from evolink.api.errors import ApiError, validation_messages
from evolink.api.responses import TransportRow
from evolink.api.schemas import _check_events
from evolink.api.settings import EVENT_KEYS
from evolink.clock.base import iso_utc
from evolink.gateway.event_transports import Transport, naming_problem
from evolink.store.transport_models import EventTransportSetting

ENV_SWITCH: dict[Transport, str] = {Transport.WEBSOCKET: "WEBSOCKET_ENABLED",
                                    Transport.RABBITMQ: "RABBITMQ_ENABLED", Transport.NATS: "NATS_ENABLED"}


class TransportConf(BaseModel):
    model_config = ConfigDict(extra="ignore")

    enabled: bool
    events: list[str] = Field(default_factory=list)

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        return _check_events(v) or []

    def stored_events(self) -> list[str]:
        """Evolution's rule: disabled -> no events; enabled with none listed -> all of its events."""
        if not self.enabled:
            return []
        return list(dict.fromkeys(self.events)) or list(EVENT_KEYS)


def transport_row(row: EventTransportSetting | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"id": row.id, "enabled": row.enabled, "events": list(row.events), "createdAt": iso_utc(row.created_at),
            "updatedAt": iso_utc(row.updated_at), "instanceId": row.instance_id}


def _switched_on(ctx: GatewayContext, transport: Transport) -> bool:
    return bool(getattr(ctx.settings, ENV_SWITCH[transport]))


def parse_conf(transport: Transport, raw: Any) -> TransportConf:
    """The `{enabled, events}` object of one transport, or Evolution's 400 validation envelope."""
    if not isinstance(raw, dict):
        raise ApiError(400, [f'"{transport.value}" must be an object {{"enabled": bool, "events": [...]}}'])
    try:
        return TransportConf.model_validate(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": (transport.value, *e.get("loc", ()))} for e in exc.errors()]
        raise ApiError(400, validation_messages(errors)) from None


def create_confs(ctx: GatewayContext, name: str, extra: dict[str, Any]) -> dict[Transport, TransportConf]:
    """Transports given to `/instance/create` (Evolution enables each one given); checked before creating."""
    out: dict[Transport, TransportConf] = {}
    for transport in Transport:
        raw = extra.get(transport.value)
        if raw is None:
            continue
        if isinstance(raw, dict):
            raw = {**raw, "enabled": True}
        conf = parse_conf(transport, raw)
        if not _switched_on(ctx, transport):  # Evolution ignores it when off; so does evolink (no error on create)
            continue
        problem = naming_problem(transport, name)
        if problem is not None:
            raise ApiError(400, problem)
        out[transport] = conf
    return out


async def apply_create_confs(ctx: GatewayContext, instance_id: str, confs: dict[Transport, TransportConf]) -> None:
    for transport, conf in confs.items():
        await ctx.transport_settings.upsert(instance_id, transport.value, enabled=conf.enabled,
                                            events=conf.stored_events())


async def transport_rows(ctx: GatewayContext, instance_id: str) -> dict[str, Any]:
    """`fetchInstances`' `Websocket`, `Rabbitmq`, `Nats` (Prisma relation names): the row or null."""
    rows = await ctx.transport_settings.all_for(instance_id)
    return {label: transport_row(rows.get(t.value)) for t, label in
            ((Transport.WEBSOCKET, "Websocket"), (Transport.RABBITMQ, "Rabbitmq"), (Transport.NATS, "Nats"))}


router = APIRouter()


def _add(transport: Transport) -> None:
    name = transport.value

    async def set_(body: dict[str, Any], row: Any = Depends(instance_guard),
                   ctx: GatewayContext = Depends(get_context)) -> dict[str, Any] | None:
        if not _switched_on(ctx, transport):
            raise ApiError(400, f"{name} events are disabled on this server: set {ENV_SWITCH[transport]}=true "
                                "(see docs/events.md)")
        if name not in body:
            raise ApiError(400, [f'requires property "{name}"'])
        conf = parse_conf(transport, body[name])
        problem = naming_problem(transport, row.name) if conf.enabled else None
        if problem is not None:
            raise ApiError(400, problem)
        saved = await ctx.transport_settings.upsert(row.id, name, enabled=conf.enabled, events=conf.stored_events())
        return transport_row(saved)

    async def find(row: Any = Depends(instance_guard),
                   ctx: GatewayContext = Depends(get_context)) -> dict[str, Any] | None:
        return transport_row(await ctx.transport_settings.get(row.id, name))

    router.add_api_route(f"/{name}/set/{{instanceName}}", set_, methods=["POST"], status_code=201, tags=[name],
                         response_model=TransportRow | None,
                         summary=f"Enable/disable {name} events of the instance and choose them",
                         operation_id=f"{name}_set")
    router.add_api_route(f"/{name}/find/{{instanceName}}", find, methods=["GET"], tags=[name],
                         response_model=TransportRow | None,
                         summary=f"The instance's {name} settings (null: never set)", operation_id=f"{name}_find")


for _t in Transport:
    _add(_t)
