"""SQLAlchemy 2 models: instances and their settings/webhook/creds, pairing attempts, event outbox.

Column names follow Evolution's Prisma model where one exists (so `fetchInstances` rows map 1:1);
table names are lower-case so they need no quoting on PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in, aware UTC out, on every backend (SQLite drops the tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    pass


class Instance(Base):
    """Names are unique per installation (``client_name``), tokens across the database (revision 0006)."""

    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("client_name", "name", name="uq_instances_client_name_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    connection_status: Mapped[str] = mapped_column(String(16), nullable=False, default="close")
    owner_jid: Mapped[str | None] = mapped_column(String(100))
    profile_name: Mapped[str | None] = mapped_column(String(100))
    profile_pic_url: Mapped[str | None] = mapped_column(String(500))
    integration: Mapped[str] = mapped_column(String(100), nullable=False, default="WHATSAPP-BAILEYS")
    number: Mapped[str | None] = mapped_column(String(100))
    business_id: Mapped[str | None] = mapped_column(String(100))
    token: Mapped[str] = mapped_column(String(255), nullable=False, index=True, unique=True)
    client_name: Mapped[str | None] = mapped_column(String(100), index=True)
    disconnection_reason_code: Mapped[int | None] = mapped_column(Integer)
    disconnection_object: Mapped[str | None] = mapped_column(Text)
    disconnection_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)


class Setting(Base):
    __tablename__ = "settings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), unique=True)
    reject_call: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    msg_call: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    groups_ignore: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    always_online: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    read_messages: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    read_status: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    sync_full_history: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    wavoip_token: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)


class Webhook(Base):
    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), unique=True)
    url: Mapped[str] = mapped_column(String(500), nullable=False)
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    events: Mapped[list[str] | None] = mapped_column(JSON)
    webhook_by_events: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    webhook_base64: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)


class Proxy(Base):
    """The instance's proxy (Evolution's `Proxy`). `password` is sealed like creds (context
    `<instance id>:proxy`) when EVOLINK_SECRET_KEY is set; `port` is a string, as in Prisma."""

    __tablename__ = "proxies"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    host: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    port: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    protocol: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    username: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    password: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)


class EngineSession(Base):
    """Engine creds of one instance (Evolution's `Session`), sealed when EVOLINK_SECRET_KEY is set."""

    __tablename__ = "sessions"

    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), primary_key=True)
    creds: Mapped[str] = mapped_column(Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)


class PairingAttempt(Base):
    """One QR/code issued to a user. Only the code's last two characters are kept."""

    __tablename__ = "pairing_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String(8), nullable=False)  # "code" | "qr"
    code_suffix: Mapped[str | None] = mapped_column(String(2))
    issued_at_system: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    issued_at_corrected: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    issued_at_server: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # pending | success | expired | failed | refused_clock | superseded
    outcome: Mapped[str] = mapped_column(String(16), nullable=False, default="pending")
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_seconds: Mapped[float | None] = mapped_column(Float)


class OutboxEvent(Base):
    """One event for one destination. Delivered in id order per lane (instance + destination)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lane: Mapped[str] = mapped_column(String(800), nullable=False, index=True)
    # installation that queued it (NULL: queued before revision 0002); only it delivers the row
    client_name: Mapped[str | None] = mapped_column(String(100), index=True)
    instance_name: Mapped[str] = mapped_column(String(255), nullable=False)
    event: Mapped[str] = mapped_column(String(100), nullable=False)
    url: Mapped[str] = mapped_column(String(1000), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), nullable=False, default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
