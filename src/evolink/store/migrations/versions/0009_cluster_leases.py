"""cluster mode: one lease per instance (owner node, fencing token, expiry) and the node registry

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from evolink.store.models import UTCDateTime

revision = "0009"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_leases",
        sa.Column("instance_id", sa.String(36), sa.ForeignKey("instances.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("owner", sa.String(100), nullable=False, index=True),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "cluster_nodes",
        sa.Column("node_id", sa.String(100), primary_key=True),
        sa.Column("url", sa.String(500)),
        sa.Column("client_name", sa.String(100)),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cluster_nodes")
    op.drop_table("instance_leases")
