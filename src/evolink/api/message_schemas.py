"""Request schemas (Evolution 2.3.7 ``validate/message.schema.ts`` / ``chat.schema.ts`` wording) and
typed response models of the messaging routes.

The request schemas are JSON-schema dicts checked by ``evo_schema`` (Evolution's error texts) and
published as the OpenAPI request bodies. evolink adds upper bounds Evolution lacks (``text`` ≤ 65 536
characters, WhatsApp's own limit; ``delay`` ≤ 600 000 ms; ``offset`` ≤ 1 000), so an oversized
request is a clear 400, never a hang.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_TEXT = 65_536
MAX_DELAY_MS = 600_000
MAX_PAGE_SIZE = 1_000

_KEY_ID = {"type": "string", "minLength": 1, "maxLength": 128}

SEND_TEXT: dict[str, Any] = {
    "type": "object",
    "required": ["number", "text"],
    "properties": {
        "number": {"type": "string", "description": "Invalid format"},
        "text": {"type": "string", "maxLength": MAX_TEXT},
        "delay": {"type": "integer", "minimum": 0, "maximum": MAX_DELAY_MS,
                  "description": "Enter a value in milliseconds"},
        "linkPreview": {"type": "boolean"},
        "mentionsEveryOne": {"type": "boolean"},
        "mentioned": {"type": "array", "minItems": 1, "uniqueItems": True,
                      "items": {"type": "string", "pattern": r"^\d+",
                                "description": '"mentioned" must be an array of numeric strings'}},
        "quoted": {"type": "object", "required": ["key"], "properties": {
            "key": {"type": "object", "required": ["id"], "properties": {
                "id": _KEY_ID, "remoteJid": {"type": "string"}, "fromMe": {"type": "boolean"},
                "participant": {"type": "string"}}},
            "message": {"type": "object"}}},
    },
}

SEND_REACTION: dict[str, Any] = {
    "type": "object",
    "required": ["key", "reaction"],
    "properties": {
        "key": {"type": "object", "required": ["id", "remoteJid", "fromMe"], "properties": {
            "id": _KEY_ID, "remoteJid": {"type": "string", "minLength": 1}, "fromMe": {"type": "boolean"},
            "participant": {"type": "string"}}},
        "reaction": {"type": "string", "maxLength": 64},
    },
}

READ_MESSAGES: dict[str, Any] = {
    "type": "object",
    "required": ["readMessages"],
    "properties": {
        "readMessages": {"type": "array", "minItems": 1, "maxItems": 1000, "uniqueItems": True, "items": {
            "type": "object", "required": ["id", "fromMe", "remoteJid"], "properties": {
                "id": {"type": "string"}, "fromMe": {"type": "boolean", "enum": [True, False]},
                "remoteJid": {"type": "string"}}}},
    },
}

FIND_MESSAGES: dict[str, Any] = {
    "type": "object",
    "properties": {
        "where": {"type": "object", "properties": {
            "_id": {"type": "string"}, "id": {"type": "string"},
            "key": {"type": "object", "properties": {
                "id": {"type": "string"}, "remoteJid": {"type": "string"}, "remoteJidAlt": {"type": "string"},
                "fromMe": {"type": "boolean", "enum": [True, False]}, "participant": {"type": "string"}}},
            "messageType": {"type": "string"}, "source": {"type": "string"},
            "messageTimestamp": {"type": "object", "properties": {
                "gte": {"type": ["string", "integer"]}, "lte": {"type": ["string", "integer"]}}},
            "message": {"type": "object"}}},
        "page": {"type": "integer", "minimum": 1},
        "offset": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        "limit": {"type": "integer"},
    },
}


def request_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


class ErrorBody(BaseModel):
    message: Any = Field(description="list of messages (schema failures: a list inside the list), or a string")


class ErrorEnvelope(BaseModel):
    """Evolution's error envelope."""

    status: int
    error: str
    response: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorEnvelope, "description": "invalid body, not open, not on WhatsApp, refused"},
    401: {"model": ErrorEnvelope, "description": "missing or wrong apikey"},
    404: {"model": ErrorEnvelope, "description": "unknown instance"},
}


class MessageKey(BaseModel):
    model_config = ConfigDict(extra="allow")

    remoteJid: str
    fromMe: bool
    id: str
    participant: str | None = None


class MessageRecordModel(BaseModel):
    """Evolution's message record (send responses, SEND_MESSAGE / MESSAGES_UPSERT data)."""

    model_config = ConfigDict(extra="allow")

    key: MessageKey
    pushName: str | None
    status: str = Field(description="PENDING | SERVER_ACK | DELIVERY_ACK | READ | PLAYED | ERROR")
    message: dict[str, Any]
    contextInfo: dict[str, Any] | None = None
    messageType: str
    messageTimestamp: int
    instanceId: str
    source: str


class ReadMessagesResponse(BaseModel):
    message: str = "Read messages"
    read: str = "success"


class StatusEntry(BaseModel):
    status: str


class FoundMessage(BaseModel):
    id: str
    key: MessageKey
    pushName: str | None
    messageType: str
    message: dict[str, Any]
    messageTimestamp: int
    instanceId: str
    source: str
    contextInfo: dict[str, Any] | None
    MessageUpdate: list[StatusEntry]


class MessagesPage(BaseModel):
    total: int
    pages: int
    currentPage: int
    records: list[FoundMessage]


class FindMessagesResponse(BaseModel):
    messages: MessagesPage
