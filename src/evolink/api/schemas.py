"""Request bodies (camelCase, as Evolution's clients send them) and row serialisers (Prisma names)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evolink.api.settings import EVENT_KEYS, EXTENSION_EVENT_KEYS
from evolink.clock.base import iso_utc
from evolink.gateway.inputs import NAME_CHARSET_DOC, instance_name, phone_number
from evolink.gateway.webhook_rules import check_headers, check_url
from evolink.store.models import Instance, Setting, Webhook


def _check_events(events: list[str] | None) -> list[str] | None:
    if events is None:
        return None
    allowed = (*EVENT_KEYS, *EXTENSION_EVENT_KEYS)
    bad = [e for e in events if e not in allowed]
    if bad:
        raise ValueError(f"unknown event(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
    return events


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    enabled: bool = True
    url: str = Field(max_length=500, description="http:// or https:// URL (required when enabled)")
    headers: dict[str, Any] | None = None
    byEvents: bool = Field(False, alias="byEvents")
    base64: bool = False
    events: list[str] | None = None

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str] | None) -> list[str] | None:
        return _check_events(v)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_headers(v)  # evolink.gateway.webhook_rules: only headers httpx can send

    @model_validator(mode="after")
    def _url_when_enabled(self) -> WebhookBody:
        # Evolution stores any string and silently never sends; an enabled webhook that can never
        # fire is refused here instead (a disabled one may keep any placeholder).
        if self.enabled:
            check_url(self.url)
        return self

    def columns(self) -> dict[str, Any]:
        return {"url": self.url, "enabled": self.enabled, "headers": self.headers, "events": self.events or [],
                "webhook_by_events": self.byEvents, "webhook_base64": self.base64}


class CreateWebhookBody(WebhookBody):
    enabled: bool = True


class InstanceCreateBody(BaseModel):
    """`POST /instance/create`. Unknown keys (Chatwoot, proxy, other transports) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    instanceName: str = Field(min_length=1, max_length=1024,
                              description=f"Stored NFKC-normalised; characters: {NAME_CHARSET_DOC}")
    integration: str | None = Field(None, description="WHATSAPP-BAILEYS (the only integration evolink links)")
    token: str | None = Field(None, max_length=255)
    number: str | None = Field(None, max_length=100, description="ASCII digits with the country code")
    qrcode: bool | None = None
    businessId: str | None = None
    rejectCall: bool | None = None
    msgCall: str | None = None
    groupsIgnore: bool | None = None
    alwaysOnline: bool | None = None
    readMessages: bool | None = None
    readStatus: bool | None = None
    syncFullHistory: bool | None = None
    wavoipToken: str | None = None
    webhook: CreateWebhookBody | None = None

    @field_validator("instanceName")
    @classmethod
    def _name(cls, v: str) -> str:
        return instance_name(v)  # evolink.gateway.inputs: NFKC, documented character set

    @field_validator("number")
    @classmethod
    def _number(cls, v: str | None) -> str | None:
        if v is not None and v.strip():
            phone_number(v)  # refused here (400), kept as typed (Evolution stores it as given)
        return v

    def settings_columns(self) -> dict[str, Any]:
        return {"reject_call": self.rejectCall, "msg_call": self.msgCall, "groups_ignore": self.groupsIgnore,
                "always_online": self.alwaysOnline, "read_messages": self.readMessages,
                "read_status": self.readStatus, "sync_full_history": self.syncFullHistory,
                "wavoip_token": self.wavoipToken}


class WebhookSetBody(BaseModel):
    webhook: WebhookBody


class SettingsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rejectCall: bool
    groupsIgnore: bool
    alwaysOnline: bool
    readMessages: bool
    readStatus: bool
    syncFullHistory: bool
    msgCall: str | None = None
    wavoipToken: str | None = None

    def columns(self) -> dict[str, Any]:
        return {"reject_call": self.rejectCall, "groups_ignore": self.groupsIgnore,
                "always_online": self.alwaysOnline, "read_messages": self.readMessages,
                "read_status": self.readStatus, "sync_full_history": self.syncFullHistory,
                "msg_call": self.msgCall, "wavoip_token": self.wavoipToken}


class PresenceBody(BaseModel):
    presence: Literal["unavailable", "available", "composing", "recording", "paused"]


def setting_row(row: Setting | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"id": row.id, "rejectCall": row.reject_call, "msgCall": row.msg_call, "groupsIgnore": row.groups_ignore,
            "alwaysOnline": row.always_online, "readMessages": row.read_messages, "readStatus": row.read_status,
            "syncFullHistory": row.sync_full_history, "wavoipToken": row.wavoip_token,
            "createdAt": iso_utc(row.created_at), "updatedAt": iso_utc(row.updated_at), "instanceId": row.instance_id}


def webhook_row(row: Webhook | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"id": row.id, "url": row.url, "headers": row.headers, "enabled": row.enabled, "events": row.events,
            "webhookByEvents": row.webhook_by_events, "webhookBase64": row.webhook_base64,
            "createdAt": iso_utc(row.created_at), "updatedAt": iso_utc(row.updated_at), "instanceId": row.instance_id}


def instance_row(row: Instance, setting: Setting | None, live_state: str | None) -> dict[str, Any]:
    """A `fetchInstances` element with Prisma's field names (status = live state when known)."""
    return {
        "id": row.id, "name": row.name, "connectionStatus": live_state or row.connection_status,
        "ownerJid": row.owner_jid, "profileName": row.profile_name, "profilePicUrl": row.profile_pic_url,
        "integration": row.integration, "number": row.number, "businessId": row.business_id, "token": row.token,
        "clientName": row.client_name, "disconnectionReasonCode": row.disconnection_reason_code,
        "disconnectionObject": row.disconnection_object, "disconnectionAt": iso_utc(row.disconnection_at),
        "createdAt": iso_utc(row.created_at), "updatedAt": iso_utc(row.updated_at),
        "Chatwoot": None, "Proxy": None, "Rabbitmq": None, "Nats": None, "Sqs": None, "Websocket": None,
        "Setting": setting_row(setting), "_count": {"Message": 0, "Contact": 0, "Chat": 0},
    }
