"""`/message/sendText` and `/message/sendReaction` (Evolution 2.3.7 paths, bodies and answers).

Guards as everywhere (404 unknown instance → 401 apikey); then Evolution's schema check (400
``[["…"]]``), then the send (``gateway/sending.py``): 201 with the message record, or Evolution's 400
(``["Error: Connection Closed"]`` when the instance is not open, ``[{"jid","exists":false,"number"}]``
for a recipient not on WhatsApp, ``["Text is required"]``, ``["Reaction must be a single emoji or
empty string"]``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from evolink.api.auth import instance_guard
from evolink.api.context import GatewayContext, get_context
from evolink.api.errors import ApiError
from evolink.api.evo_schema import check
from evolink.api.message_schemas import ERRORS, SEND_REACTION, SEND_TEXT, MessageRecordModel, request_body
from evolink.gateway.emoji import is_single_emoji
from evolink.gateway.sending import InstanceSender, Quoted, SendRefused
from evolink.store.models import Instance

router = APIRouter(prefix="/message", tags=["message"])


async def json_body(request: Request, schema: dict[str, Any], *, optional: bool = False) -> Any:
    """The JSON body checked against ``schema``: 400 with Evolution's nested messages when it fails."""
    raw = await request.body()  # bounded before it gets here (api/limits.py: EVOLINK_MAX_*BODY_BYTES)
    if not raw.strip() and optional:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Malformed JSON body: {exc}") from None
    errors = check(schema, body)
    if errors:
        raise ApiError(400, errors)
    return body


async def sender_of(ctx: GatewayContext, row: Instance) -> InstanceSender:
    rt = await ctx.manager.get(row.name)
    if rt is None:
        raise ApiError(404, f'The "{row.name}" instance does not exist')
    if rt.sender is None:
        raise ApiError(500, "messaging is not enabled in this gateway")
    return rt.sender


def created(record: dict[str, Any]) -> JSONResponse:
    return JSONResponse(record, status_code=201)


@router.post("/sendText/{instanceName}", status_code=201, response_model=MessageRecordModel,
             summary="Send a text (1:1 or group)", responses=ERRORS, openapi_extra=request_body(SEND_TEXT))
async def send_text(request: Request, row: Instance = Depends(instance_guard),
                    ctx: GatewayContext = Depends(get_context)) -> JSONResponse:
    body = await json_body(request, SEND_TEXT)
    sender = await sender_of(ctx, row)
    q = body.get("quoted")
    quoted = None
    if q is not None:
        k = q["key"]
        quoted = Quoted(id=k["id"], remote_jid=k.get("remoteJid"), from_me=bool(k.get("fromMe", False)),
                        participant=k.get("participant"), message=q.get("message"))
    try:
        record = await sender.send_text(number=body["number"], text=body["text"], delay=body.get("delay"),
                                        quoted=quoted, mentioned=body.get("mentioned"),
                                        mentions_everyone=bool(body.get("mentionsEveryOne", False)))
    except SendRefused as exc:
        raise ApiError(exc.status, *exc.messages) from None
    return created(record)


@router.post("/sendReaction/{instanceName}", status_code=201, response_model=MessageRecordModel,
             summary="React to a message", responses=ERRORS, openapi_extra=request_body(SEND_REACTION))
async def send_reaction(request: Request, row: Instance = Depends(instance_guard),
                        ctx: GatewayContext = Depends(get_context)) -> JSONResponse:
    body = await json_body(request, SEND_REACTION)
    reaction = body["reaction"]
    if reaction != "" and not is_single_emoji(reaction):
        raise ApiError(400, "Reaction must be a single emoji or empty string")
    sender = await sender_of(ctx, row)
    try:
        record = await sender.send_reaction(key=body["key"], reaction=reaction)
    except SendRefused as exc:
        raise ApiError(exc.status, *exc.messages) from None
    return created(record)
