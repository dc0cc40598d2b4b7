"""messaging state: Signal sessions/identities/sender keys, consumed pre-keys, device lists, messages

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from evolink.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _instance() -> sa.Column[object]:
    return sa.Column("instance_id", sa.String(36), sa.ForeignKey("instances.id", ondelete="CASCADE"),
                     primary_key=True)


def upgrade() -> None:
    op.create_table("signal_sessions", _instance(), sa.Column("address", sa.String(128), primary_key=True),
                    sa.Column("record", sa.Text(), nullable=False))
    op.create_table("signal_identities", _instance(), sa.Column("address", sa.String(128), primary_key=True),
                    sa.Column("key", sa.Text(), nullable=False))
    op.create_table("signal_sender_keys", _instance(), sa.Column("group_jid", sa.String(128), primary_key=True),
                    sa.Column("address", sa.String(128), primary_key=True),
                    sa.Column("record", sa.Text(), nullable=False))
    op.create_table("signal_consumed_prekeys", _instance(),
                    sa.Column("key_id", sa.Integer(), primary_key=True, autoincrement=False))
    op.create_table("device_lists", _instance(), sa.Column("user_jid", sa.String(128), primary_key=True),
                    sa.Column("devices", sa.Text(), nullable=False), sa.Column("fetched_at", sa.Float(), nullable=False))
    op.create_table("inbound_messages", _instance(), sa.Column("message_id", sa.String(128), primary_key=True),
                    sa.Column("chat", sa.String(128), nullable=False), sa.Column("sender", sa.String(128), nullable=False),
                    sa.Column("sender_alt", sa.String(128)), sa.Column("from_me", sa.Boolean(), nullable=False),
                    sa.Column("timestamp", sa.Integer(), nullable=False), sa.Column("push_name", sa.String(255)),
                    sa.Column("message", sa.Text(), nullable=False),
                    sa.Column("received_at", UTCDateTime(), nullable=False))
    op.create_index("ix_inbound_messages_chat", "inbound_messages", ["chat"])
    op.create_table("outbound_messages", _instance(), sa.Column("message_id", sa.String(128), primary_key=True),
                    sa.Column("chat", sa.String(128), nullable=False), sa.Column("message", sa.Text(), nullable=False),
                    sa.Column("timestamp", sa.Integer(), nullable=False))


def downgrade() -> None:
    for table in ("outbound_messages", "inbound_messages", "device_lists", "signal_consumed_prekeys",
                  "signal_sender_keys", "signal_identities", "signal_sessions"):
        op.drop_table(table)
