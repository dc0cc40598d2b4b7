"""Persistence: SQLAlchemy 2 async models, Alembic migrations, the creds rows and the event outbox."""

from evolink.store import (  # noqa: F401  (every table on Base.metadata)
    chat_models,
    message_models,
    messaging_models,
    transport_models,
)
from evolink.store.db import Database, DatabaseError, normalise_postgres_url, open_database, sqlite_url
from evolink.store.repo import NameInUse, OutboxItem, ProxyRecord, Store, TokenInUse
from evolink.store.sealing import CredsCipher, SealError

__all__ = [
           "CredsCipher",
           "Database",
           "DatabaseError",
           "NameInUse",
           "OutboxItem",
           "ProxyRecord",
           "SealError",
           "Store",
           "TokenInUse",
           "normalise_postgres_url",
           "open_database",
           "sqlite_url",
]
