"""Response models: the success bodies of every route, with Evolution 2.3.7's field names and shapes.

They serve `/openapi.json` and check every answer on its way out: a handler that returns a field a model
does not declare (`extra="forbid"`) fails loudly in the tests instead of publishing a schema that lies.
Routes set `response_model_exclude_unset=True`, so a key the handler leaves out (Evolution omits some, e.g.
`manager` when disabled) stays absent rather than becoming `null`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

ConnectionState = Literal["open", "connecting", "close"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """An object whose listed keys are typed and which may carry more (an evolink view that grows)."""

    model_config = ConfigDict(extra="allow")


# --- server -------------------------------------------------------------------------------------------
class RootInfo(Strict):
    status: int
    message: str
    version: str = Field(description="the Evolution API version evolink is compatible with")
    clientName: str
    manager: str | None = Field(None, description="the web manager URL (absent when SERVER_DISABLE_MANAGER)")
    documentation: str
    whatsappWebVersion: str = Field(description="the WA Web version the engine announces "
                                                "(CONFIG_SESSION_PHONE_VERSION)")
    evolink: str = Field(description="evolink's own version")


class VerifyCreds(Strict):
    status: int
    message: str
    facebookAppId: str | None = None
    facebookConfigId: str | None = None
    facebookUserToken: str | None = None


# --- instance -----------------------------------------------------------------------------------------
class StatusMessage(Strict):
    message: str


class StatusResponse(Strict):
    """`{status: "SUCCESS", error: false, response: {message}}` (logout, delete)."""

    status: str
    error: bool
    response: StatusMessage


class InstanceState(Strict):
    instanceName: str
    state: ConnectionState


class LastDisconnect(Strict):
    reason: str
    statusReason: int
    message: str
    willReconnect: bool
    proxy: str | None


class ConnectionStateBody(Strict):
    instance: InstanceState
    lastDisconnect: LastDisconnect | None = Field(None, description="evolink: why it is not open (when known)")


class QrBody(Strict):
    """`connect`: the QR object, or the pairing code (code mode); `count` is the QR number."""

    pairingCode: str | None = None
    code: str | None = None
    base64: str | None = None
    count: int
    pairingCodeIssuedAt: str | None = None
    pairingCodeExpiresAt: str | None = None
    pairingCodeExpiresIn: int | None = None


class ErrorFlag(Strict):
    """`connect`/`restart` that could not link: HTTP 200 with `error: true`, as Evolution answers."""

    error: bool
    message: str
    count: int | None = None
    clock: dict[str, Any] | None = Field(None, description="evolink: the clock guard's verdict and fix, when "
                                                           "it refused linking")


ConnectBody = ConnectionStateBody | QrBody | ErrorFlag


class PresenceAnswer(Strict):
    presence: str


class CreatedInstance(Strict):
    instanceName: str
    instanceId: str
    integration: str
    webhookWaBusiness: str | None
    accessTokenWaBusiness: str
    status: ConnectionState


class CreatedWebhook(Strict):
    webhookUrl: str | None = None
    webhookHeaders: dict[str, Any] | None = None
    webhookByEvents: bool | None = None
    webhookBase64: bool | None = None


class TransportFlag(Strict):
    enabled: bool | None = None


class CreatedSettings(Strict):
    rejectCall: bool
    msgCall: str | None
    groupsIgnore: bool
    alwaysOnline: bool
    readMessages: bool
    readStatus: bool
    syncFullHistory: bool
    wavoipToken: str | None


class CreateAnswer(Strict):
    instance: CreatedInstance
    hash: str = Field(description="the instance token")
    webhook: CreatedWebhook
    websocket: TransportFlag
    rabbitmq: TransportFlag
    nats: TransportFlag
    sqs: TransportFlag
    settings: CreatedSettings
    qrcode: QrBody | ErrorFlag | None = None


class SettingRow(Strict):
    id: str
    rejectCall: bool
    msgCall: str | None
    groupsIgnore: bool
    alwaysOnline: bool
    readMessages: bool
    readStatus: bool
    syncFullHistory: bool
    wavoipToken: str | None
    createdAt: str | None
    updatedAt: str | None
    instanceId: str


class WebhookRow(Strict):
    id: str
    url: str
    headers: dict[str, Any] | None
    enabled: bool
    events: list[str] | None
    webhookByEvents: bool
    webhookBase64: bool
    createdAt: str | None
    updatedAt: str | None
    instanceId: str


class TransportRow(Strict):
    """A `/websocket|rabbitmq|nats/find` row, also in `fetchInstances` (docs/events.md)."""

    id: str
    enabled: bool
    events: list[str]
    createdAt: str | None
    updatedAt: str | None
    instanceId: str


class ProxyRow(Strict):
    id: str
    enabled: bool
    host: str
    port: str
    protocol: str
    username: str
    password: str = Field(description='"********" when set (never shown in clear)')
    createdAt: str | None
    updatedAt: str | None
    instanceId: str


class ProxyValues(Strict):
    enabled: bool
    host: str
    port: str
    protocol: str
    username: str
    password: str


class ProxyOfInstance(Strict):
    instanceName: str
    proxy: ProxyValues


class ProxySetAnswer(Strict):
    proxy: ProxyOfInstance


class MessageCounts(Strict):
    Message: int
    Contact: int
    Chat: int


class InstanceRow(Strict):
    """A `fetchInstances` element (Prisma's field names)."""

    id: str
    name: str
    connectionStatus: ConnectionState
    ownerJid: str | None
    profileName: str | None
    profilePicUrl: str | None
    integration: str
    number: str | None
    businessId: str | None
    token: str
    clientName: str | None
    disconnectionReasonCode: int | None
    disconnectionObject: str | None
    disconnectionAt: str | None
    createdAt: str | None
    updatedAt: str | None
    Chatwoot: None
    Proxy: ProxyRow | None
    Rabbitmq: TransportRow | None
    Nats: TransportRow | None
    Sqs: None
    Websocket: TransportRow | None
    Setting: SettingRow | None
    count: MessageCounts = Field(alias="_count")


# --- integrations evolink does not run ----------------------------------------------------------------
class BotSettings(Strict):
    expire: int
    keywordFinish: str
    delayMessage: int
    unknownMessage: str
    listeningFromMe: bool
    stopBotFromMe: bool
    keepOpen: bool
    debounceTime: int
    ignoreJids: list[str]
    splitMessages: bool
    timePerChar: int
    fallbackId: str
    fallback: None


class ChatwootFind(Strict):
    enabled: bool
    url: str
    accountId: str
    token: str
    signMsg: bool
    nameInbox: str
    webhook_url: str


class Nothing(Strict):
    """Never instantiated: an always-empty list's item type."""


class Null(RootModel[None]):
    """JSON `null`: what Evolution answers for a thing that is not configured."""


# --- health (application/health+json) ----------------------------------------------------------------
class HealthCheck(Open):
    status: Literal["pass", "warn", "fail"]
    componentType: str
    time: str


class HealthDocument(Open):
    status: Literal["pass", "warn", "fail"]
    version: str
    releaseId: str
    serviceId: str | None = None
    checks: dict[str, list[HealthCheck]]


# --- web manager (evolink extension) --------------------------------------------------------------------
class LiveSession(Strict):
    token: str
    expiresIn: float
    scope: Literal["global", "instance"]
    instance: str | None


class ManagerLastDisconnect(Strict):
    reason: str | None
    code: int | None
    message: str | None
    at: str | None


class ManagerPairing(Strict):
    pairingCode: str | None
    code: str | None
    base64: str | None
    pairingCodeIssuedAt: str | None
    pairingCodeExpiresAt: str | None


class ManagerInstance(Strict):
    name: str
    id: str
    state: ConnectionState
    ownerJid: str | None
    profileName: str | None
    number: str | None
    mode: Literal["qr", "code"]
    qrCount: int
    qrLimit: int
    lastDisconnect: ManagerLastDisconnect | None
    browser: str
    pairing: ManagerPairing | None
    lastSuccessSeconds: float | None
    serverNow: str


class PairingAttemptView(Strict):
    id: int
    method: Literal["qr", "code"]
    codeSuffix: str | None
    issuedAtSystem: str | None
    issuedAtCorrected: str | None
    issuedAtServer: str | None
    expiresAt: str | None
    outcome: str
    finishedAt: str | None
    durationSeconds: float | None


class ClockPanel(Open):
    guard: bool
    policy: str | None
    allowed: bool
    message: str | None
    status: dict[str, Any] | None
    timezone: dict[str, Any] | None
