"""`/chat/markMessageAsRead` and `/chat/findMessages` (Evolution 2.3.7).

findMessages reads the store only, so it works while the instance is disconnected (as Evolution's).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from evolink.api.auth import instance_guard
from evolink.api.context import GatewayContext, get_context
from evolink.api.errors import ApiError
from evolink.api.message_schemas import (
    ERRORS,
    FIND_MESSAGES,
    READ_MESSAGES,
    FindMessagesResponse,
    ReadMessagesResponse,
    request_body,
)
from evolink.api.routes_message import json_body, sender_of
from evolink.gateway.evolution_record import find_view
from evolink.gateway.sending import SendRefused
from evolink.store.message_repo import MessageFilter
from evolink.store.models import Instance

router = APIRouter(prefix="/chat", tags=["chat"])

DEFAULT_PAGE_SIZE = 50


@router.post("/markMessageAsRead/{instanceName}", status_code=201, response_model=ReadMessagesResponse,
             summary="Send read receipts", responses=ERRORS, openapi_extra=request_body(READ_MESSAGES))
async def mark_as_read(request: Request, row: Instance = Depends(instance_guard),
                       ctx: GatewayContext = Depends(get_context)) -> JSONResponse:
    body = await json_body(request, READ_MESSAGES)
    sender = await sender_of(ctx, row)
    try:
        await sender.mark_read(body["readMessages"])
    except SendRefused as exc:
        raise ApiError(exc.status, *exc.messages) from None
    return JSONResponse({"message": "Read messages", "read": "success"}, status_code=201)


def _seconds(value: Any, name: str) -> int:
    """A date as Evolution parses it (``new Date(x)``: ISO string or epoch milliseconds) → epoch seconds."""
    if isinstance(value, int):
        return value // 1000
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text) // 1000
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, [f"where.messageTimestamp.{name} is not a valid date"]) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def message_filter(where: dict[str, Any]) -> MessageFilter:
    key = where.get("key") or {}
    ts = where.get("messageTimestamp") or {}
    gte = lte = None
    if "gte" in ts and "lte" in ts:  # Evolution applies the range only with both ends
        gte, lte = _seconds(ts["gte"], "gte"), _seconds(ts["lte"], "lte")
    return MessageFilter(
        key_id=key.get("id") or None, from_me=True if key.get("fromMe") is True else None,
        remote_jid=key.get("remoteJid") or key.get("remoteJidAlt") or None,
        participant=key.get("participant") or None, row_id=where.get("id") or None,
        message_type=where.get("messageType") or None, source=where.get("source") or None,
        ts_gte=gte, ts_lte=lte)


@router.post("/findMessages/{instanceName}", response_model=FindMessagesResponse,
             summary="Stored messages, newest first, paginated", responses=ERRORS, openapi_extra=request_body(FIND_MESSAGES, False))
async def find_messages(request: Request, row: Instance = Depends(instance_guard),
                        ctx: GatewayContext = Depends(get_context)) -> JSONResponse:
    body = await json_body(request, FIND_MESSAGES, optional=True)
    page = int(body.get("page") or 1)
    size = int(body.get("offset") or DEFAULT_PAGE_SIZE)
    filt = message_filter(body.get("where") or {})
    rt = await ctx.manager.get(row.name)
    if rt is None or rt.messages is None:
        raise ApiError(404, f'The "{row.name}" instance does not exist')
    repo = rt.messages.repo
    total, rows = await repo.find(row.id, filt, page=page, size=size)
    records = [find_view(repo.record(r), updates) for r, updates in rows]
    return JSONResponse({"messages": {"total": total, "pages": math.ceil(total / size), "currentPage": page,
                                      "records": records}})
