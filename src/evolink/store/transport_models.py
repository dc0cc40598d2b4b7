"""Per-instance settings of the event transports (issue 14): `websocket`, `rabbitmq`, `nats`.

Evolution keeps one Prisma table per transport with the same columns (`id`, `enabled`, `events`,
`createdAt`, `updatedAt`, `instanceId`); evolink keeps one table keyed by (instance, transport), so a
new transport needs no migration. Rows cascade with their instance.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from evolink.store.models import Base, UTCDateTime, new_id, utcnow


class EventTransportSetting(Base):
    __tablename__ = "event_transports"
    __table_args__ = (UniqueConstraint("instance_id", "transport", name="uq_event_transports_instance"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    instance_id: Mapped[str] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), index=True)
    transport: Mapped[str] = mapped_column(String(16), nullable=False)  # websocket | rabbitmq | nats
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    events: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)
