"""outbox rows carry the installation (DATABASE_CONNECTION_CLIENT_NAME) that queued them

Installations sharing one database deliver only their own events. Rows queued before this revision
have NULL and are delivered by whichever installation sees them first (as before).

Revision ID: 0003
Revises: 0002_proxies
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002_proxies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("client_name", sa.String(100)))
        batch.create_index("ix_outbox_client_name", ["client_name"])


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_client_name")
        batch.drop_column("client_name")
