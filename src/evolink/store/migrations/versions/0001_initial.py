"""initial schema: instances, settings, webhooks, sessions, pairing attempts, outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from evolink.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _stamps(*, updated: bool = True) -> list[sa.Column[object]]:
    cols: list[sa.Column[object]] = [sa.Column("created_at", UTCDateTime(), nullable=False)]
    if updated:
        cols.append(sa.Column("updated_at", UTCDateTime(), nullable=False))
    return cols


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("connection_status", sa.String(16), nullable=False),
        sa.Column("owner_jid", sa.String(100)),
        sa.Column("profile_name", sa.String(100)),
        sa.Column("profile_pic_url", sa.String(500)),
        sa.Column("integration", sa.String(100), nullable=False),
        sa.Column("number", sa.String(100)),
        sa.Column("business_id", sa.String(100)),
        sa.Column("token", sa.String(255), nullable=False),
        sa.Column("client_name", sa.String(100)),
        sa.Column("disconnection_reason_code", sa.Integer()),
        sa.Column("disconnection_object", sa.Text()),
        sa.Column("disconnection_at", UTCDateTime()),
        *_stamps(),
    )
    op.create_index("ix_instances_token", "instances", ["token"])
    op.create_index("ix_instances_client_name", "instances", ["client_name"])
    op.create_table(
        "settings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("instance_id", sa.String(36), sa.ForeignKey("instances.id", ondelete="CASCADE"), unique=True,
                  nullable=False),
        sa.Column("reject_call", sa.Boolean(), nullable=False),
        sa.Column("msg_call", sa.String(500), nullable=False),
        sa.Column("groups_ignore", sa.Boolean(), nullable=False),
        sa.Column("always_online", sa.Boolean(), nullable=False),
        sa.Column("read_messages", sa.Boolean(), nullable=False),
        sa.Column("read_status", sa.Boolean(), nullable=False),
        sa.Column("sync_full_history", sa.Boolean(), nullable=False),
        sa.Column("wavoip_token", sa.String(500), nullable=False),
        *_stamps(),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("instance_id", sa.String(36), sa.ForeignKey("instances.id", ondelete="CASCADE"), unique=True,
                  nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("headers", sa.JSON()),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("events", sa.JSON()),
        sa.Column("webhook_by_events", sa.Boolean(), nullable=False),
        sa.Column("webhook_base64", sa.Boolean(), nullable=False),
        *_stamps(),
    )
    op.create_table(
        "sessions",
        sa.Column("instance_id", sa.String(36), sa.ForeignKey("instances.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("creds", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "pairing_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("instance_id", sa.String(36), sa.ForeignKey("instances.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("code_suffix", sa.String(2)),
        sa.Column("issued_at_system", UTCDateTime(), nullable=False),
        sa.Column("issued_at_corrected", UTCDateTime(), nullable=False),
        sa.Column("issued_at_server", UTCDateTime()),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("duration_seconds", sa.Float()),
    )
    op.create_index("ix_pairing_attempts_instance_id", "pairing_attempts", ["instance_id"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("lane", sa.String(800), nullable=False),
        sa.Column("instance_name", sa.String(255), nullable=False),
        sa.Column("event", sa.String(100), nullable=False),
        sa.Column("url", sa.String(1000), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON()),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
    )
    op.create_index("ix_outbox_lane", "outbox", ["lane"])
    op.create_index("ix_outbox_status", "outbox", ["status"])


def downgrade() -> None:
    for table in ("outbox", "pairing_attempts", "sessions", "webhooks", "settings", "instances"):
        op.drop_table(table)
