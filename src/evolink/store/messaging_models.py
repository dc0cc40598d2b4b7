"""Tables for the engine's messaging state (issue 9): Signal records, device lists, messages.

Signal records and message bodies are stored base64 and sealed with ``CredsCipher`` (the row's
natural key is the associated data, so a blob moved to another row does not open). Every table is
keyed by instance and cascades with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evolink.store.models import Base, UTCDateTime, utcnow

_FK = "instances.id"


class SignalSession(Base):
    __tablename__ = "signal_sessions"
    instance_id: Mapped[str] = mapped_column(ForeignKey(_FK, ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(String(128), primary_key=True)
    record: Mapped[str] = mapped_column(Text, nullable=False)


class SignalIdentity(Base):
    __tablename__ = "signal_identities"
    instance_id: Mapped[str] = mapped_column(ForeignKey(_FK, ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(Text, nullable=False)


class SignalSenderKey(Base):
    __tablename__ = "signal_sender_keys"
    instance_id: Mapped[str] = mapped_column(ForeignKey(_FK, ondelete="CASCADE"), primary_key=True)
    group_jid: Mapped[str] = mapped_column(String(128), primary_key=True)
    address: Mapped[str] = mapped_column(String(128), primary_key=True)
    record: Mapped[str] = mapped_column(Text, nullable=False)


class ConsumedPreKey(Base):
    __tablename__ = "signal_consumed_prekeys"
    instance_id: Mapped[str] = mapped_column(ForeignKey(_FK, ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)


class DeviceList(Base):
    __tablename__ = "device_lists"
    instance_id: Mapped[str] = mapped_column(ForeignKey(_FK, ondelete="CASCADE"), primary_key=True)
    user_jid: Mapped[str] = mapped_column(String(128), primary_key=True)
    devices: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list of device JIDs
    fetched_at: Mapped[float] = mapped_column(Float, nullable=False)


class InboundMessage(Base):
    __tablename__ = "inbound_messages"
    instance_id: Mapped[str] = mapped_column(ForeignKey(_FK, ondelete="CASCADE"), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    chat: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    sender: Mapped[str] = mapped_column(String(128), nullable=False)
    sender_alt: Mapped[str | None] = mapped_column(String(128))
    from_me: Mapped[bool] = mapped_column(Boolean, nullable=False)
    timestamp: Mapped[int] = mapped_column(Integer, nullable=False)
    push_name: Mapped[str | None] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text, nullable=False)  # sealed base64 Message protobuf
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class OutboundMessage(Base):
    __tablename__ = "outbound_messages"
    instance_id: Mapped[str] = mapped_column(ForeignKey(_FK, ondelete="CASCADE"), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    chat: Mapped[str] = mapped_column(String(128), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)  # sealed base64 Message protobuf
    timestamp: Mapped[int] = mapped_column(Integer, nullable=False)
