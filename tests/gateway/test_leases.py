"""Instance leases in PostgreSQL (cluster mode): acquire, renew, take over, release, fenced writes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gw_helpers import close_test_database, open_test_database

from evolink.store import CredsCipher, Store
from evolink.store.leases import LeaseRepo, LeaseUnsupported

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[tuple[Store, LeaseRepo]]:
    db, schema = await open_test_database("postgresql", tmp_path)
    try:
        yield Store(db, CredsCipher("t")), LeaseRepo(db)
    finally:
        await close_test_database(db, schema)


async def _instance(store: Store, name: str, status: str = "open") -> str:
    iid = str(uuid.uuid4())
    await store.create_instance(instance_id=iid, name=name, token=str(uuid.uuid4()), integration="WHATSAPP-BAILEYS",
                                number=None, client_name="evolution", settings={}, webhook=None)
    await store.update_instance(iid, connection_status=status)
    return iid


async def _until_acquired(repo: LeaseRepo, iid: str, node: str, within: float = 5.0) -> int:
    async def loop() -> int:
        # The lease expires on the database's clock: nothing to wait on but the database itself.
        while (token := await repo.acquire(iid, node, 5)) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        return token

    return await asyncio.wait_for(loop(), within)


async def test_sqlite_is_refused(tmp_path: Path) -> None:
    db, _ = await open_test_database("sqlite", tmp_path)
    try:
        with pytest.raises(LeaseUnsupported):
            LeaseRepo(db)
    finally:
        await db.dispose()


async def test_one_owner_at_a_time_and_tokens_grow(pg: tuple[Store, LeaseRepo]) -> None:
    store, repo = pg
    iid = await _instance(store, "a")
    assert await repo.acquire(iid, "n1", 0.5) == 1
    assert await repo.acquire(iid, "n1", 0.5) == 1  # re-acquire by the live owner: same token
    assert await repo.acquire(iid, "n2", 5) is None  # held
    assert await repo.unowned() == []
    assert await _until_acquired(repo, iid, "n2") == 2  # expired: taken over with a new token
    assert await repo.renew("n1", 5) == {}  # the old owner renews nothing
    assert await repo.renew("n2", 5) == {iid: 2}
    leases = await repo.leases()
    assert leases[iid].owner == "n2" and leases[iid].live


async def test_release_hands_over_at_once(pg: tuple[Store, LeaseRepo]) -> None:
    store, repo = pg
    a, b = await _instance(store, "a"), await _instance(store, "b")
    await _instance(store, "c", status="close")
    assert await repo.unowned() == [a, b]  # closed instances are nobody's business
    assert await repo.acquire(a, "n1", 30) == 1 and await repo.acquire(b, "n1", 30) == 1
    assert await repo.unowned() == []
    await repo.release("n1")
    assert await repo.unowned() == [a, b]
    assert await repo.acquire(a, "n2", 30) == 2


async def test_fenced_write_refuses_a_stale_owner(pg: tuple[Store, LeaseRepo]) -> None:
    store, repo = pg
    iid = await _instance(store, "a")
    assert await repo.acquire(iid, "n1", 0.3) == 1
    assert await repo.set_status_fenced(iid, "n1", 1, "connecting")
    assert await _until_acquired(repo, iid, "n2") == 2
    assert not await repo.set_status_fenced(iid, "n1", 1, "close")  # stale token: nothing written
    row = await store.get_instance("a")
    assert row is not None and row.connection_status == "connecting"
    assert await repo.set_status_fenced(iid, "n2", 2, "open")


async def test_nodes_heartbeat(pg: tuple[Store, LeaseRepo]) -> None:
    _store, repo = pg
    await repo.heartbeat("n1", "http://127.0.0.1:1")
    await repo.heartbeat("n2", None)
    nodes = await repo.nodes(15)
    assert [(n.node_id, n.live) for n in nodes] == [("n1", True), ("n2", True)]
    await repo.forget_node("n2")
    assert [n.node_id for n in await repo.nodes(15)] == ["n1"]
