"""Tables for chats, contacts and groups (issue 11), one row per (instance, JID).

Column names follow Evolution's Prisma ``Chat``/``Contact`` models where they surface in responses;
``chats.last_message`` keeps the chat's newest message record (sealed JSON: it carries message text)
so ``findChats`` answers from one table. ``groups`` caches the latest metadata seen for a group
(``metadata`` = the ``GroupMetadata`` as JSON). Every table cascades with its instance.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from evolink.store.models import Base, UTCDateTime, new_id, utcnow

_FK = "instances.id"


class ChatRow(Base):
    __tablename__ = "chats"
    __table_args__ = (UniqueConstraint("instance_id", "remote_jid", name="uq_chats_instance_jid"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    instance_id: Mapped[str] = mapped_column(ForeignKey(_FK, ondelete="CASCADE"), nullable=False)
    remote_jid: Mapped[str] = mapped_column(String(128), nullable=False)
    name: Mapped[str | None] = mapped_column(String(100))
    unread_messages: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_message_at: Mapped[int | None] = mapped_column(Integer)  # epoch seconds of the newest message
    last_message: Mapped[str | None] = mapped_column(Text)  # sealed JSON message record
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class ContactRow(Base):
    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("instance_id", "remote_jid", name="uq_contacts_instance_jid"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    instance_id: Mapped[str] = mapped_column(ForeignKey(_FK, ondelete="CASCADE"), nullable=False)
    remote_jid: Mapped[str] = mapped_column(String(128), nullable=False)
    push_name: Mapped[str | None] = mapped_column(String(100))
    profile_pic_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class GroupRow(Base):
    __tablename__ = "groups"
    instance_id: Mapped[str] = mapped_column(ForeignKey(_FK, ondelete="CASCADE"), primary_key=True)
    group_jid: Mapped[str] = mapped_column(String(128), primary_key=True)
    subject: Mapped[str] = mapped_column(String(100), nullable=False)
    metadata_json: Mapped[str] = mapped_column("metadata", Text, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
