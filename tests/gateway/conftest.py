"""Fixtures for gateway tests: a migrated database on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from evolink.store import CredsCipher, Database, Store, open_database, sqlite_url

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def _pg_schema(action: str, schema: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test", timeout=5)
    try:
        if action == "create":
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        else:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def open_test_database(provider: str, tmp_path: Path) -> tuple[Database, str | None]:
    if provider == "sqlite":
        db = open_database(sqlite_url(tmp_path / "db"))
        await db.migrate()
        return db, None
    schema = f"evolink_test_{uuid.uuid4().hex[:12]}"
    try:
        await _pg_schema("create", schema)
    except OSError as exc:  # pragma: no cover - depends on the host
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 not reachable: {exc}")
    db = open_database(PG_URL, schema=schema)
    await db.migrate()
    return db, schema


async def close_test_database(db: Database, schema: str | None) -> None:
    await db.dispose()
    if schema is not None:
        await _pg_schema("drop", schema)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    db, schema = await open_test_database(request.param, tmp_path)
    try:
        yield db
    finally:
        await close_test_database(db, schema)


@pytest.fixture
def store(database: Database) -> Store:
    return Store(database, CredsCipher("test-secret"))
