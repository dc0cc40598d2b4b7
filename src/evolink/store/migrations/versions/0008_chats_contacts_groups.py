"""chats, contacts and groups of each instance (issue 11)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from evolink.store.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _instance(primary_key: bool = False) -> sa.Column[object]:
    return sa.Column("instance_id", sa.String(36), sa.ForeignKey("instances.id", ondelete="CASCADE"),
                     primary_key=primary_key, nullable=False)


def upgrade() -> None:
    op.create_table("chats", sa.Column("id", sa.String(36), primary_key=True), _instance(),
                    sa.Column("remote_jid", sa.String(128), nullable=False), sa.Column("name", sa.String(100)),
                    sa.Column("unread_messages", sa.Integer(), nullable=False),
                    sa.Column("last_message_at", sa.Integer()), sa.Column("last_message", sa.Text()),
                    sa.Column("created_at", UTCDateTime(), nullable=False),
                    sa.Column("updated_at", UTCDateTime(), nullable=False),
                    sa.UniqueConstraint("instance_id", "remote_jid", name="uq_chats_instance_jid"))
    op.create_table("contacts", sa.Column("id", sa.String(36), primary_key=True), _instance(),
                    sa.Column("remote_jid", sa.String(128), nullable=False), sa.Column("push_name", sa.String(100)),
                    sa.Column("profile_pic_url", sa.String(500)),
                    sa.Column("created_at", UTCDateTime(), nullable=False),
                    sa.Column("updated_at", UTCDateTime(), nullable=False),
                    sa.UniqueConstraint("instance_id", "remote_jid", name="uq_contacts_instance_jid"))
    op.create_table("groups", _instance(True), sa.Column("group_jid", sa.String(128), primary_key=True),
                    sa.Column("subject", sa.String(100), nullable=False),
                    sa.Column("metadata", sa.Text(), nullable=False),
                    sa.Column("updated_at", UTCDateTime(), nullable=False))


def downgrade() -> None:
    for table in ("groups", "contacts", "chats"):
        op.drop_table(table)
