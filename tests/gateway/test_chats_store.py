"""ChatStore (migration 0008): chats, contacts and groups on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from evolink.store import CredsCipher, Database, Store
from evolink.store.chats_repo import ChatStore, ChatTouch, ContactTouch


async def _instance(store: Store, name: str) -> str:
    iid = str(uuid.uuid4())
    await store.create_instance(instance_id=iid, name=name, token=f"T-{name}", integration="WHATSAPP-BAILEYS",
                                number=None, client_name="evolution", settings={}, webhook=None)
    return iid


async def test_messages_upsert_chats_and_contacts_once(database: Database) -> None:
    store = Store(database, CredsCipher("k"))
    chats = ChatStore(database, CredsCipher("k"))
    a, b = await _instance(store, "a"), await _instance(store, "b")
    rec = {"key": {"remoteJid": "1@s.whatsapp.net", "fromMe": False, "id": "X1"}, "message": {"conversation": "hi"}}
    first = await chats.record_message(a, ChatTouch("1@s.whatsapp.net", 100, 1, rec, "Bob"),
                                       ContactTouch("1@s.whatsapp.net", "Bob"))
    assert (first.chat_new, first.contact_new) == (True, True)
    older = {**rec, "key": {**rec["key"], "id": "X0"}}
    again = await chats.record_message(a, ChatTouch("1@s.whatsapp.net", 90, 1, older), ContactTouch("1@s.whatsapp.net", None))
    assert (again.chat_new, again.contact_new) == (False, False)
    await chats.record_message(b, ChatTouch("1@s.whatsapp.net", 100, 0, rec), None)  # other instance: its own row

    [view] = await chats.find_chats(a)
    assert view.remote_jid == "1@s.whatsapp.net" and view.name == "Bob" and view.unread_messages == 2
    assert view.last_message == rec and view.last_message_at == 100  # an older message does not replace it
    assert view.contact is not None and view.contact.push_name == "Bob"  # a None push name keeps the stored one
    [other] = await chats.find_chats(b)
    assert other.unread_messages == 0 and other.contact is None
    assert await chats.find_chats(a, ts_gte=101, ts_lte=200) == []
    assert len(await chats.find_chats(a, ts_gte=100, ts_lte=100)) == 1
    assert len(await chats.find_chats(a, ts_gte=-(2**31 - 1), ts_lte=2**31 - 1)) == 1  # no int32 overflow
    assert await chats.mark_chat_read(a, "1@s.whatsapp.net") and not await chats.mark_chat_read(a, "2@s.whatsapp.net")
    assert (await chats.find_chats(a))[0].unread_messages == 0

    [contact] = await chats.find_contacts(a, push_name="Bob")
    assert (await chats.find_contacts(a, contact_id=contact.id))[0].remote_jid == "1@s.whatsapp.net"
    assert await chats.find_contacts(a, remote_jid="9@s.whatsapp.net") == []
    assert await chats.contact_names(a, ["1@s.whatsapp.net", "9@s.whatsapp.net"]) == {"1@s.whatsapp.net": "Bob"}

    # The last message is sealed at rest: another key cannot read it, and that is no error.
    stranger = ChatStore(database, CredsCipher("other"))
    assert (await stranger.find_chats(a))[0].last_message is None

    await store.delete_instance(a)  # cascades
    assert await chats.find_chats(a) == [] and await chats.find_contacts(a) == []


async def test_paging_and_groups(database: Database) -> None:
    store = Store(database, CredsCipher("k"))
    chats = ChatStore(database, CredsCipher("k"))
    a = await _instance(store, "a")
    for n in range(5):
        await chats.record_message(a, ChatTouch(f"{n}@s.whatsapp.net", n, 0), ContactTouch(f"{n}@s.whatsapp.net", f"p{n}"))
    assert len(await chats.find_chats(a, take=2)) == 2 and len(await chats.find_chats(a, take=10, skip=3)) == 2
    assert [c.push_name for c in await chats.find_contacts(a, take=2, skip=2)] == ["p2", "p3"]

    new = await chats.save_groups(a, [("1@g.us", "one", {"id": "1@g.us", "subject": "one"})])
    assert new == ["1@g.us"]
    new = await chats.save_groups(a, [("1@g.us", "uno", {"id": "1@g.us", "subject": "uno"}),
                                      ("2@g.us", "two", {"id": "2@g.us", "subject": "two"})])
    assert new == ["2@g.us"]
    assert [g["subject"] for g in await chats.list_groups(a)] == ["uno", "two"]
    assert await chats.get_group(a, "2@g.us") == {"id": "2@g.us", "subject": "two"}
    assert await chats.get_group(a, "3@g.us") is None
