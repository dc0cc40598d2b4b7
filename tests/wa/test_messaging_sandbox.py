"""Acceptance: a linked engine exchanges end-to-end encrypted texts with a simulated sandbox phone
(issue 9, engine ↔ sandbox): pre-key message each way, follow-ups, read receipts, 100 each way."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from wa_helpers import PHONE, EngineFactory, Recorder, link_by_qr

from evolink.sandbox.server import Sandbox
from evolink.wa.engine import Engine
from evolink.wa.events import MessageEvent, OpenEvent, ReceiptEvent, ReceiptType, UndecryptableEvent

BOB = "15550002222"


async def until(pred: Callable[[], bool], within: float = 10.0) -> None:
    """Bounded wait for a sandbox-side condition (the sandbox state has no event for it)."""
    async def poll() -> None:
        while not pred():  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), within)


def texts_at(sb: Sandbox, phone: str, prefix: str) -> list[dict[str, Any]]:
    return [m for m in sb.phone_received(phone) if (m["text"] or "").startswith(prefix)]


async def linked(sb: Sandbox, make_engine: EngineFactory) -> tuple[Engine, Recorder]:
    sb.create_phone(BOB)
    engine, rec = make_engine(sb)
    await link_by_qr(sb, engine, rec)
    return engine, rec


def text_of(ev: MessageEvent) -> str:
    return str(ev.message.conversation or ev.message.extendedTextMessage.text)


async def test_first_message_each_way_then_follow_ups(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    engine, rec = await linked(sandbox, make_engine)
    bob_jid = f"{BOB}@s.whatsapp.net"
    sent = await engine.send_text(bob_jid, "hello bob")
    assert sent.devices >= 2  # Bob's phone and our own phone (deviceSentMessage copy)
    await until(lambda: bool(texts_at(sandbox, BOB, "hello bob")))
    got = texts_at(sandbox, BOB, "hello bob")[0]
    assert got["id"] == sent.id and got["error"] is None and not got["from_me"]
    inbox = [m for m in sandbox.phone_messages(BOB) if m["id"] == sent.id]
    assert [e["type"] for e in inbox[0]["enc"]] == ["pkmsg"]
    # Our own phone got the deviceSentMessage copy and unwrapped it.
    await until(lambda: any(m["id"] == sent.id and m["from_me"] for m in sandbox.phone_received(PHONE)))
    # Bob's phone receipted delivery: the engine hears it.
    delivered = await rec.wait(ReceiptEvent, lambda e: sent.id in e.ids and e.type is ReceiptType.DELIVERED)
    assert delivered.chat in (bob_jid, sandbox.get_phone(BOB)["lid"])

    # The phone answers: a pre-key message to the engine's device (and to our phone).
    res = sandbox.phone_send(BOB, f"{PHONE}@s.whatsapp.net", "hello engine")
    ev = await rec.wait(MessageEvent, lambda e: text_of(e) == "hello engine")
    assert ev.id == res["id"] and not ev.from_me and ev.chat in (f"{BOB}@s.whatsapp.net", sandbox.get_phone(BOB)["lid"])
    # The engine receipted it: nothing is left queued for its device.
    await until(lambda: all(d["queued"] == 0 for d in sandbox.get_phone(PHONE)["devices"]))

    # Follow-ups on the established sessions (msg, not pkmsg) in both directions.
    again = await engine.send_text(bob_jid, "second")
    await until(lambda: bool(texts_at(sandbox, BOB, "second")))
    assert [e["type"] for e in next(m for m in sandbox.phone_messages(BOB) if m["id"] == again.id)["enc"]] == ["msg"]
    sandbox.phone_send(BOB, f"{PHONE}@s.whatsapp.net", "second back")
    await rec.wait(MessageEvent, lambda e: text_of(e) == "second back")
    assert not rec.of(UndecryptableEvent)
    assert all(m["error"] is None for m in sandbox.phone_received(BOB))


async def test_read_receipts_both_ways(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    engine, rec = await linked(sandbox, make_engine)
    sent = await engine.send_text(f"{BOB}@s.whatsapp.net", "read me")
    await until(lambda: bool(texts_at(sandbox, BOB, "read me")))
    assert sandbox.phone_read(BOB, [sent.id]) == {"read": 1}
    read = await rec.wait(ReceiptEvent, lambda e: sent.id in e.ids and e.type is ReceiptType.READ)
    assert read.timestamp is not None

    res = sandbox.phone_send(BOB, f"{PHONE}@s.whatsapp.net", "read this")
    ev = await rec.wait(MessageEvent, lambda e: e.id == res["id"])
    await engine.send_read_receipt(ev.chat, [ev.id])
    # The phone's inbox shows the engine's read receipt for its message.
    await until(lambda: any(m["tag"] == "receipt" and m.get("type") == "read" and m["id"] == ev.id
                            for m in sandbox.phone_messages(BOB)))


async def test_hundred_each_way_in_order_none_lost(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    engine, rec = await linked(sandbox, make_engine)
    bob_jid = f"{BOB}@s.whatsapp.net"
    ids = [(await engine.send_text(bob_jid, f"e-{i:03}")).id for i in range(100)]
    await until(lambda: len(texts_at(sandbox, BOB, "e-")) == 100, within=30)
    at_bob = texts_at(sandbox, BOB, "e-")
    assert [m["text"] for m in at_bob] == [f"e-{i:03}" for i in range(100)]
    assert [m["id"] for m in at_bob] == ids

    sent = [sandbox.phone_send(BOB, f"{PHONE}@s.whatsapp.net", f"p-{i:03}")["id"] for i in range(100)]
    got = [await rec.wait(MessageEvent, lambda e: text_of(e).startswith("p-"), within=30) for _ in range(100)]
    assert [text_of(e) for e in got] == [f"p-{i:03}" for i in range(100)]
    assert [e.id for e in got] == sent
    assert not rec.of(UndecryptableEvent)
    await until(lambda: all(d["queued"] == 0 for d in sandbox.get_phone(PHONE)["devices"]))


async def test_group_with_two_phones(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    carol = "15550003333"
    engine, rec = await linked(sandbox, make_engine)
    sandbox.create_phone(carol)
    group = sandbox.create_group("trio", [PHONE, BOB, carol])
    first = await engine.send_text(group["jid"], "g-0")
    second = await engine.send_text(group["jid"], "g-1")
    for phone in (BOB, carol):
        await until(lambda p=phone: len(texts_at(sandbox, p, "g-")) == 2)  # type: ignore[misc]
        got = texts_at(sandbox, phone, "g-")
        assert [m["text"] for m in got] == ["g-0", "g-1"] and all(m["chat"] == group["jid"] for m in got)
        assert all(m["error"] is None for m in sandbox.phone_received(phone))
    # The sender key went out once per device (with the first message), then only the skmsg.
    inbox = [m for m in sandbox.phone_messages(BOB) if m["tag"] == "message"]
    assert [e["type"] for e in inbox[0]["enc"]] == ["pkmsg", "skmsg"]
    assert [e["type"] for e in inbox[1]["enc"]] == ["skmsg"]

    res = sandbox.phone_send(carol, group["jid"], "g-from-carol")
    ev = await rec.wait(MessageEvent, lambda e: text_of(e) == "g-from-carol")
    assert ev.id == res["id"] and ev.chat == group["jid"]
    assert ev.sender.split("@")[0].split(":")[0] in (carol, sandbox.get_phone(carol)["lid"].split("@")[0])

    # Every member reads every message.
    for phone in (BOB, carol):
        assert sandbox.phone_read(phone, [first.id, second.id]) == {"read": 2}
    readers: set[tuple[str, str]] = set()
    while len(readers) < 4:
        r = await rec.wait(ReceiptEvent, lambda e: e.type is ReceiptType.READ)
        readers |= {(i, r.sender.split("@")[0].split(":")[0]) for i in r.ids}
    await engine.send_read_receipt(group["jid"], [ev.id], participant=ev.sender)
    await until(lambda: any(m["tag"] == "receipt" and m.get("type") == "read" and m["id"] == ev.id
                            for m in sandbox.phone_messages(carol)))
    assert not rec.of(UndecryptableEvent)


async def test_crossing_first_messages_then_both_ways_at_once(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    """Both sides open a session at the same moment (two pkmsgs cross), then 50 each way interleaved."""
    engine, rec = await linked(sandbox, make_engine)
    bob_jid, me = f"{BOB}@s.whatsapp.net", f"{PHONE}@s.whatsapp.net"
    phone_first = sandbox.phone_send(BOB, me, "x-phone-first")["id"]
    engine_first = await engine.send_text(bob_jid, "x-engine-first")
    await rec.wait(MessageEvent, lambda e: e.id == phone_first)
    await until(lambda: any(m["id"] == engine_first.id for m in sandbox.phone_received(BOB)))

    async def engine_side() -> list[str]:
        return [(await engine.send_text(bob_jid, f"xe-{i:02}")).id for i in range(50)]

    async def phone_side() -> list[str]:
        out = []
        for i in range(50):
            out.append(sandbox.phone_send(BOB, me, f"xp-{i:02}")["id"])
            await asyncio.sleep(0)  # let the engine's sends interleave with the phone's
        return out

    e_ids, p_ids = await asyncio.gather(engine_side(), phone_side())
    got = [await rec.wait(MessageEvent, lambda e: text_of(e).startswith("xp-"), within=20) for _ in range(50)]
    assert [e.id for e in got] == p_ids
    await until(lambda: len(texts_at(sandbox, BOB, "xe-")) == 50)
    assert [m["id"] for m in texts_at(sandbox, BOB, "xe-")] == e_ids
    assert not rec.of(UndecryptableEvent)
    assert all(m["error"] is None for m in sandbox.phone_received(BOB))


async def test_low_prekey_notification_refills_and_the_new_keys_work(sandbox: Sandbox,
                                                                     make_engine: EngineFactory) -> None:
    """The server runs low on our one-time pre-keys: its encrypt notification makes the engine upload
    a batch, and a new contact's first message decrypts with one of the new keys."""
    engine, rec = await linked(sandbox, make_engine)
    device = sandbox.get_phone(PHONE)["devices"][0]["device"]
    while sandbox.get_phone(PHONE)["devices"][0]["prekeys_left"] > 5:
        sandbox.routing.pop_prekey(PHONE, device)  # others' sessions took them (no notification yet)
    creds = engine.creds
    assert creds is not None
    before = creds.next_pre_key_id
    # The phone's first message to us takes a key and leaves 4: the server notifies, we refill.
    first = sandbox.phone_send(BOB, f"{PHONE}@s.whatsapp.net", "you are running low")["id"]
    await rec.wait(MessageEvent, lambda e: e.id == first)
    await until(lambda: sandbox.get_phone(PHONE)["devices"][0]["prekeys_left"] >= 50)
    assert creds.next_pre_key_id == before + 50
    # The consumed key left creds (they do not grow by a batch per refill; persisted with the
    # next creds save).
    consumed: set[int] = engine.messaging.store.consumed_pre_keys  # type: ignore[attr-defined]
    assert len(consumed) == 1 and not consumed & set(creds.pre_keys) and len(creds.pre_keys) == 50 - 1 + 50
    # Drain the old keys: the next contacts' pkmsgs use keys from the new batch, and decrypt.
    while sandbox.get_phone(PHONE)["devices"][0]["prekeys_left"] > 50:
        sandbox.routing.pop_prekey(PHONE, device)
    carol = "15550003333"
    sandbox.create_phone(carol)
    mid = sandbox.phone_send(carol, f"{PHONE}@s.whatsapp.net", "new key")["id"]
    ev = await rec.wait(MessageEvent, lambda e: e.id == mid)
    assert text_of(ev) == "new key" and not rec.of(UndecryptableEvent)
    assert min(consumed) < before <= max(consumed) and not consumed & set(creds.pre_keys)


