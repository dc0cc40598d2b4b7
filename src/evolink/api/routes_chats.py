"""`POST /chat/whatsappNumbers`, `/chat/findChats`, `/chat/findContacts` (Evolution 2.3.7).

findChats/findContacts read the store and work while the instance is disconnected, as in Evolution.
whatsappNumbers needs the open connection for phone numbers and groups; when it is not open the
answer is 400 `["Connection Closed"]` (Evolution: a 400 with Baileys' error object, or a 500).
Deltas are listed in docs/gateway.md ("Chats, contacts, groups").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Body, Depends

from evolink.api.auth import instance_guard
from evolink.api.chat_schemas import (
    ChatOut,
    ContactOut,
    FindChatsBody,
    FindContactsBody,
    OnWhatsAppOut,
    TimestampRange,
    WhatsAppNumbersBody,
)
from evolink.api.context import GatewayContext, get_context
from evolink.api.errors import ApiError
from evolink.api.message_schemas import ERRORS
from evolink.gateway.chats import chat_json, contact_json
from evolink.gateway.groups import Groups, InstanceNotOpen
from evolink.gateway.lookup import whatsapp_numbers
from evolink.gateway.numbers import create_jid
from evolink.store.chats_repo import ChatStore
from evolink.store.models import Instance
from evolink.wa.message_send import SendError

router = APIRouter(prefix="/chat", tags=["chat"])


def chat_store(ctx: GatewayContext) -> ChatStore:
    return ChatStore(ctx.db, ctx.store.cipher, ctx.clock.now)


async def instance_groups(ctx: GatewayContext, row: Instance) -> Groups:
    rt = await ctx.manager.get(row.name)
    if rt is None:  # deleted between the guard and here
        raise ApiError(404, f'The "{row.name}" instance does not exist')
    return Groups(rt, chat_store(ctx))


def _jid_filter(value: str | None) -> str | None:
    if value is None:
        return None
    return value if "@" in value else create_jid(value)


def _epoch_seconds(value: str | int, field: str) -> int:
    """JavaScript `new Date(x)` for an ISO string or epoch milliseconds, in whole seconds."""
    if isinstance(value, int):
        return value // 1000
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp())
    except (ValueError, OverflowError, OSError):
        raise ApiError(400, [f"where.messageTimestamp.{field} is not a date"]) from None


_TS_MAX = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL: clamp, never overflow the query


def _range(r: TimestampRange | None) -> tuple[int | None, int | None]:
    if r is None or r.gte is None or r.lte is None:  # Evolution filters only when both are given
        return None, None
    gte, lte = _epoch_seconds(r.gte, "gte"), _epoch_seconds(r.lte, "lte")
    return min(max(gte, -_TS_MAX), _TS_MAX), min(max(lte, -_TS_MAX), _TS_MAX)


@router.post("/whatsappNumbers/{instanceName}", response_model=list[OnWhatsAppOut],
             response_model_exclude_unset=True, summary="Which numbers (and groups) are on WhatsApp", responses=ERRORS)
async def whatsapp_numbers_route(body: WhatsAppNumbersBody, row: Instance = Depends(instance_guard),
                                 ctx: GatewayContext = Depends(get_context)) -> list[dict[str, Any]]:
    groups = await instance_groups(ctx, row)
    try:
        return await whatsapp_numbers(groups, body.numbers)
    except (InstanceNotOpen, SendError) as exc:
        raise ApiError(400, str(exc)) from None


@router.post("/findChats/{instanceName}", response_model=list[ChatOut], response_model_exclude_unset=True,
             summary="Chats with their last message (newest first)", responses=ERRORS)
async def find_chats(body: FindChatsBody | None = Body(None), row: Instance = Depends(instance_guard),
                     ctx: GatewayContext = Depends(get_context)) -> list[dict[str, Any]]:
    body = body or FindChatsBody()
    where = body.where
    gte, lte = _range(where.messageTimestamp if where is not None else None)
    views = await chat_store(ctx).find_chats(row.id, remote_jid=_jid_filter(where.remoteJid if where else None),
                                             ts_gte=gte, ts_lte=lte, take=body.take, skip=body.skip)
    now = ctx.clock.now()
    return [chat_json(v, row.id, now) for v in views]


@router.post("/findContacts/{instanceName}", response_model=list[ContactOut], summary="Stored contacts", responses=ERRORS)
async def find_contacts(body: FindContactsBody | None = Body(None), row: Instance = Depends(instance_guard),
                        ctx: GatewayContext = Depends(get_context)) -> list[dict[str, Any]]:
    body = body or FindContactsBody()
    where = body.where
    take = body.offset
    skip = take * (body.page - 1) if take is not None and body.page is not None else None
    rows = await chat_store(ctx).find_contacts(
        row.id, remote_jid=_jid_filter(where.remoteJid if where else None),
        contact_id=where.id if where else None, push_name=where.pushName if where else None, take=take, skip=skip)
    return [contact_json(r) for r in rows]
