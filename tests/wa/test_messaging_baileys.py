"""Acceptance: an evolink engine and the real Baileys 7.0.0-rc14 exchange messages through the
sandbox (issue 9): each linked to its own sandbox phone, texts both ways including the first
pre-key message each way, 100 each way in order, and a group with a simulated phone where every
member reads every message."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from wa_helpers import PHONE, EngineFactory, Recorder, link_by_qr

from evolink.sandbox.server import Sandbox
from evolink.wa.engine import Engine
from evolink.wa.events import MessageEvent, OpenEvent, ReceiptEvent, ReceiptType, UndecryptableEvent

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "sandbox"))
from sandbox_baileys import BaileysDriver, available

pytestmark = [
    pytest.mark.baileys,
    pytest.mark.skipif(not available(), reason="node or the pinned Baileys peer is missing"),
]

ALICE, CAROL = "15550002001", "15550002003"  # Alice: Baileys' account; Carol: a phone only
Start = Callable[..., Awaitable[BaileysDriver]]


@pytest.fixture
async def drivers() -> AsyncIterator[Start]:
    started: list[BaileysDriver] = []

    async def start(**kwargs: Any) -> BaileysDriver:
        driver = await BaileysDriver.start(**kwargs)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        await driver.stop()


async def until(pred: Callable[[], bool], within: float = 20.0) -> None:
    """Bounded wait for a sandbox-side condition (no event to wait on)."""
    async def poll() -> None:
        while not pred():  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), within)


def text_of(ev: MessageEvent) -> str:
    return str(ev.message.conversation or ev.message.extendedTextMessage.text)


async def both(sb: Sandbox, make_engine: EngineFactory, drivers: Start, tmp_path: Path
               ) -> tuple[Engine, Recorder, BaileysDriver]:
    for phone in (ALICE, CAROL):
        sb.create_phone(phone)
    engine, rec = make_engine(sb, query_timeout=20.0)
    await link_by_qr(sb, engine, rec)
    drv = await drivers(url=sb.ws_url, root_key=sb.root_public_key, auth=tmp_path / "alice")
    qr = await drv.expect("qr")
    await sb.scan(ALICE, qr["qr"])
    await drv.expect("open", within=30)
    return engine, rec, drv


async def baileys_texts(drv: BaileysDriver, n: int, prefix: str, within: float = 20.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < n:
        event = await drv.expect("message", within=within)
        if event["text"].startswith(prefix):
            got.append(event)
    return got


async def test_texts_both_ways_first_prekey_then_hundred_each(sandbox: Sandbox, make_engine: EngineFactory,
                                                              drivers: Start, tmp_path: Path) -> None:
    engine, rec, drv = await both(sandbox, make_engine, drivers, tmp_path)
    alice = f"{ALICE}@s.whatsapp.net"
    # First message engine -> Baileys: a pkmsg to Alice's companion (and her phone).
    first = await engine.send_text(alice, "hello baileys")
    got = (await baileys_texts(drv, 1, "hello baileys"))[0]
    assert got["id"] == first.id and not got["fromMe"]
    assert got["remoteJid"].split("@")[0] in (PHONE, sandbox.get_phone(PHONE)["lid"].split("@")[0])
    # First message Baileys -> engine.
    await drv.command("send", to=f"{PHONE}@s.whatsapp.net", text="hello evolink", tag="b0")
    sent = await drv.expect("sent", tag="b0")
    ev = await rec.wait(MessageEvent, lambda e: text_of(e) == "hello evolink", within=20)
    assert ev.id == sent["id"] and not ev.from_me

    # 100 each way, in order, none lost. Engine sends are serialised by the engine itself; Baileys
    # is paced one send at a time (its own key-store race, see tests/sandbox/test_router_baileys.py).
    ids = [(await engine.send_text(alice, f"e-{i:03}")).id for i in range(100)]
    at_alice = await baileys_texts(drv, 100, "e-", within=30)
    assert [e["text"] for e in at_alice] == [f"e-{i:03}" for i in range(100)]
    assert [e["id"] for e in at_alice] == ids
    got_events: list[MessageEvent] = []
    for i in range(100):
        await drv.command("send", to=f"{PHONE}@s.whatsapp.net", text=f"b-{i:03}", tag=f"b-{i}")
        await drv.expect("sent", tag=f"b-{i}")
        got_events.append(await rec.wait(MessageEvent, lambda e: text_of(e).startswith("b-"), within=20))
    assert [text_of(e) for e in got_events] == [f"b-{i:03}" for i in range(100)]
    assert [e.id for e in got_events] == [e["id"] for e in drv.seen("sent") if e["tag"].startswith("b-")]
    assert not rec.of(UndecryptableEvent) and not drv.seen("undecryptable")

    # Read receipts: Alice reads the engine's messages; the engine reads hers.
    await drv.command("read", keys=[{"remoteJid": e["remoteJid"], "id": e["id"], "fromMe": False}
                                    for e in at_alice[:10]])
    read: set[str] = set()
    while not set(ids[:10]) <= read:
        r = await rec.wait(ReceiptEvent, lambda e: e.type is ReceiptType.READ, within=20)
        read |= set(r.ids)
    await engine.send_read_receipt(got_events[0].chat, [e.id for e in got_events[:10]])
    mine = {e.id for e in got_events[:10]}
    while not mine <= {e["id"] for e in drv.seen("status") if e["status"] == 4}:
        await drv.expect("status", within=20)
    # Every device acknowledged what it got: nothing left queued anywhere.
    await until(lambda: all(d["queued"] == 0 for p in (PHONE, ALICE) for d in sandbox.get_phone(p)["devices"]))


async def test_group_engine_baileys_and_phone_everyone_reads(sandbox: Sandbox, make_engine: EngineFactory,
                                                             drivers: Start, tmp_path: Path) -> None:
    engine, rec, drv = await both(sandbox, make_engine, drivers, tmp_path)
    group = sandbox.create_group("mixed", [PHONE, ALICE, CAROL])
    gjid = group["jid"]
    lid = {p: sandbox.get_phone(p)["lid"].split("@")[0] for p in (PHONE, ALICE, CAROL)}

    def user_of(jid: str) -> str:
        return jid.split("@")[0].split(":")[0]

    # The engine writes (SKDM over 1:1 pkmsgs, then skmsg); Baileys and Carol's phone decrypt.
    e_ids = [(await engine.send_text(gjid, f"ge-{i}")).id for i in range(3)]
    at_alice = await baileys_texts(drv, 3, "ge-")
    assert [e["text"] for e in at_alice] == ["ge-0", "ge-1", "ge-2"] and all(e["remoteJid"] == gjid for e in at_alice)
    await until(lambda: len([m for m in sandbox.phone_received(CAROL) if (m["text"] or "").startswith("ge-")]) == 3)
    # Baileys writes; the engine and Carol decrypt.
    b_ids = []
    for i in range(3):
        await drv.command("send", to=gjid, text=f"gb-{i}", tag=f"gb-{i}")
        b_ids.append((await drv.expect("sent", tag=f"gb-{i}"))["id"])
    at_engine = [await rec.wait(MessageEvent, lambda e: text_of(e).startswith("gb-"), within=20) for _ in range(3)]
    assert [e.id for e in at_engine] == b_ids and all(e.chat == gjid for e in at_engine)
    # Carol's phone writes; both clients decrypt.
    c_id = sandbox.phone_send(CAROL, gjid, "gc-0")["id"]
    ev_c = await rec.wait(MessageEvent, lambda e: e.id == c_id, within=20)
    assert text_of(ev_c) == "gc-0" and user_of(ev_c.sender) in (CAROL, lid[CAROL])
    await drv.expect("message", within=20, text="gc-0")
    await until(lambda: len([m for m in sandbox.phone_received(CAROL) if (m["text"] or "").startswith("gb-")]) == 3)
    assert all(m["error"] is None for m in sandbox.phone_received(CAROL))
    assert not rec.of(UndecryptableEvent) and not drv.seen("undecryptable")
    # The phone-side admin API shows the same: every member's phone decrypted every group message
    # (its own companion's as from_me copies; a phone never receives what it sent itself).
    everything = ["ge-0", "ge-1", "ge-2", "gb-0", "gb-1", "gb-2", "gc-0"]
    for phone, expected in ((PHONE, everything), (ALICE, everything), (CAROL, everything[:-1])):
        def at(p: str = phone) -> list[Any]:
            return [m for m in sandbox.phone_received(p) if m["chat"] == gjid]
        await until(lambda: len(at()) == len(expected))  # noqa: B023 - awaited within the iteration
        assert [m["text"] for m in at()] == expected
        assert [m["from_me"] for m in at()] == [m["text"][1] == {PHONE: "e", ALICE: "b", CAROL: "c"}[phone]
                                                for m in at()]
        assert all(m["error"] is None for m in sandbox.phone_received(phone))

    # Everyone reads every message of the others.
    await engine.send_read_receipt(gjid, b_ids, participant=at_engine[0].sender)
    await engine.send_read_receipt(gjid, [c_id], participant=ev_c.sender)
    by_id = {e["id"]: e for e in drv.seen("message") if e["remoteJid"] == gjid}
    await drv.command("read", keys=[{"remoteJid": gjid, "id": i, "participant": by_id[i]["participant"], "fromMe": False}
                                    for i in [*e_ids, c_id]])
    assert sandbox.phone_read(CAROL, [*e_ids, *b_ids]) == {"read": 6}
    # Each sender sees every other member read each of its messages.
    names = {ALICE: "alice", lid[ALICE]: "alice", CAROL: "carol", lid[CAROL]: "carol",
             PHONE: "engine", lid[PHONE]: "engine"}
    engine_readers: set[tuple[str, str]] = set()
    while not {(i, who) for i in e_ids for who in ("alice", "carol")} <= engine_readers:
        r = await rec.wait(ReceiptEvent, lambda e: e.type is ReceiptType.READ, within=20)
        engine_readers |= {(i, names.get(user_of(r.sender), "?")) for i in r.ids}

    def baileys_readers() -> set[tuple[str, str]]:
        return {(e["id"], names.get(user_of(e["userJid"]), "?")) for e in drv.seen("receipt") if e["readTimestamp"]}
    while not {(i, who) for i in b_ids for who in ("engine", "carol")} <= baileys_readers():
        await drv.expect("receipt", within=20)

    def carol_read_by() -> set[str]:
        return {names.get(user_of(m.get("participant") or m["from"]), "?") for m in sandbox.phone_messages(CAROL)
                if m["tag"] == "receipt" and m.get("type") == "read" and m["id"] == c_id}
    await until(lambda: {"engine", "alice"} <= carol_read_by())


async def test_lost_sessions_heal_through_retry_receipts_both_ways(sandbox: Sandbox, make_engine: EngineFactory,
                                                                   drivers: Start, tmp_path: Path) -> None:
    engine, rec, drv = await both(sandbox, make_engine, drivers, tmp_path)
    alice = f"{ALICE}@s.whatsapp.net"
    await engine.send_text(alice, "open e->b")
    await baileys_texts(drv, 1, "open e->b")
    await drv.command("send", to=f"{PHONE}@s.whatsapp.net", text="open b->e", tag="o")
    await rec.wait(MessageEvent, lambda e: text_of(e) == "open b->e", within=20)

    # The engine loses every Signal session: Baileys' next message (a plain msg) cannot decrypt.
    store: Any = engine.messaging.store
    store.sessions.clear()
    await drv.command("send", to=f"{PHONE}@s.whatsapp.net", text="after engine loss", tag="l1")
    lost = (await drv.expect("sent", tag="l1"))["id"]
    failed = await rec.wait(UndecryptableEvent, lambda e: e.id == lost, within=20)
    assert failed.retry_count == 1
    # Baileys answers the retry receipt with a fresh pre-key message; it decrypts.
    healed = await rec.wait(MessageEvent, lambda e: e.id == lost, within=20)
    assert text_of(healed) == "after engine loss"

    # Baileys loses its sessions with the engine's devices (the multi-file auth state on disk),
    # deleted while it is stopped so no write in flight brings them back.
    await drv.command("end")
    assert await drv.wait() == 0
    engine_users = {PHONE, sandbox.get_phone(PHONE)["lid"].split("@")[0]}
    gone = [f for f in (tmp_path / "alice").glob("session-*.json")
            if f.name.removeprefix("session-").split("_")[0].split(".")[0] in engine_users]
    assert gone
    for f in gone:
        f.unlink()
    drv = await drivers(url=sandbox.ws_url, root_key=sandbox.root_public_key, auth=tmp_path / "alice", mode="login")
    await drv.expect("open", within=30)
    sent = await engine.send_text(alice, "after baileys loss")
    got = (await baileys_texts(drv, 1, "after baileys loss", within=30))[0]
    assert got["id"] == sent.id
    # It took Baileys' retry receipt and the engine's resend (the event follows the resend).
    await rec.wait(ReceiptEvent, lambda e: e.type is ReceiptType.RETRY and sent.id in e.ids, within=20)

    # Both directions keep working on the new sessions.
    await engine.send_text(alice, "then e->b")
    await baileys_texts(drv, 1, "then e->b")
    await drv.command("send", to=f"{PHONE}@s.whatsapp.net", text="then b->e", tag="t")
    await rec.wait(MessageEvent, lambda e: text_of(e) == "then b->e", within=20)


async def test_reactions_contact_lookup_and_group_create_with_baileys(sandbox: Sandbox, make_engine: EngineFactory,
                                                                      drivers: Start, tmp_path: Path) -> None:
    from evolink.wa.contacts import on_whatsapp
    from evolink.wa.groups import create_group
    from evolink.wa.reactions import send_reaction

    engine, rec, drv = await both(sandbox, make_engine, drivers, tmp_path)
    [found] = await on_whatsapp(engine, [ALICE])
    assert found.exists and found.lid == sandbox.get_phone(ALICE)["lid"]
    alice = f"{ALICE}@s.whatsapp.net"
    await drv.command("send", to=f"{PHONE}@s.whatsapp.net", text="react to this", tag="r0")
    ev = await rec.wait(MessageEvent, lambda e: text_of(e) == "react to this", within=20)
    await send_reaction(engine, ev.chat, ev.id, "🎉")
    got = await drv.expect("reaction", within=20)
    assert got["targetId"] == ev.id and got["text"] == "🎉" and got["targetFromMe"] is True
    # Baileys reacts to the engine's message: a MessageEvent carrying reactionMessage.
    mine = await engine.send_text(alice, "react to mine")
    at_alice = (await baileys_texts(drv, 1, "react to mine"))[0]
    await drv.command("react", to=at_alice["remoteJid"], text="❤️", tag="rx",
                      key={"remoteJid": at_alice["remoteJid"], "id": mine.id, "fromMe": False})
    reaction = await rec.wait(MessageEvent, lambda e: e.message.HasField("reactionMessage"), within=20)
    assert reaction.message.reactionMessage.key.id == mine.id and reaction.message.reactionMessage.text == "❤️"

    # A group the engine creates: Baileys sees it and both write to it.
    info = await create_group(engine, "evolink made this", [alice, f"{CAROL}@s.whatsapp.net"])
    await drv.command("group", jid=info.id, tag="meta")
    meta = (await drv.expect("group", tag="meta"))["metadata"]
    assert meta["subject"] == "evolink made this" and len(meta["participants"]) == 3
    sent = await engine.send_text(info.id, "welcome")
    welcome = (await baileys_texts(drv, 1, "welcome"))[0]
    assert welcome["id"] == sent.id and welcome["remoteJid"] == info.id
    await drv.command("send", to=info.id, text="thanks", tag="th")
    back = await rec.wait(MessageEvent, lambda e: text_of(e) == "thanks", within=20)
    assert back.chat == info.id
    assert not rec.of(UndecryptableEvent) and not drv.seen("undecryptable")


async def test_lid_addressing_both_ways(sandbox: Sandbox, make_engine: EngineFactory, drivers: Start,
                                        tmp_path: Path) -> None:
    """Texts addressed by LID (first contact by LID, then PN and LID mixed) decrypt on both sides."""
    engine, rec, drv = await both(sandbox, make_engine, drivers, tmp_path)
    alice_lid, engine_lid = sandbox.get_phone(ALICE)["lid"], sandbox.get_phone(PHONE)["lid"]
    first = await engine.send_text(alice_lid, "by lid first")
    got = (await baileys_texts(drv, 1, "by lid first"))[0]
    assert got["id"] == first.id
    await drv.command("send", to=engine_lid, text="lid back", tag="l0")
    ev = await rec.wait(MessageEvent, lambda e: text_of(e) == "lid back", within=20)
    assert ev.sender_lid is not None and ev.sender_lid.split("@")[0].split(":")[0] == alice_lid.split("@")[0]
    # Mixed: PN then LID again, each way; one session per device whatever the namespace.
    for i, to in enumerate((f"{ALICE}@s.whatsapp.net", alice_lid)):
        sent = await engine.send_text(to, f"mixed-e{i}")
        assert (await baileys_texts(drv, 1, f"mixed-e{i}"))[0]["id"] == sent.id
    for i, to in enumerate((f"{PHONE}@s.whatsapp.net", engine_lid)):
        await drv.command("send", to=to, text=f"mixed-b{i}", tag=f"m{i}")
        await rec.wait(MessageEvent, lambda e, i=i: text_of(e) == f"mixed-b{i}", within=20)  # type: ignore[misc]
    assert not rec.of(UndecryptableEvent) and not drv.seen("undecryptable")
    # The phones' copies (deviceSentMessage) decrypted too.
    await until(lambda: {m["text"] for m in sandbox.phone_received(PHONE) if m["from_me"]} >= {
        "by lid first", "mixed-e0", "mixed-e1"})
    assert all(m["error"] is None for p in (PHONE, ALICE) for m in sandbox.phone_received(p))
    # Sessions live under the LID address only (Baileys 7's rule): none under Alice's PN.
    sessions = set(engine.messaging.store.sessions)  # type: ignore[attr-defined]
    assert not any(a.startswith(f"{ALICE}.") for a in sessions)
    assert any(a.startswith(f"{alice_lid.split('@')[0]}_1.") for a in sessions)


async def test_messages_sent_while_the_engine_is_offline_arrive_in_order_at_login(
        sandbox: Sandbox, make_engine: EngineFactory, drivers: Start, tmp_path: Path) -> None:
    from evolink.wa.creds import MemoryCredsStore
    from evolink.wa.memory_store import MemoryMessageStore

    for phone in (ALICE, CAROL):
        sandbox.create_phone(phone)
    creds, store = MemoryCredsStore(), MemoryMessageStore()
    engine, rec = make_engine(sandbox, creds, query_timeout=20.0, message_store=store)
    await link_by_qr(sandbox, engine, rec)
    drv = await drivers(url=sandbox.ws_url, root_key=sandbox.root_public_key, auth=tmp_path / "alice")
    await sandbox.scan(ALICE, (await drv.expect("qr"))["qr"])
    await drv.expect("open", within=30)
    await drv.command("send", to=f"{PHONE}@s.whatsapp.net", text="online", tag="on")
    await rec.wait(MessageEvent, lambda e: text_of(e) == "online", within=20)
    await engine.close()
    ids = []
    for i in range(5):
        await drv.command("send", to=f"{PHONE}@s.whatsapp.net", text=f"away-{i}", tag=f"a{i}")
        ids.append((await drv.expect("sent", tag=f"a{i}"))["id"])
    assert [d["queued"] for d in sandbox.get_phone(PHONE)["devices"]] == [5]
    again, rec2 = make_engine(sandbox, creds, query_timeout=20.0, message_store=store)
    await again.start()
    got = [await rec2.wait(MessageEvent, lambda e: text_of(e).startswith("away-"), within=20) for _ in range(5)]
    assert [e.id for e in got] == ids and all(e.offline for e in got)
    await until(lambda: [d["queued"] for d in sandbox.get_phone(PHONE)["devices"]] == [0])
    # Baileys sees them delivered.
    while not set(ids) <= {e["id"] for e in drv.seen("status") if e["status"] >= 3}:
        await drv.expect("status", within=20)


async def test_sql_store_engine_with_baileys_across_a_restart(sandbox: Sandbox, make_engine: EngineFactory,
                                                              drivers: Start, tmp_path: Path) -> None:
    """The gateway's stores (SqlCredsStore + SqlMessageStore on SQLite, sealed) under real traffic:
    texts and a group both ways, then a restart from the database alone, then more of both."""
    from evolink.gateway.creds import SqlCredsStore
    from evolink.gateway.message_store import SqlMessageStore
    from evolink.store import CredsCipher, Store
    from evolink.store.db import open_database

    db = open_database(f"sqlite+aiosqlite:///{tmp_path / 'gw.db'}")
    await db.migrate()
    store = Store(db, CredsCipher("a secret"))
    await store.create_instance(instance_id="i1", name="i1", token="t", integration="WHATSAPP-BAILEYS", number=None,
                                client_name="c", settings={}, webhook=None)
    try:
        for phone in (ALICE, CAROL):
            sandbox.create_phone(phone)

        def sql_engine() -> tuple[Engine, Recorder]:
            return make_engine(sandbox, SqlCredsStore(store, "i1"), query_timeout=20.0,
                               message_store=SqlMessageStore(db, store.cipher, "i1"))

        engine, rec = sql_engine()
        await link_by_qr(sandbox, engine, rec)
        drv = await drivers(url=sandbox.ws_url, root_key=sandbox.root_public_key, auth=tmp_path / "alice")
        await sandbox.scan(ALICE, (await drv.expect("qr"))["qr"])
        await drv.expect("open", within=30)
        group = sandbox.create_group("sql", [PHONE, ALICE, CAROL])["jid"]
        alice = f"{ALICE}@s.whatsapp.net"

        async def round_trip(eng: Engine, r: Recorder, tag: str) -> None:
            for to in (alice, group):
                sent = await eng.send_text(to, f"{tag}-e-{to}")
                assert (await baileys_texts(drv, 1, f"{tag}-e-{to}"))[0]["id"] == sent.id
                await drv.command("send", to=f"{PHONE}@s.whatsapp.net" if to == alice else group,
                                  text=f"{tag}-b-{to}", tag=f"{tag}{to}")
                await r.wait(MessageEvent, lambda e, t=f"{tag}-b-{to}": text_of(e) == t, within=20)  # type: ignore[misc]
            assert not r.of(UndecryptableEvent)

        await round_trip(engine, rec, "before")
        await engine.close()
        again, rec2 = sql_engine()
        await again.start()
        await rec2.wait(OpenEvent, within=20)
        await round_trip(again, rec2, "after")
        assert not drv.seen("undecryptable")
        stored = await SqlMessageStore(db, store.cipher, "i1").list_incoming()
        assert len(stored) == len(set(stored)) >= 4
        await again.close()
    finally:
        await db.dispose()
