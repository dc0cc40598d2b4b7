"""Evolution's Message and MessageUpdate rows (findMessages, send records, receipts)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from evolink.store.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("instance_id", sa.String(36), sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("remote_jid", sa.String(128), nullable=False),
        sa.Column("remote_jid_alt", sa.String(128)),
        sa.Column("from_me", sa.Boolean(), nullable=False),
        sa.Column("participant", sa.String(128)),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("push_name", sa.String(100)),
        sa.Column("message_type", sa.String(100), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("context_info", sa.Text()),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("message_timestamp", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("send_state", sa.String(16)),
        sa.Column("send_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("announced", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("instance_id", "key_id", name="uq_messages_instance_key_id"),
    )
    op.create_index("ix_messages_instance_ts", "messages", ["instance_id", "message_timestamp"])
    op.create_index("ix_messages_instance_remote", "messages", ["instance_id", "remote_jid"])
    op.create_table(
        "message_updates",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("message_id", sa.String(32), sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("instance_id", sa.String(36), sa.ForeignKey("instances.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key_id", sa.String(128), nullable=False),
        sa.Column("remote_jid", sa.String(128), nullable=False),
        sa.Column("from_me", sa.Boolean(), nullable=False),
        sa.Column("participant", sa.String(128)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_message_updates_message_id", "message_updates", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_message_updates_message_id", table_name="message_updates")
    op.drop_table("message_updates")
    op.drop_index("ix_messages_instance_remote", table_name="messages")
    op.drop_index("ix_messages_instance_ts", table_name="messages")
    op.drop_table("messages")
