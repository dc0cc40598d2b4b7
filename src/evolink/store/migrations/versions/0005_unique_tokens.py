"""instances.token is unique: a token opens its instance, so it may never name two

Older versions accepted `create` with another instance's token (issue 10 item 8); such a token then
opened both. Before the unique index is built, every instance but the oldest of a shared token gets a
fresh random token (logged with the instance name, never the token): the oldest keeps working
unchanged, the others need their new token from `fetchInstances` (global key).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import logging
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

log = logging.getLogger("evolink.store.migrations")


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, name, token FROM instances ORDER BY created_at, id")).fetchall()
    seen: set[str] = set()
    for instance_id, name, token in rows:
        if token in seen:
            fresh = str(uuid.uuid4()).upper()
            bind.execute(sa.text("UPDATE instances SET token = :t WHERE id = :i"), {"t": fresh, "i": instance_id})
            log.warning("instance shared its token with an older one: it got a new token",
                        extra={"instance": name})
        seen.add(token)
    with op.batch_alter_table("instances") as batch:
        batch.drop_index("ix_instances_token")
        batch.create_index("ix_instances_token", ["token"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.drop_index("ix_instances_token")
        batch.create_index("ix_instances_token", ["token"])
