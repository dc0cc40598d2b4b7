"""Issue 10 item 8: two instances never share a token (a shared token opened both)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from gw_fakes import FakeHub
from gw_helpers import GLOBAL_KEY, create_instance, make_settings, running_gateway
from sqlalchemy import Connection

from evolink.store import CredsCipher, Store, TokenInUse
from evolink.store.db import MIGRATIONS_DIR, open_database, sqlite_url


def _upgrade_to(conn: Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


async def test_create_with_another_instances_token_is_refused(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path), engine_factory=FakeHub().factory) as (client, _):
        await create_instance(client, "a", token="SHARED-TOKEN-1")
        resp = await client.post("/instance/create", json={"instanceName": "b", "integration": "WHATSAPP-BAILEYS",
                                                           "token": "SHARED-TOKEN-1"})
        assert resp.status_code == 403, resp.text
        assert resp.json()["response"]["message"] == ["This token is already in use by another instance."]
        names = [r["name"] for r in (await client.get("/instance/fetchInstances")).json()]
        assert names == ["a"]  # nothing stored half-way
        # the token still opens exactly its own instance
        mine = await client.get("/instance/fetchInstances", headers={"apikey": "SHARED-TOKEN-1"})
        assert [r["name"] for r in mine.json()] == ["a"]
        assert (await client.get("/instance/connectionState/a", headers={"apikey": GLOBAL_KEY})).status_code == 200


async def test_the_database_refuses_a_shared_token(store: Store) -> None:
    await store.create_instance(instance_id=str(uuid.uuid4()), name="a", token="T1", integration="WHATSAPP-BAILEYS",
                                number=None, client_name="evolution", settings={}, webhook=None)
    with pytest.raises(TokenInUse):
        await store.create_instance(instance_id=str(uuid.uuid4()), name="b", token="T1",
                                    integration="WHATSAPP-BAILEYS", number=None, client_name="other",
                                    settings={}, webhook=None)


async def test_migration_gives_later_sharers_a_fresh_token(tmp_path: Path) -> None:
    """A database from an older version, where b was created with a's token: after the upgrade a keeps it,
    b gets its own, and the index is unique."""
    db = open_database(sqlite_url(tmp_path))
    path = tmp_path / "evolink.db"
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0004")
        for i, name in enumerate(("a", "b", "c")):
            await Store(db, CredsCipher("k")).create_instance(
                instance_id=f"00000000-0000-0000-0000-00000000000{i}", name=name, token=f"TOKEN-{name}",
                integration="WHATSAPP-BAILEYS", number=None, client_name="evolution", settings={}, webhook=None)
        with sqlite3.connect(path) as raw:  # what an older version let `create` do
            raw.execute("UPDATE instances SET token = 'TOKEN-a' WHERE name = 'b'")
        await db.migrate()
    finally:
        await db.dispose()
    with sqlite3.connect(path) as conn:
        tokens = dict(conn.execute("SELECT name, token FROM instances").fetchall())
        indexes = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'ix_instances_token'").fetchone()
    assert tokens["a"] == "TOKEN-a" and tokens["c"] == "TOKEN-c"  # the oldest keeps its token
    assert tokens["b"] not in ("TOKEN-a", "TOKEN-b", "TOKEN-c") and len(tokens["b"]) == 36
    assert "UNIQUE" in indexes[0].upper()
