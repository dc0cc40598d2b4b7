"""Alembic environment: migrations always run on a connection handed in by evolink.store.db.migrate."""

from __future__ import annotations

from alembic import context

from evolink.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guard against running `alembic` without evolink
    raise RuntimeError("run migrations through evolink.store.db.Database.migrate()")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
