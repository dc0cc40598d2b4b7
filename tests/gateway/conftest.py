"""Fixtures for gateway tests: a migrated database on SQLite and on the local PostgreSQL, a webhook receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gw_helpers import Receiver, close_test_database, open_test_database

from evolink.store import CredsCipher, Database, Store


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


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


@pytest.fixture
async def hanging_broker() -> AsyncIterator[int]:
    """A loopback port that accepts TCP connections and never answers (the worst kind of down broker)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for w in held:
        w.close()
    server.close()
    await server.wait_closed()
