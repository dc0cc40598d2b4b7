"""Evolution's ``Message`` and ``MessageUpdate`` rows (issue 11): what ``findMessages`` answers.

Column names follow Evolution's Prisma model (``key``, ``pushName``, ``messageType``, ``message``,
``contextInfo``, ``source``, ``messageTimestamp``, ``status``) in snake case; the key's parts are
also columns so ``where`` filters are indexed SQL. ``message`` and ``context_info`` (the content) are
sealed with the instance's ``CredsCipher`` like every other message body at rest.

Own API sends carry a ``send_state``: ``pending`` (recorded, maybe not yet on the wire), ``sent``
(server ack), ``failed``; ``send_attempts`` bounds the resend after a crash to one.
``announced`` is False until ``MESSAGES_UPSERT`` for an incoming row sits in the webhook outbox, so a
crash in between is healed by announcing it on the next start (at-least-once, same id).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from evolink.store.models import Base, UTCDateTime, utcnow


class MessageRow(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("instance_id", "key_id", name="uq_messages_instance_key_id"),
        Index("ix_messages_instance_ts", "instance_id", "message_timestamp"),
        Index("ix_messages_instance_remote", "instance_id", "remote_jid"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # cuid-like, Evolution's `id`
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), nullable=False)
    key_id: Mapped[str] = mapped_column(String(128), nullable=False)
    remote_jid: Mapped[str] = mapped_column(String(128), nullable=False)
    remote_jid_alt: Mapped[str | None] = mapped_column(String(128))
    from_me: Mapped[bool] = mapped_column(Boolean, nullable=False)
    participant: Mapped[str | None] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(Text, nullable=False)  # JSON, Baileys' key as Evolution shows it
    push_name: Mapped[str | None] = mapped_column(String(100))
    message_type: Mapped[str] = mapped_column(String(100), nullable=False)
    message: Mapped[str] = mapped_column(Text, nullable=False)  # sealed JSON
    context_info: Mapped[str | None] = mapped_column(Text)  # sealed JSON or NULL
    source: Mapped[str] = mapped_column(String(16), nullable=False)
    message_timestamp: Mapped[int] = mapped_column(Integer, nullable=False)
    status: Mapped[str] = mapped_column(String(30), nullable=False)
    send_state: Mapped[str | None] = mapped_column(String(16))  # own API sends: pending | sent | failed
    send_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    announced: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)


class MessageUpdateRow(Base):
    __tablename__ = "message_updates"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), nullable=False, index=True)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), nullable=False)
    key_id: Mapped[str] = mapped_column(String(128), nullable=False)
    remote_jid: Mapped[str] = mapped_column(String(128), nullable=False)
    from_me: Mapped[bool] = mapped_column(Boolean, nullable=False)
    participant: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(30), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
