"""`POST /group/create`, `GET /group/fetchAllGroups`, `GET /group/findGroupInfos` (Evolution 2.3.7).

Query checks answer Evolution's own messages and shapes (`groupValidate`/`getParticipantsValidate`:
`[{"property", "message"}]`). A failure of the WhatsApp side answers as Evolution does except that
nothing is ever a 500: create → 400 `["Error creating group", "Error: …"]`, fetchAllGroups → 400
`["Connection Closed"]` (or the server's error), findGroupInfos → 404 `["Error fetching group", "Error: …"]`.
`findGroupInfos` reads `groupJid` from the query string only (Evolution also reads a JSON body).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends

from evolink.api.auth import instance_guard
from evolink.api.chat_schemas import CreateGroupBody, GroupInfoOut, GroupMetadataOut
from evolink.api.context import GatewayContext, get_context
from evolink.api.errors import ApiError
from evolink.api.message_schemas import ERRORS
from evolink.api.routes_chats import instance_groups
from evolink.gateway.groups import GroupFailure
from evolink.store.models import Instance

router = APIRouter(prefix="/group", tags=["group"])

_GROUP_JID = re.compile(r"^[\d-]+@g\.us$")


@router.post("/create/{instanceName}", status_code=201, response_model=GroupMetadataOut,
             response_model_exclude_unset=True, summary="Create a group (participants not on WhatsApp are dropped)", responses=ERRORS)
async def create_group(body: CreateGroupBody, row: Instance = Depends(instance_guard),
                       ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    groups = await instance_groups(ctx, row)
    try:
        return await groups.create(body.subject, body.participants, description=body.description,
                                   promote=bool(body.promoteParticipants))
    except GroupFailure as exc:
        raise ApiError(exc.status, *exc.messages) from None


@router.get("/fetchAllGroups/{instanceName}", response_model=list[GroupInfoOut], response_model_exclude_unset=True,
            summary="Every group the account participates in", responses=ERRORS)
async def fetch_all_groups(getParticipants: str | None = None, row: Instance = Depends(instance_guard),
                           ctx: GatewayContext = Depends(get_context)) -> list[dict[str, Any]]:
    if not getParticipants:
        raise ApiError(400, "The getParticipants needs to be informed in the query")
    if getParticipants not in ("true", "false"):
        raise ApiError(400, {"property": "getParticipants",
                             "message": "getParticipants is not one of enum values: true,false"})
    groups = await instance_groups(ctx, row)
    try:
        return await groups.fetch_all(getParticipants == "true")
    except GroupFailure as exc:
        raise ApiError(exc.status, *exc.messages) from None


@router.get("/findGroupInfos/{instanceName}", response_model=GroupInfoOut, response_model_exclude_unset=True,
            summary="One group's metadata (always with participants)", responses=ERRORS)
async def find_group_infos(groupJid: str | None = None, row: Instance = Depends(instance_guard),
                           ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    if not groupJid:
        raise ApiError(400, "The group id needs to be informed in the query", 'ex: "groupJid=120362@g.us"')
    jid = groupJid if "@g.us" in groupJid else f"{groupJid}@g.us"
    if not _GROUP_JID.match(jid):
        raise ApiError(400, {"property": "groupJid",
                             "message": 'groupJid does not match pattern "^[\\\\d-]+@g.us$"'})
    groups = await instance_groups(ctx, row)
    try:
        return await groups.find(jid)
    except GroupFailure as exc:
        raise ApiError(exc.status, *exc.messages) from None
