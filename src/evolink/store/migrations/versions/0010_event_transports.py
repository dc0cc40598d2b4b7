"""event_transports: per-instance WebSocket / RabbitMQ / NATS settings (issue 14)

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from evolink.store.models import UTCDateTime

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_transports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("instance_id", sa.String(36), sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
        sa.Column("transport", sa.String(16), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("instance_id", "transport", name="uq_event_transports_instance"),
    )
    op.create_index("ix_event_transports_instance_id", "event_transports", ["instance_id"])


def downgrade() -> None:
    op.drop_index("ix_event_transports_instance_id", table_name="event_transports")
    op.drop_table("event_transports")
