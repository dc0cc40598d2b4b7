"""Store tests, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from evolink.gateway.creds import SqlCredsStore
from evolink.store import CredsCipher, Database, NameInUse, OutboxItem, SealError, Store
from evolink.store.models import Base
from evolink.wa.creds import Creds


async def _make(store: Store, name: str = "inst1", token: str = "TOK") -> str:
    iid = str(uuid.uuid4())
    await store.create_instance(instance_id=iid, name=name, token=token, integration="WHATSAPP-BAILEYS",
                                number=None, client_name="evolution", settings={"reject_call": True},
                                webhook={"url": "http://127.0.0.1:1/h", "enabled": True, "events": [],
                                         "headers": {"x": "1"}, "webhook_by_events": False,
                                         "webhook_base64": False})
    return iid


async def test_migrations_match_models(database: Database) -> None:
    def diff(conn: object) -> list[object]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return [d for d in compare_metadata(ctx, Base.metadata) if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]

    async with database.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
    await database.migrate()  # idempotent


async def test_instance_crud_and_unique_name(store: Store) -> None:
    iid = await _make(store)
    row = await store.get_instance("inst1")
    assert row is not None and row.id == iid and row.connection_status == "close"
    assert row.created_at.tzinfo is not None
    with pytest.raises(NameInUse):
        await _make(store, token="TOK2")
    setting = await store.get_setting(iid)
    assert setting is not None and setting.reject_call is True and setting.msg_call == ""
    hook = await store.get_webhook(iid)
    assert hook is not None and hook.headers == {"x": "1"}
    await store.update_instance(iid, connection_status="open", owner_jid="1555@s.whatsapp.net")
    assert [r.name for r in await store.list_instances(client_name="evolution", token="TOK")] == ["inst1"]
    assert (await store.get_instance("inst1")).connection_status == "open"  # type: ignore[union-attr]
    await store.delete_instance(iid)
    assert await store.get_instance("inst1") is None
    assert await store.get_setting(iid) is None
    await _make(store)  # name reusable at once


def test_store_package_imports_no_upper_layer() -> None:
    # The store serves api, gateway and wa: importing it must not pull any of them in.
    code = ("import sys, evolink.store, evolink.store.repo, evolink.store.sealing; "
            "print(','.join(sorted(m for m in sys.modules if m.startswith('evolink.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    loaded = out.strip().split(",")
    assert all(m.startswith(("evolink.store", "evolink.clock", "evolink.metrics")) for m in loaded), loaded


async def test_creds_sealed_at_rest(store: Store) -> None:
    iid = await _make(store)
    creds = SqlCredsStore(store, iid)
    assert await creds.load() is None
    fresh = Creds.new()
    await creds.save(fresh)
    raw = await store.raw_creds(iid)
    secret_b64 = base64.b64encode(fresh.noise_private).decode()
    assert raw is not None and raw.startswith("enc:v1:") and secret_b64 not in raw
    assert await creds.load() == fresh
    assert await creds.has_registered() is False
    with pytest.raises(SealError):
        await Store(store.db, CredsCipher(None)).load_creds(iid)
    with pytest.raises(SealError):
        await Store(store.db, CredsCipher("other")).load_creds(iid)
    await creds.clear()
    assert await creds.load() is None


async def test_creds_plain_without_key(database: Database) -> None:
    store = Store(database, CredsCipher(None))
    iid = await _make(store)
    await store.save_creds(iid, {"a": 1})
    assert await store.raw_creds(iid) == '{"a":1}'
    # a key configured later still reads the plain row
    assert await Store(database, CredsCipher("k")).load_creds(iid) == {"a": 1}


async def test_pairing_attempts_keep_suffix_only(store: Store) -> None:
    iid = await _make(store)
    now = datetime.now(UTC)
    await store.add_pairing_attempt(instance_id=iid, method="code", code="ABCD5678", issued_at_system=now,
                                    issued_at_corrected=now, issued_at_server=now,
                                    expires_at=now + timedelta(seconds=180))
    closed = await store.finish_pairing_attempts(iid, "success", now + timedelta(seconds=7))
    assert len(closed) == 1
    rows = await store.list_pairing_attempts(iid)
    assert rows[0].code_suffix == "78" and rows[0].outcome == "success"
    assert rows[0].duration_seconds == pytest.approx(7.0)
    assert await store.finish_pairing_attempts(iid, "expired", now) == []


async def test_outbox_heads_per_lane(store: Store) -> None:
    items = [OutboxItem(lane=f"{inst}|u", instance_name=inst, event="e", url="http://x", payload={"n": n})
             for n, inst in enumerate(["a", "b", "a", "b", "a"])]
    await store.enqueue(items)
    heads = await store.due_heads(now=1.0)
    assert [h.payload["n"] for h in heads] == [0, 1]
    # head of lane a backs off: lane a is blocked, lane b is not
    await store.mark_outbox(heads[0].id, status="pending", attempts=1, next_attempt_at=100.0, error="503")
    await store.mark_outbox(heads[1].id, status="delivered", attempts=1)
    assert [h.payload["n"] for h in await store.due_heads(now=1.0)] == [3]
    assert await store.next_due_at() == 0.0
    assert [h.payload["n"] for h in await store.due_heads(now=100.0)] == [0, 3]
    assert (await store.outbox_counts()) == {"pending": 4, "delivered": 1}
    assert await store.prune_outbox(datetime.now(UTC) - timedelta(hours=1)) == 0
    assert await store.prune_outbox(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert (await store.outbox_counts()) == {"pending": 4}