async def test_engine_to_engine_and_the_peer_relinks(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    """Two evolink engines on two accounts; the peer's companion is replaced by a new one (new
    identity, new device id): the devices notification drops our cached list, so the next text
    reaches the new companion (a new session), and the old one gets nothing."""
    alice = "15550004444"
    engine, rec = await linked(sandbox, make_engine)
    sandbox.create_phone(alice)
    peer, prec = make_engine(sandbox)
    await link_by_qr(sandbox, peer, prec, alice)
    first = await engine.send_text(f"{alice}@s.whatsapp.net", "hi other engine")
    assert (await prec.wait(MessageEvent, lambda e: e.id == first.id)).chat.split("@")[0] in (
        PHONE, sandbox.get_phone(PHONE)["lid"].split("@")[0])
    back = await peer.send_text(f"{PHONE}@s.whatsapp.net", "hi back")
    await rec.wait(MessageEvent, lambda e: e.id == back.id)

    await peer.logout()
    new_peer, nrec = make_engine(sandbox)
    await link_by_qr(sandbox, new_peer, nrec, alice)
    assert [d["device"] for d in sandbox.get_phone(alice)["devices"]] != []
    again = await engine.send_text(f"{alice}@s.whatsapp.net", "to the new companion")
    got = await nrec.wait(MessageEvent, lambda e: e.id == again.id)
    assert text_of(got) == "to the new companion"
    reply = await new_peer.send_text(f"{PHONE}@s.whatsapp.net", "new companion here")
    await rec.wait(MessageEvent, lambda e: e.id == reply.id)
    assert not rec.of(UndecryptableEvent) and not nrec.of(UndecryptableEvent)

    # A missed devices notification (we were offline when it went out) leaves a stale list: the
    # server refuses the stanza, and the engine sends once more from a fresh usync.
    old_device = f"{alice}:{int(prec.of(OpenEvent)[0].jid.split(':')[1].split('@')[0])}@s.whatsapp.net"
    engine.messaging.cache_devices(f"{alice}@s.whatsapp.net", [f"{alice}@s.whatsapp.net", old_device])
    stale = await engine.send_text(f"{alice}@s.whatsapp.net", "despite a stale list")
    assert text_of(await nrec.wait(MessageEvent, lambda e: e.id == stale.id)) == "despite a stale list"
    # The same in a group: the refused stanza carried our sender key to devices that never got it,
    # so the second attempt distributes it to every member again; all decrypt the first message.
    group = sandbox.create_group("relinks", [PHONE, BOB, alice])["jid"]
    alice_lid = sandbox.get_phone(alice)["lid"]
    old_lid_device = f"{alice_lid.split('@')[0]}:{old_device.split(':')[1].split('@')[0]}@lid"
    engine.messaging.cache_devices(alice_lid, [alice_lid, old_lid_device])  # a LID-addressed group
    g = await engine.send_text(group, "group despite a stale list")
    await nrec.wait(MessageEvent, lambda e: e.id == g.id)
    assert not nrec.of(UndecryptableEvent)
    await until(lambda: any(m["id"] == g.id for m in sandbox.phone_received(BOB)))
    assert [m["error"] for m in sandbox.phone_received(BOB) if m["id"] == g.id] == [None]


async def test_receiving_is_not_held_up_by_a_send_waiting_on_the_network(sandbox: Sandbox, make_engine: EngineFactory,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A group send waiting for its w:g2 metadata holds no lock: a message arriving meanwhile is
    decrypted and stored at once."""
    from evolink.wa import message_send

    engine, rec = await linked(sandbox, make_engine)
    group = sandbox.create_group("slow", [PHONE, BOB])["jid"]
    entered, gate = asyncio.Event(), asyncio.Event()
    real = message_send.group_participants

    async def slow(conn: Any, g: str, m: Any) -> tuple[list[str], str]:
        entered.set()
        await gate.wait()
        return await real(conn, g, m)

    monkeypatch.setattr(message_send, "group_participants", slow)
    sending = asyncio.create_task(engine.send_text(group, "after the wait"))
    await asyncio.wait_for(entered.wait(), 5)
    res = sandbox.phone_send(BOB, f"{PHONE}@s.whatsapp.net", "while the send waits")
    await rec.wait(MessageEvent, lambda e: e.id == res["id"])
    gate.set()
    sent = await asyncio.wait_for(sending, 10)
    await until(lambda: any(m["id"] == sent.id and m["error"] is None for m in sandbox.phone_received(BOB)))
