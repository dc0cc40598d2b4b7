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
from evolink.wa.events import MessageEvent, ReceiptEvent, ReceiptType, UndecryptableEvent

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
