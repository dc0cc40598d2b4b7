"""Database handle: async engine + session factory + migrations, for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


class DatabaseError(Exception):
    """The database could not be opened or migrated; the message says which and why."""


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'evolink.db'}"


def normalise_postgres_url(uri: str) -> str:
    """Accept Evolution-style `postgresql://…` URIs and use the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if uri.startswith(prefix):
            rest = uri[len(prefix):]
            # Prisma's `?schema=evolution` is not a libpq option; drop query args asyncpg rejects.
            base, _, query = rest.partition("?")
            kept = [p for p in query.split("&") if p and not p.startswith("schema=")]
            return "postgresql+asyncpg://" + base + ("?" + "&".join(kept) if kept else "")
    raise DatabaseError("DATABASE_CONNECTION_URI: expected a postgresql:// URI")


@dataclass
class Database:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def migrate(self) -> None:
        """Bring the schema to head (idempotent)."""
        try:
            async with self.engine.begin() as conn:
                await conn.run_sync(_upgrade)
        except Exception as exc:
            raise DatabaseError(f"database migration failed: {exc}") from exc

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def _upgrade(conn: Connection) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def open_database(url: str, *, schema: str | None = None, echo: bool = False) -> Database:
    """Create the engine. SQLite uses one pooled connection: writes serialise in-process instead of
    failing with "database is locked"; `schema` selects a PostgreSQL schema (used by tests)."""
    kwargs: dict[str, Any] = {"echo": echo}
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.update(pool_size=1, max_overflow=0, pool_timeout=120, connect_args={"timeout": 30})
    else:
        kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        if schema:
            kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return Database(engine, async_sessionmaker(engine, expire_on_commit=False))
