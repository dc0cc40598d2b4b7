"""gateway/chats.py: a message record → chat/contact changes (row by row), events, response shapes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from evolink.gateway.chats import ChatBook, chat_json, clean_last_message, contact_json, touches
from evolink.gateway.webhooks import InstanceRef
from evolink.store import CredsCipher, Database, Store
from evolink.store.chats_repo import ChatStore, ChatTouch, ContactTouch


def rec(remote: str, *, from_me: bool = False, push: str | None = "Bob", ts: Any = 100,
        participant: str | None = None) -> dict[str, Any]:
    key: dict[str, Any] = {"remoteJid": remote, "fromMe": from_me, "id": "3A1"}
    if participant:
        key["participant"] = participant
    return {"key": key, "pushName": push, "message": {"conversation": "hi"}, "messageType": "conversation",
            "messageTimestamp": ts, "status": "DELIVERY_ACK", "source": "ios"}


@pytest.mark.parametrize(("record", "chat", "contact"), [
    # incoming 1:1: unread +1, the peer's push name names chat and contact
    (rec("1@s.whatsapp.net"), ("1@s.whatsapp.net", 100, 1, "Bob"), ("1@s.whatsapp.net", "Bob")),
    # our own message (API send or another device): no unread, contact named "" (Evolution)
    (rec("1@s.whatsapp.net", from_me=True, push="Você"), ("1@s.whatsapp.net", 100, 0, None), ("1@s.whatsapp.net", "")),
    # incoming group message: the group's chat and contact, never renamed after the sender
    (rec("9@g.us", participant="1@s.whatsapp.net"), ("9@g.us", 100, 1, None), ("9@g.us", "")),
    # a LID chat is kept as given
    (rec("5@lid", push=None), ("5@lid", 100, 1, None), ("5@lid", None)),
    # a bad timestamp counts as 0, never an error
    (rec("1@s.whatsapp.net", ts="soon"), ("1@s.whatsapp.net", 0, 1, "Bob"), ("1@s.whatsapp.net", "Bob")),
    (rec("1@s.whatsapp.net", ts=True), ("1@s.whatsapp.net", 0, 1, "Bob"), ("1@s.whatsapp.net", "Bob")),
    (rec("1@s.whatsapp.net", ts=2**40), ("1@s.whatsapp.net", 0, 1, "Bob"), ("1@s.whatsapp.net", "Bob")),
])
def test_touches(record: dict[str, Any], chat: tuple[Any, ...], contact: tuple[Any, ...]) -> None:
    t = touches(record)
    assert t is not None
    c, k = t
    assert (c.remote_jid, c.timestamp, c.unread_increment, c.name) == chat and c.last_message == record
    assert (k.remote_jid, k.push_name) == contact


@pytest.mark.parametrize("record", [
    rec("status@broadcast"), rec("123@broadcast"), rec("1@newsletter"), {"key": "x"}, {},
    {"key": {"remoteJid": 5}}, {"key": {"remoteJid": "nojid"}},
])
def test_touches_nothing(record: dict[str, Any]) -> None:
    assert touches(record) is None


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def publish(self, ref: InstanceRef, event: str, data: Any) -> int:
        self.events.append((event, data))
        return 1


async def test_book_publishes_upsert_then_update(database: Database) -> None:
    store = Store(database, CredsCipher("k"))
    iid = str(uuid.uuid4())
    await store.create_instance(instance_id=iid, name="a", token="T", integration="WHATSAPP-BAILEYS", number=None,
                                client_name="evolution", settings={}, webhook=None)
    pub = Published()
    book = ChatBook(ChatStore(database, CredsCipher("k")), pub)  # type: ignore[arg-type]
    ref = InstanceRef("a", iid, "T")
    await book.observe(ref, rec("1@s.whatsapp.net"))
    await book.observe(ref, rec("1@s.whatsapp.net", ts=101))
    await book.observe(ref, rec("status@broadcast"))  # nothing
    assert pub.events == [
        ("contacts.upsert", {"remoteJid": "1@s.whatsapp.net", "pushName": "Bob", "profilePicUrl": None,
                             "instanceId": iid}),
        ("chats.upsert", [{"remoteJid": "1@s.whatsapp.net", "instanceId": iid, "name": "Bob", "unreadMessages": 1}]),
        ("contacts.update", {"remoteJid": "1@s.whatsapp.net", "pushName": "Bob", "profilePicUrl": None,
                             "instanceId": iid}),
        ("chats.update", [{"remoteJid": "1@s.whatsapp.net", "instanceId": iid}]),
    ]
    await book.observe_update(ref, {"keyId": "3A1", "remoteJid": "2@s.whatsapp.net", "status": "READ"})  # no chat
    assert len(pub.events) == 4
    [view] = await book.chats.find_chats(iid)
    assert view.unread_messages == 2
    await book.observe_update(ref, {"keyId": "3A1", "remoteJid": "1@s.whatsapp.net", "status": "READ"})
    assert pub.events[-1] == ("chats.upsert", [{"remoteJid": "1@s.whatsapp.net", "instanceId": iid,
                                                "unreadMessages": 0}])
    await book.observe(ref, rec("1@s.whatsapp.net", ts=101))
    [view] = await book.chats.find_chats(iid)
    now = datetime.now(UTC)
    out = chat_json(view, iid, now)
    assert out["remoteJid"] == "1@s.whatsapp.net" and out["pushName"] == "Bob" and out["unreadCount"] == 1
    assert out["isSaved"] is True and out["windowActive"] is True and out["updatedAt"] == "1970-01-01T00:01:41.000Z"
    assert out["lastMessage"]["messageTimestamp"] == 101 and out["lastMessage"]["pushName"] == "Bob"
    assert out["lastMessage"]["instanceId"] == iid and out["lastMessage"]["sessionId"] is None
    assert chat_json(view, iid, now + timedelta(days=2))["windowActive"] is False
    [contact] = await book.chats.find_contacts(iid)
    assert contact_json(contact) | {"id": "", "createdAt": "", "updatedAt": ""} == {
        "id": "", "remoteJid": "1@s.whatsapp.net", "pushName": "Bob", "profilePicUrl": None, "createdAt": "",
        "updatedAt": "", "instanceId": iid, "isGroup": False, "isSaved": True, "type": "contact"}
    await book.chats.record_message(iid, ChatTouch("9@g.us", 5, 1), ContactTouch("9@g.us", ""))
    group_contact = next(c for c in await book.chats.find_contacts(iid) if c.remote_jid == "9@g.us")
    assert contact_json(group_contact)["type"] == "group" and contact_json(group_contact)["isSaved"] is False


def test_last_message_cleaned_like_evolution() -> None:
    record = {"message": {"base64": "AAAA", "imageMessage": {"caption": "c", "url": "u", "mediaKey": "k"},
                          "documentMessage": {"caption": "d", "name": "n.pdf", "url": "u"},
                          "audioMessage": {"seconds": 3, "url": "u"}, "stickerMessage": {"url": "u"}}}
    assert clean_last_message(record)["message"] == {
        "imageMessage": {"caption": "c"}, "documentMessage": {"caption": "d", "name": "n.pdf"},
        "audioMessage": {"seconds": 3}, "stickerMessage": {}}
    assert record["message"]["base64"] == "AAAA"  # the stored record is not modified


async def test_group_chat_named_after_the_cached_group(database: Database) -> None:
    store = Store(database, CredsCipher("k"))
    iid = str(uuid.uuid4())
    await store.create_instance(instance_id=iid, name="a", token="T", integration="WHATSAPP-BAILEYS", number=None,
                                client_name="evolution", settings={}, webhook=None)
    pub = Published()
    book = ChatBook(ChatStore(database, CredsCipher("k")), pub)  # type: ignore[arg-type]
    await book.chats.save_groups(iid, [("9@g.us", "Team", {"id": "9@g.us", "subject": "Team"})])
    await book.observe(InstanceRef("a", iid, "T"), rec("9@g.us", participant="1@s.whatsapp.net"))
    assert pub.events[1] == ("chats.upsert", [{"remoteJid": "9@g.us", "instanceId": iid, "name": "Team",
                                               "unreadMessages": 1}])
    [view] = await book.chats.find_chats(iid)
    assert chat_json(view, iid, datetime.now(UTC))["pushName"] == "Team"


class FakeRuntime:
    def __init__(self, store: Store, iid: str, pub: Published) -> None:
        self.store, self.instance_id, self.publisher = store, iid, pub
        self.ref = InstanceRef("a", iid, "T")


async def test_group_events_announce_once_with_author_unless_groups_ignored(database: Database) -> None:
    from evolink.gateway.groups import GroupEvents
    from evolink.wa.events import GroupsUpsertEvent, OpenEvent
    from evolink.wa.group_meta import GroupMetadata, GroupParticipant

    store = Store(database, CredsCipher("k"))
    iid = str(uuid.uuid4())
    await store.create_instance(instance_id=iid, name="a", token="T", integration="WHATSAPP-BAILEYS", number=None,
                                client_name="evolution", settings={"groups_ignore": True}, webhook=None)
    pub = Published()
    hook = GroupEvents(ChatStore(database, CredsCipher("k")))
    rt = FakeRuntime(store, iid, pub)
    g1 = GroupMetadata("1@g.us", "One", "lid", participants=(GroupParticipant("9@lid", "1@s.whatsapp.net"),))
    await hook.on_event(rt, GroupsUpsertEvent((g1,), "9@lid"))  # type: ignore[arg-type]
    assert pub.events == []  # groupsIgnore
    await store.upsert_setting(iid, {"groups_ignore": False})
    await hook.on_event(rt, GroupsUpsertEvent((g1,), "9@lid"))  # type: ignore[arg-type]
    await hook.on_event(rt, GroupsUpsertEvent((g1,), "9@lid"))  # type: ignore[arg-type]  # seen: once only
    await hook.on_event(rt, OpenEvent("1@s.whatsapp.net", None, "me", False))  # type: ignore[arg-type]
    assert len(pub.events) == 1
    event, data = pub.events[0]
    assert event == "groups.upsert" and data[0]["id"] == "1@g.us" and data[0]["author"] == "9@lid"
    assert data[0]["participants"] == [{"id": "9@lid", "phoneNumber": "1@s.whatsapp.net", "admin": None}]
