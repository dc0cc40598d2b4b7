"""Issue 10 item 7: outbox payloads (QR `code` with the ADV secret, pairing codes) and headers are sealed at
rest, delivered rows and dead letters are purged on a schedule, `evolink secrets rotate` re-seals them,
and plaintext rows from older versions still deliver."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gw_fakes import FakeHub
from gw_helpers import Receiver, make_settings, running_gateway
from sqlalchemy import select, update

from evolink.gateway import DeliveryWorker, RetryPolicy
from evolink.store import CredsCipher, Database, OutboxItem, SealError, Store, open_database, sqlite_url
from evolink.store.creds_key import prepare_creds_key, rotate_creds_key
from evolink.store.models import OutboxEvent
from evolink.store.outbox_seal import open_outbox

SECRET_QR = "2@ref,noisepub,identitypub,ADVSECRETADVSECRET"
CLIENT = "evolution"


def _item(url: str, lane: str = "a|lane", code: str = SECRET_QR) -> OutboxItem:
    return OutboxItem(lane=lane, instance_name="a", event="qrcode.updated", url=url,
                      payload={"event": "qrcode.updated", "instance": "a", "data": {"qrcode": {"code": code,
                                                                                                 "pairingCode": "ABCD1234"}}},
                      headers={"jwt_key": "JWT-SECRET", "X-Token": "HEADER-SECRET"})


async def _raw_rows(db: Database) -> list[OutboxEvent]:
    async with db.sessions() as s:
        return list((await s.execute(select(OutboxEvent).order_by(OutboxEvent.id))).scalars())


async def test_rows_are_sealed_at_rest_and_read_in_clear(database: Database) -> None:
    store = Store(database, CredsCipher("key-one"), client_name=CLIENT)
    await store.enqueue([_item("http://127.0.0.1:9/hook")])
    (raw,) = await _raw_rows(database)
    stored = json.dumps(raw.payload) + json.dumps(raw.headers)
    for secret in ("ADVSECRET", "ABCD1234", "JWT-SECRET", "HEADER-SECRET"):
        assert secret not in stored
    assert raw.headers is None and raw.payload["sealed"].startswith("enc:v1:")
    (head,) = await store.due_heads(now=1e12)
    assert head.payload["data"]["qrcode"]["code"] == SECRET_QR
    assert head.headers == {"jwt_key": "JWT-SECRET", "X-Token": "HEADER-SECRET"}
    # the lane is the associated data: a sealed blob moved onto another lane does not open
    async with database.sessions.begin() as s:
        await s.execute(update(OutboxEvent).values(lane="b|lane"))
    assert await store.due_heads(now=1e12) == []
    (failed,) = await _raw_rows(database)
    assert failed.status == "failed" and failed.last_error.startswith("SealError")


async def test_a_wrong_key_fails_the_row_loudly_and_keeps_it(database: Database) -> None:
    await Store(database, CredsCipher("key-one"), client_name=CLIENT).enqueue([_item("http://127.0.0.1:9/hook")])
    other = Store(database, CredsCipher("key-two"), client_name=CLIENT)
    assert await other.due_heads(now=1e12) == []
    (row,) = await _raw_rows(database)
    assert row.status == "failed" and "SealError" in (row.last_error or "")
    assert row.payload["sealed"].startswith("enc:v1:")  # nothing overwritten: the right key still opens it
    assert open_outbox(CredsCipher("key-one"), row.lane, row.payload, row.headers)[0]["instance"] == "a"


async def test_sealed_and_legacy_plaintext_rows_are_delivered(database: Database, receiver: Receiver) -> None:
    store = Store(database, CredsCipher("key-one"), client_name=CLIENT)
    async with database.sessions.begin() as s:  # as an older version wrote it
        s.add(OutboxEvent(lane="old|lane", client_name=None, instance_name="old", event="connection.update",
                          url=receiver.url + "/old", payload={"event": "connection.update", "instance": "old"},
                          headers={"X-Old": "1"}, status="pending", attempts=0, next_attempt_at=0.0))
    await store.enqueue([_item(receiver.url + "/new")])
    wake = asyncio.Event()
    worker = DeliveryWorker(store, RetryPolicy(initial_delay=0.01, max_delay=0.02), wake)
    worker.start()
    try:
        await receiver.wait_for(lambda: len(receiver.received) == 2)
    finally:
        await worker.stop()
    by_path = {r.path: r for r in receiver.received}
    assert by_path["/old"].body == {"event": "connection.update", "instance": "old"}
    assert by_path["/old"].headers["x-old"] == "1"
    assert by_path["/new"].body["data"]["qrcode"]["code"] == SECRET_QR
    assert by_path["/new"].headers["x-token"] == "HEADER-SECRET"
    assert by_path["/new"].headers["authorization"].startswith("Bearer ")


async def test_prune_forgets_delivered_and_dead_letters_of_this_installation(database: Database) -> None:
    mine = Store(database, CredsCipher("k"), client_name=CLIENT)
    theirs = Store(database, CredsCipher("k2"), client_name="other")
    await mine.enqueue([_item("http://x/1", lane="l1"), _item("http://x/2", lane="l2"), _item("http://x/3", lane="l3")])
    await theirs.enqueue([_item("http://x/4", lane="l4")])
    rows = await _raw_rows(database)
    await mine.mark_outbox(rows[0].id, status="delivered", attempts=1)
    await mine.mark_outbox(rows[1].id, status="failed", attempts=10)
    await theirs.mark_outbox(rows[3].id, status="delivered", attempts=1)
    now = datetime.now(UTC) + timedelta(seconds=1)
    assert await mine.prune_outbox(now, None) == 1  # failed ones stay without a failed cut-off
    assert await mine.prune_outbox(now, now) == 1
    left = await _raw_rows(database)
    assert [(r.lane, r.status) for r in left] == [("l3", "pending"), ("l4", "delivered")]  # theirs untouched


async def test_the_worker_purges_on_schedule(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(tmp_path, EVOLINK_OUTBOX_DELIVERED_RETENTION_SECONDS=0,
                             EVOLINK_OUTBOX_FAILED_RETENTION_SECONDS=0)
    async with running_gateway(settings, engine_factory=FakeHub().factory) as (client, app):
        store: Store = app.state.gateway.store
        worker: DeliveryWorker = app.state.gateway.worker
        resp = await client.post("/instance/create", json={
            "instanceName": "a", "integration": "WHATSAPP-BAILEYS",
            "webhook": {"url": receiver.url, "enabled": True, "events": []}})
        assert resp.status_code == 201
        await receiver.wait_for(lambda: len(receiver.received) >= 1)

        await worker.wait_until(lambda: worker.stats["delivered"] >= 1, 10)
        await worker.wait_until(lambda: worker.stats["pruned"] >= 1, 10)  # sweeps every second at retention 0
        assert (await store.outbox_counts()).get("delivered", 0) == 0


async def test_gateway_rows_are_sealed_and_rotation_reseals_them(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(tmp_path)
    receiver.status = 503  # keep the rows pending
    async with running_gateway(settings, engine_factory=FakeHub().factory) as (client, _app):
        resp = await client.post("/instance/create", json={
            "instanceName": "a", "integration": "WHATSAPP-BAILEYS",
            "webhook": {"url": receiver.url, "enabled": True, "events": [], "headers": {"X-Token": "HEADER-SECRET"}}})
        assert resp.status_code == 201
        await receiver.wait_for(lambda: receiver.hits >= 1)
        token = resp.json()["hash"]
    db = open_database(sqlite_url(settings.EVOLINK_DATA_DIR))
    try:
        rows = await _raw_rows(db)
        assert rows and all(r.payload.get("sealed", "").startswith("enc:v1:") and r.headers is None for r in rows)
        assert all(token not in json.dumps(r.payload) and "HEADER-SECRET" not in json.dumps(r.payload) for r in rows)
        before = {r.id: r.payload["sealed"] for r in rows}
        old = await prepare_creds_key(db, None, settings.EVOLINK_DATA_DIR, CLIENT)
        await rotate_creds_key(db, None, settings.EVOLINK_DATA_DIR, CLIENT)
        new = await prepare_creds_key(db, None, settings.EVOLINK_DATA_DIR, CLIENT)
        for row in await _raw_rows(db):
            assert row.payload["sealed"] != before[row.id]
            payload, headers = open_outbox(new.cipher, row.lane, row.payload, row.headers)
            assert payload["instance"] == "a" and headers == {"X-Token": "HEADER-SECRET"}
            with pytest.raises(SealError):  # the old key no longer opens the re-sealed row
                open_outbox(old.cipher, row.lane, row.payload, row.headers)
    finally:
        await db.dispose()


async def test_plaintext_rows_of_an_older_install_are_sealed_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = open_database(sqlite_url(data))
    try:
        await db.migrate()
        await Store(db, CredsCipher(None), client_name=CLIENT).enqueue([_item("http://x/1")])
        (raw,) = await _raw_rows(db)
        assert raw.payload["data"]["qrcode"]["code"] == SECRET_QR  # an older version's plaintext
        key = await prepare_creds_key(db, None, data, CLIENT)
        (raw,) = await _raw_rows(db)
        assert "ADVSECRET" not in json.dumps(raw.payload) and raw.headers is None
        (head,) = await Store(db, key.cipher, client_name=CLIENT).due_heads(now=1e12)
        assert head.payload["data"]["qrcode"]["code"] == SECRET_QR
        assert head.headers == {"jwt_key": "JWT-SECRET", "X-Token": "HEADER-SECRET"}
    finally:
        await db.dispose()




async def test_upgrade_delivers_the_plaintext_rows_an_older_version_left(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(tmp_path)
    settings.EVOLINK_DATA_DIR.mkdir(parents=True)
    db = open_database(sqlite_url(settings.EVOLINK_DATA_DIR))
    try:
        await db.migrate()
        await Store(db, CredsCipher(None), client_name=CLIENT).enqueue([_item(receiver.url + "/legacy")])
    finally:
        await db.dispose()
    async with running_gateway(settings, engine_factory=FakeHub().factory):
        await receiver.wait_for(lambda: any(r.path == "/legacy" for r in receiver.received))
    (got,) = [r for r in receiver.received if r.path == "/legacy"]
    assert got.body["data"]["qrcode"]["code"] == SECRET_QR and got.headers["x-token"] == "HEADER-SECRET"
