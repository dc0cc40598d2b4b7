"""Evolution Message rows (migration 0007) on SQLite and PostgreSQL: written in the engine store's
transaction, sealed, filtered and paged as findMessages needs."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import text

from evolink.clock.base import SystemClock
from evolink.gateway.message_store import SqlMessageStore
from evolink.gateway.messages import InstanceMessages, MessageHub
from evolink.store import Database, Store
from evolink.store.message_repo import MessageFilter, MessageRepo
from evolink.wa.store_port import StateChanges, StoredMessage
from evolink.wire.proto.e2e_pb2 import Message


async def _setup(store: Store, name: str, **settings: Any) -> tuple[InstanceMessages, SqlMessageStore]:
    row = await store.create_instance(instance_id=f"id-{name}", name=name, token=f"t-{name}",
                                      integration="WHATSAPP-BAILEYS", number=None, client_name="c",
                                      settings=settings, webhook=None)
    repo = MessageRepo(store.db, store.cipher)
    hub = MessageHub(repo=repo, publisher=SimpleNamespace(), store=store, clock=SystemClock())  # type: ignore[arg-type]
    rt = SimpleNamespace(name=name, instance_id=row.id, state="open", engine=None, ref=None)
    msgs = InstanceMessages(hub, rt)  # type: ignore[arg-type]
    return msgs, SqlMessageStore(store.db, store.cipher, row.id, on_incoming=msgs.row_hook)


def _stored(mid: str, text_: str, chat: str = "15550002222@s.whatsapp.net", ts: int = 100) -> StoredMessage:
    m = Message()
    m.conversation = text_
    return StoredMessage(mid, chat, "15550002222:0@s.whatsapp.net", "99:0@lid", False, ts, "Bob",
                         m.SerializeToString())


async def test_row_commits_with_the_signal_state(database: Database, store: Store) -> None:
    msgs, ms = await _setup(store, "a")
    assert await ms.save_incoming(_stored("3A00000000000000000A", "hi"), StateChanges(sessions={"99_1.0": b"r1"}))
    row = await msgs.repo.get(msgs.rt.instance_id, "3A00000000000000000A")
    assert row is not None and row.announced is False and row.remote_jid == "15550002222@s.whatsapp.net"
    rec = msgs.repo.record(row)
    assert rec["message"] == {"conversation": "hi"} and rec["pushName"] == "Bob" and rec["status"] == "DELIVERY_ACK"
    assert rec["key"]["remoteJidAlt"] == "99@lid"
    async with database.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT message FROM messages"))).scalar_one()
    assert stored.startswith("enc:v1:") and "hi" not in stored  # content sealed at rest

    async def broken(s: Any, m: StoredMessage) -> None:
        raise RuntimeError("disk full")

    failing = SqlMessageStore(store.db, store.cipher, msgs.rt.instance_id, on_incoming=broken)
    with pytest.raises(RuntimeError):
        await failing.save_incoming(_stored("3A00000000000000000B", "lost?"), StateChanges(sessions={"x.1": b"r"}))
    # all or nothing: neither the engine's copy nor the Signal state of the failed save was kept
    assert not await ms.has_incoming("3A00000000000000000B") and await ms.load_session("x.1") is None


async def test_groups_ignore_and_content_free_messages_store_no_row(database: Database, store: Store) -> None:
    msgs, ms = await _setup(store, "b", groups_ignore=True)
    await ms.save_incoming(_stored("3A00000000000000000C", "g", chat="120363000000000001@g.us"), StateChanges())
    skdm_only = Message()
    skdm_only.senderKeyDistributionMessage.groupId = "x@g.us"
    await ms.save_incoming(StoredMessage("3A00000000000000000D", "15550002222@s.whatsapp.net", "1@s.whatsapp.net",
                                         None, False, 1, None, skdm_only.SerializeToString()), StateChanges())
    total, _ = await msgs.repo.find(msgs.rt.instance_id, MessageFilter(), page=1, size=10)
    assert total == 0
    assert await ms.has_incoming("3A00000000000000000C")  # the engine still keeps its own copy (dedup)


async def test_find_filters_pages_and_instance_isolation(database: Database, store: Store) -> None:
    a, ms_a = await _setup(store, "c")
    b, ms_b = await _setup(store, "d")
    for i in range(7):
        await ms_a.save_incoming(_stored(f"3A{i:018d}", f"m{i}", ts=100 + i), StateChanges())
    await ms_b.save_incoming(_stored("3AB00000000000000000", "other"), StateChanges())
    repo = a.repo
    iid = a.rt.instance_id
    total, rows = await repo.find(iid, MessageFilter(), page=2, size=3)
    assert total == 7 and [r.key_id for r, _ in rows] == [f"3A{i:018d}" for i in (3, 2, 1)]
    total, rows = await repo.find(iid, MessageFilter(ts_gte=101, ts_lte=102), page=1, size=50)
    assert total == 2
    total, _ = await repo.find(iid, MessageFilter(remote_jid="99@lid"), page=1, size=50)  # remoteJidAlt matches
    assert total == 7
    assert await repo.add_update(iid, "3A000000000000000001", "READ") is not None
    assert await repo.add_update(iid, "nope", "READ") is None
    _, rows = await repo.find(iid, MessageFilter(key_id="3A000000000000000001"), page=1, size=50)
    assert rows[0][1] == ["READ"]
    assert (await repo.find(b.rt.instance_id, MessageFilter(), page=1, size=50))[0] == 1
    await store.delete_instance(iid)  # rows and updates cascade with the instance
    assert (await repo.find(iid, MessageFilter(), page=1, size=50))[0] == 0


async def test_hook_written_row_is_announced_then_marked(database: Database, store: Store) -> None:
    msgs, ms = await _setup(store, "e")
    published: list[tuple[str, Any]] = []

    async def publish(ref: Any, event: str, data: Any) -> int:
        published.append((event, data))
        return 1

    msgs.hub.publisher = SimpleNamespace(publish=publish)  # type: ignore[assignment]
    from evolink.wa.events import MessageEvent

    stored = _stored("3A00000000000000000E", "announce me")
    assert await ms.save_incoming(stored, StateChanges())
    m = Message()
    m.conversation = "announce me"
    await msgs.on_message(MessageEvent(stored.id, stored.chat, stored.sender, None, "99:0@lid", False, 100, "Bob", m))
    await msgs.on_message(MessageEvent(stored.id, stored.chat, stored.sender, None, "99:0@lid", False, 100, "Bob", m))
    await msgs.flush()
    assert [(e, d["key"]["id"], d["message"]["conversation"]) for e, d in published] == [
        ("messages.upsert", "3A00000000000000000E", "announce me")]  # the repeat found it announced
    row = await msgs.repo.get(msgs.rt.instance_id, stored.id)
    assert row is not None and row.announced
    assert await msgs.repo.unannounced(msgs.rt.instance_id) == []
