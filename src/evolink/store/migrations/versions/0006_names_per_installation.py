"""instance names are unique per installation (client_name, name), not across the whole database

Several installations may share one PostgreSQL database (DATABASE_CONNECTION_CLIENT_NAME). With a
database-wide unique name, one installation's `create` learned another's instance names from its 403
"already in use". Existing rows already satisfy the new constraint (it is weaker).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# SQLite keeps 0001's UNIQUE(name) unnamed: the convention names it so batch mode can drop it.
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
NEW = "uq_instances_client_name_name"


def _name_only_uniques() -> list[str]:
    uniques = sa.inspect(op.get_bind()).get_unique_constraints("instances")
    return [u.get("name") or "uq_instances_name" for u in uniques if list(u["column_names"]) == ["name"]]


def upgrade() -> None:
    old = _name_only_uniques()
    with op.batch_alter_table("instances", naming_convention=NAMING) as batch:
        for name in old:
            batch.drop_constraint(name, type_="unique")
        batch.create_unique_constraint(NEW, ["client_name", "name"])


def downgrade() -> None:
    with op.batch_alter_table("instances", naming_convention=NAMING) as batch:
        batch.drop_constraint(NEW, type_="unique")
        batch.create_unique_constraint("uq_instances_name", ["name"])
