"""Instance names are unique per installation, not across a shared database (migration 0006): one
installation's `create` no longer learns another's names from a 403 "already in use"."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from gw_fakes import FakeHub
from gw_helpers import PG_URL, _pg_schema, make_settings, running_gateway
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from evolink.api.apikey import ApiKey
from evolink.store import CredsCipher, Database, NameInUse, Store, open_database, sqlite_url
from evolink.store.db import MIGRATIONS_DIR


async def _create(store: Store, name: str, client: str) -> str:
    iid = str(uuid.uuid4())
    await store.create_instance(instance_id=iid, name=name, token=f"T-{uuid.uuid4()}", integration="WHATSAPP-BAILEYS",
                                number=None, client_name=client, settings={}, webhook=None)
    return iid


async def test_same_name_in_two_installations_different_name_in_one(database: Database) -> None:
    alpha = Store(database, CredsCipher("k"), client_name="alpha")
    beta = Store(database, CredsCipher("k"), client_name="beta")
    a = await _create(alpha, "shop", "alpha")
    b = await _create(beta, "shop", "beta")
    assert a != b
    assert (await alpha.get_instance("shop")).id == a  # type: ignore[union-attr]
    assert (await beta.get_instance("shop")).id == b  # type: ignore[union-attr]
    with pytest.raises(NameInUse):
        await _create(alpha, "shop", "alpha")
    await alpha.delete_instance(a)
    assert (await beta.get_instance("shop")).id == b  # type: ignore[union-attr]


def _upgrade_to(conn: Connection, revision: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, revision)


@pytest.mark.parametrize("provider", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_migration_keeps_rows_and_scopes_the_constraint(provider: str, tmp_path: Path) -> None:
    schema = None
    if provider == "sqlite":
        db = open_database(sqlite_url(tmp_path))
    else:
        schema = f"evolink_names_{uuid.uuid4().hex[:10]}"
        try:
            await _pg_schema("create", schema)
        except OSError as exc:  # pragma: no cover - depends on the host
            pytest.skip(f"PostgreSQL not reachable: {exc}")
        db = open_database(PG_URL, schema=schema)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_upgrade_to, "0005")
        old = Store(db, CredsCipher("k"))
        kept = await _create(old, "shop", "alpha")
        async with db.engine.begin() as conn:  # under 0005 the name is taken database-wide
            with pytest.raises(IntegrityError):
                async with conn.begin_nested():
                    await conn.execute(text("INSERT INTO instances (id, name, token, connection_status, integration, "
                                            "client_name, created_at, updated_at) VALUES ('x', 'shop', 'tx', 'close', "
                                            "'WHATSAPP-BAILEYS', 'beta', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        await db.migrate()
        beta = Store(db, CredsCipher("k"), client_name="beta")
        await _create(beta, "shop", "beta")
        assert (await Store(db, client_name="alpha").get_instance("shop")).id == kept  # type: ignore[union-attr]
        with pytest.raises(NameInUse):
            await _create(Store(db, client_name="alpha"), "shop", "alpha")
    finally:
        await db.dispose()
        if schema is not None:
            await _pg_schema("drop", schema)


@pytest.mark.postgres
async def test_two_gateways_on_one_database_both_create_the_same_name(tmp_path: Path) -> None:
    schema = f"evolink_names_{uuid.uuid4().hex[:10]}"
    try:
        await _pg_schema("create", schema)
    except OSError as exc:  # pragma: no cover - depends on the host
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        gateways = []
        for who in ("alpha", "beta"):
            settings = make_settings(tmp_path / who, DATABASE_PROVIDER="postgresql", DATABASE_CONNECTION_URI=PG_URL,
                                     DATABASE_CONNECTION_CLIENT_NAME=who, AUTHENTICATION_API_KEY=f"KEY-{who}")
            gateways.append(running_gateway(settings, engine_factory=FakeHub().factory, db_schema=schema,
                                            api_key=ApiKey(f"KEY-{who}", "env")))
        async with gateways[0] as (a, _), gateways[1] as (b, _):
            body = {"instanceName": "shop", "integration": "WHATSAPP-BAILEYS"}
            made_a = await a.post("/instance/create", json=body, headers={"apikey": "KEY-alpha"})
            made_b = await b.post("/instance/create", json=body, headers={"apikey": "KEY-beta"})
            assert made_a.status_code == 201 and made_b.status_code == 201, made_b.text
            again = await a.post("/instance/create", json=body, headers={"apikey": "KEY-alpha"})
            assert again.status_code == 403
            for client, key, made in ((a, "KEY-alpha", made_a), (b, "KEY-beta", made_b)):
                rows = (await client.get("/instance/fetchInstances", headers={"apikey": key})).json()
                assert [(r["name"], r["id"]) for r in rows] == [("shop", made.json()["instance"]["instanceId"])]
            # each one's token opens its own "shop" only
            token_b = made_b.json()["hash"]
            assert (await a.get("/instance/connectionState/shop", headers={"apikey": token_b})).status_code == 401
            assert (await b.get("/instance/connectionState/shop", headers={"apikey": token_b})).status_code == 200
            assert (await a.delete("/instance/delete/shop", headers={"apikey": "KEY-alpha"})).status_code == 200
            assert (await b.get("/instance/connectionState/shop", headers={"apikey": "KEY-beta"})).status_code == 200
    finally:
        await _pg_schema("drop", schema)
