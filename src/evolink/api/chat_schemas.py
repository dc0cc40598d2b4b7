"""Bodies and typed responses of the chat and group routes (Evolution 2.3.7 field names).

Request bodies ignore unknown fields (no Evolution schema forbids them). Responses are typed for
``/openapi.json``; optional fields that Evolution leaves undefined are left out of the JSON (the
routes use ``response_model_exclude_unset``), so ``null`` appears only where Evolution has it.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

MAX_NUMBERS = 1000  # per whatsappNumbers call (Evolution has no limit; one usync query per 500)
MAX_PARTICIPANTS = 1023  # WhatsApp's group size less the creator
_DIGITS = re.compile(r"\d+")
Number = Annotated[StrictStr, Field(min_length=1, max_length=128)]  # a phone number or a JID


def _unique(values: list[str], field: str) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError(f"{field} contains duplicate item")
    return values


class WhatsAppNumbersBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    numbers: list[Number] = Field(min_length=1, max_length=MAX_NUMBERS)

    @field_validator("numbers")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        return _unique(v, "numbers")


class TimestampRange(BaseModel):
    model_config = ConfigDict(extra="ignore")
    gte: StrictStr | StrictInt | None = None
    lte: StrictStr | StrictInt | None = None


class ChatWhere(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    id_: StrictStr | None = Field(default=None, alias="_id", min_length=1, max_length=64)
    id: StrictStr | None = Field(default=None, min_length=1, max_length=64)
    pushName: StrictStr | None = Field(default=None, min_length=1, max_length=100)
    remoteJid: StrictStr | None = Field(default=None, min_length=1, max_length=128)
    messageTimestamp: TimestampRange | None = None


class FindChatsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    where: ChatWhere | None = None
    take: StrictInt | None = Field(default=None, ge=0, le=10_000)
    skip: StrictInt | None = Field(default=None, ge=0, le=10**9)


class FindContactsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    where: ChatWhere | None = None
    offset: StrictInt | None = Field(default=None, ge=1, le=10_000)
    page: StrictInt | None = Field(default=None, ge=1, le=10**6)


class CreateGroupBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    subject: StrictStr = Field(max_length=1024)  # WhatsApp allows 100: 101..1024 get "Error creating group"
    participants: list[Number] = Field(min_length=1, max_length=MAX_PARTICIPANTS)
    description: StrictStr | None = Field(default=None, min_length=1, max_length=2048)
    promoteParticipants: StrictBool | None = None
    profilePicture: StrictStr | None = None

    @field_validator("participants")
    @classmethod
    def _participants(cls, v: list[str]) -> list[str]:
        if any(len(p) < 10 or not _DIGITS.search(p) for p in v):
            raise ValueError('"participants" must be an array of numeric strings')
        return _unique(v, "participants")


# ------------------------------------------------------------------------------------ responses


class OnWhatsAppOut(BaseModel):
    jid: str
    exists: bool
    number: str
    name: str | None = None
    lid: str | None = None


class ChatOut(BaseModel):
    id: str | None
    remoteJid: str
    pushName: str | None
    profilePicUrl: str | None
    updatedAt: str | None
    windowStart: str | None
    windowExpires: str | None
    windowActive: bool
    lastMessage: dict[str, Any] | None = None
    unreadCount: int | None
    isSaved: bool


class ContactOut(BaseModel):
    id: str
    remoteJid: str
    pushName: str | None
    profilePicUrl: str | None
    createdAt: str
    updatedAt: str
    instanceId: str
    isGroup: bool
    isSaved: bool
    type: str


class GroupParticipantOut(BaseModel):
    id: str
    phoneNumber: str | None = None
    lid: str | None = None
    admin: str | None


class GroupMetadataOut(BaseModel):
    """Baileys ``GroupMetadata`` (``group/create`` and ``GROUPS_UPSERT``)."""

    id: str
    addressingMode: str
    subject: str
    subjectOwner: str | None = None
    subjectOwnerPn: str | None = None
    subjectTime: int | None = None
    size: int
    creation: int | None = None
    owner: str | None = None
    ownerPn: str | None = None
    owner_country_code: str | None = None
    desc: str | None = None
    descId: str | None = None
    descOwner: str | None = None
    descTime: int | None = None
    linkedParent: str | None = None
    restrict: bool
    announce: bool
    isCommunity: bool
    isCommunityAnnounce: bool
    joinApprovalMode: bool
    memberAddMode: bool
    participants: list[GroupParticipantOut]
    ephemeralDuration: int | None = None


class GroupInfoOut(BaseModel):
    """``fetchAllGroups`` element / ``findGroupInfos`` answer."""

    id: str
    subject: str
    subjectOwner: str | None = None
    subjectTime: int | None = None
    pictureUrl: str | None
    size: int
    creation: int | None = None
    owner: str | None = None
    desc: str | None = None
    descId: str | None = None
    restrict: bool
    announce: bool
    participants: list[GroupParticipantOut] | None = None
    isCommunity: bool
    isCommunityAnnounce: bool
    linkedParent: str | None = None
