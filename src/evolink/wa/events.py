"""Events the engine emits to the gateway (the contract between evolink.wa and evolink.gateway).

All timestamps are aware UTC datetimes from the engine's injected clock (the corrected clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class ConnectionState(StrEnum):
    """Connection states with Evolution's strings (`connectionState`, `connection.update`, metrics).

    The engine is only ever OPEN, CONNECTING or CLOSE; REFUSED appears only in the gateway's
    `connection.update` when QRCODE_LIMIT is reached (Evolution's `state: "refused"`).
    """

    OPEN = "open"
    CONNECTING = "connecting"
    CLOSE = "close"
    REFUSED = "refused"


class CloseReason(StrEnum):
    LOGGED_OUT = "logged_out"  # 401 / device_removed: creds wiped, no reconnect
    FORBIDDEN = "forbidden"  # 403: no reconnect
    REPLACED = "replaced"  # 440 / conflict replaced: no reconnect
    RESTART_REQUIRED = "restart_required"  # 515: immediate reconnect
    QR_REFS_ENDED = "qr_refs_ended"  # registration socket ran out of refs: no reconnect
    TIMED_OUT = "timed_out"  # 408: keepalive deadline / connection lost
    CONNECTION_CLOSED = "connection_closed"  # 428: remote closed
    BAD_SESSION = "bad_session"  # 500
    UNAVAILABLE = "unavailable"  # 503
    CERTIFICATE = "certificate"  # server cert chain refused
    PROTOCOL = "protocol"  # garbage / undecodable input from the server
    CONNECT_FAILED = "connect_failed"  # TCP/TLS/WebSocket could not be opened
    CLOCK = "clock"  # linking refused by the clock guard
    CLOSED_BY_USER = "closed_by_user"  # close() was called
    CLIENT_OUTDATED = "client_outdated"  # failure 405: the server refuses this client version


@dataclass(frozen=True, slots=True)
class QrEvent:
    qr: str  # full QR string (https://wa.me/settings/linked_devices#ref,noise,identity,adv,platform)
    index: int  # 0-based ref index on this connection
    total: int  # refs the server gave
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class PairingCodeEvent:
    code: str  # 8 chars, as confirmed by the server (never logged beyond its last 2 chars)
    phone: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ConnectingEvent:
    attempt: int


@dataclass(frozen=True, slots=True)
class OpenEvent:
    jid: str
    lid: str | None
    push_name: str | None
    is_new_login: bool


@dataclass(frozen=True, slots=True)
class CloseEvent:
    reason: CloseReason
    code: int | None
    will_reconnect: bool
    message: str


@dataclass(frozen=True, slots=True)
class LoggedOutEvent:
    message: str


@dataclass(frozen=True, slots=True)
class CredsUpdatedEvent:
    creds: dict[str, Any]  # JSON-serialisable creds (see evolink.wa.creds)


@dataclass(frozen=True, slots=True)
class ServerTimeEvent:
    """Server ``t`` seen in success/pair-success; offset = server - host seconds."""

    server_unix: int
    offset_seconds: float
    source: str  # "success" | "pair-success"


@dataclass(frozen=True, slots=True)
class MessageEvent:
    """A received message, emitted after it was handed to the store port (so it is durable).

    ``sender`` is the device that wrote it as the server named it (PN or LID); ``sender_pn`` /
    ``sender_lid`` are filled when known. ``message`` is the parsed ``Message`` protobuf
    (``evolink.wire.proto.e2e_pb2.Message``; unknown fields kept), after the deviceSentMessage unwrap.
    """

    id: str
    chat: str
    sender: str
    sender_pn: str | None
    sender_lid: str | None
    from_me: bool
    timestamp: int
    push_name: str | None
    message: Any
    offline: bool = False

    @property
    def text(self) -> str | None:
        m = self.message
        if m.HasField("conversation"):
            return str(m.conversation)
        if m.HasField("extendedTextMessage"):
            return str(m.extendedTextMessage.text)
        return None


class ReceiptType(StrEnum):
    DELIVERED = "delivered"
    READ = "read"
    READ_SELF = "read_self"
    PLAYED = "played"
    PLAYED_SELF = "played_self"
    INACTIVE = "inactive"
    SENDER = "sender"
    RETRY = "retry"
    SERVER_ERROR = "server_error"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class ReceiptEvent:
    """A receipt for messages we sent: ``ids`` (the ``id`` attribute plus any ``<list><item>``)."""

    type: ReceiptType
    raw_type: str | None
    chat: str
    sender: str  # the device (or user) that receipted
    ids: tuple[str, ...]
    timestamp: int | None


@dataclass(frozen=True, slots=True)
class UndecryptableEvent:
    """A message we could not decrypt; a retry receipt was sent (``retry_count``) unless the limit
    was reached. The session was left as it was."""

    id: str
    chat: str
    sender: str
    reason: str
    retry_count: int


@dataclass(frozen=True, slots=True)
class CallEvent:
    """A ``<call>`` from the server, as Baileys reports it (``offer``, ``accept``, ``reject``,
    ``terminate``/``timeout``…). ``caller`` is the calling user (``from`` of the call child, else its
    ``call-creator``); ``chat`` is the stanza's ``from``."""

    call_id: str
    chat: str
    caller: str
    status: str
    timestamp: int
    offline: bool = False
    is_video: bool = False
    is_group: bool = False
    group_jid: str | None = None


@dataclass(frozen=True, slots=True)
class PushNameEvent:
    """The engine learned (or re-learned) the account's push name; it is already saved with the creds."""

    name: str
    source: str  # "own-message" | "pair-success"


@dataclass(frozen=True, slots=True)
class GroupsUpsertEvent:
    """We were added to new groups (``w:gp2`` ``<create>``), Baileys' ``groups.upsert``.

    ``groups`` are ``evolink.wa.group_meta.GroupMetadata``; ``author`` is who created/added (JID or None).
    """

    groups: tuple[Any, ...]
    author: str | None = None


EngineEvent = (
    QrEvent
    | PairingCodeEvent
    | ConnectingEvent
    | OpenEvent
    | CloseEvent
    | LoggedOutEvent
    | CredsUpdatedEvent
    | ServerTimeEvent
    | MessageEvent
    | ReceiptEvent
    | UndecryptableEvent
    | CallEvent
    | PushNameEvent
    | GroupsUpsertEvent
)
