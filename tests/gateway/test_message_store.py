"""SqlMessageStore (the engine's store port on the gateway database), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from evolink.gateway.message_store import SqlMessageStore
from evolink.store import CredsCipher, Database, Store
from evolink.wa.store_port import OutgoingMessage, StateChanges, StoredMessage


async def _instance(store: Store, name: str) -> str:
    row = await store.create_instance(instance_id=f"id-{name}", name=name, token=f"t-{name}", integration="WHATSAPP-BAILEYS",
                                      number=None, client_name="c", settings={}, webhook=None)
    return row.id


def _msg(mid: str) -> StoredMessage:
    return StoredMessage(mid, "1555@s.whatsapp.net", "1555:1@s.whatsapp.net", "9:1@lid", False, 17, "Al", b"\x0a\x02hi")


async def test_incoming_message_and_state_in_one_call_deduplicated_by_id(database: Database, store: Store) -> None:
    ms = SqlMessageStore(database, store.cipher, await _instance(store, "a"))
    changes = StateChanges(sessions={"9_1.1": b"rec1"}, identities={"9_1.1": b"k" * 32},
                           sender_keys={("g@g.us", "9_1.1"): b"sk"}, consumed_pre_keys={7})
    assert await ms.save_incoming(_msg("M1"), changes) is True
    assert await ms.load_session("9_1.1") == b"rec1" and await ms.load_identity("9_1.1") == b"k" * 32
    assert await ms.load_sender_key("g@g.us", "9_1.1") == b"sk" and await ms.is_pre_key_consumed(7)
    assert not await ms.is_pre_key_consumed(8)
    # The redelivery changes nothing, not even the state it carries.
    assert await ms.save_incoming(_msg("M1"), StateChanges(sessions={"9_1.1": b"rec2"})) is False
    assert await ms.load_session("9_1.1") == b"rec1"
    assert await ms.has_incoming("M1") and (await ms.load_incoming("M1")) == _msg("M1")
    await ms.apply(StateChanges(sessions={"9_1.1": None}, sender_keys={("g@g.us", "9_1.1"): None}))
    assert await ms.load_session("9_1.1") is None and await ms.load_sender_key("g@g.us", "9_1.1") is None


async def test_values_are_sealed_and_bound_to_their_row(database: Database, store: Store) -> None:
    iid = await _instance(store, "b")
    ms = SqlMessageStore(database, store.cipher, iid)
    await ms.save_incoming(_msg("M2"), StateChanges(sessions={"a.1": b"secret-record", "b.1": b"other"}))
    async with database.engine.connect() as conn:
        rows = dict((await conn.execute(text("SELECT address, record FROM signal_sessions"))).all())
        body = (await conn.execute(text("SELECT message FROM inbound_messages"))).scalar_one()
        assert all(v.startswith("enc:v1:") for v in [*rows.values(), body])
        await conn.execute(text("UPDATE signal_sessions SET record = :r WHERE address = 'a.1'"), {"r": rows["b.1"]})
        await conn.commit()
    from evolink.store.sealing import SealError
    with pytest.raises(SealError):
        await ms.load_session("a.1")
    plain = SqlMessageStore(database, CredsCipher(None), iid)
    with pytest.raises(SealError):
        await plain.load_session("b.1")


async def test_outgoing_devices_and_instance_isolation_and_cascade(database: Database, store: Store) -> None:
    a, b = await _instance(store, "c"), await _instance(store, "d")
    ma, mb = SqlMessageStore(database, store.cipher, a), SqlMessageStore(database, store.cipher, b)
    await ma.record_outgoing(OutgoingMessage("O1", "x@s.whatsapp.net", b"pb", 5), StateChanges(sessions={"x.1": b"r"}))
    assert await ma.load_outgoing("O1") == OutgoingMessage("O1", "x@s.whatsapp.net", b"pb", 5)
    assert await mb.load_outgoing("O1") is None and await mb.load_session("x.1") is None
    await ma.save_devices("x@s.whatsapp.net", ["x@s.whatsapp.net", "x:3@s.whatsapp.net"], 12.5)
    assert await ma.load_devices("x@s.whatsapp.net") == (["x@s.whatsapp.net", "x:3@s.whatsapp.net"], 12.5)
    assert await mb.save_incoming(_msg("M3"), StateChanges()) and await ma.save_incoming(_msg("M3"), StateChanges())
    await store.delete_instance(a)
    assert await ma.load_session("x.1") is None and not await ma.has_incoming("M3") and await mb.has_incoming("M3")
