"""Acceptance: two unmodified Baileys 7.0.0-rc14 sockets exchange messages through the sandbox router.

Each socket is linked (by QR) to its own sandbox phone; nothing of evolink's engine is involved,
so this proves the router (usync, key bundles, fan-out, acks, receipts, offline queue, groups)
against the reference client alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sandbox_baileys import BaileysDriver, available

from evolink.sandbox.server import Sandbox

pytestmark = [
    pytest.mark.baileys,
    pytest.mark.skipif(not available(), reason="node or the pinned Baileys peer is missing"),
]

ALICE, BOB, CAROL = "15550002001", "15550002002", "15550002003"
Start = Callable[..., Awaitable[BaileysDriver]]


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox.start() as sandbox:
        for phone in (ALICE, BOB, CAROL):
            sandbox.create_phone(phone)
        yield sandbox


@pytest.fixture
async def http(sb: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sb.admin_url, timeout=30) as client:
        yield client


async def _linked(sb: Sandbox, http: httpx.AsyncClient, drivers: Start, auth: Path, phone: str,
                  **kw: Any) -> BaileysDriver:
    drv = await drivers(url=sb.ws_url, root_key=sb.root_public_key, auth=auth, **kw)
    qr = await drv.expect("qr")
    res = await http.post(f"/admin/phones/{phone}/scan", json={"qr": qr["qr"]})
    assert res.status_code == 200, res.text
    await drv.expect("open", within=30)
    return drv


async def _pair(sb: Sandbox, http: httpx.AsyncClient, drivers: Start, tmp_path: Path) -> tuple[BaileysDriver, BaileysDriver]:
    a = await _linked(sb, http, drivers, tmp_path / "a", ALICE)
    b = await _linked(sb, http, drivers, tmp_path / "b", BOB)
    return a, b


async def test_first_message_each_way(sb: Sandbox, http: httpx.AsyncClient, drivers: Start, tmp_path: Path) -> None:
    a, b = await _pair(sb, http, drivers, tmp_path)
    await a.command("send", to=f"{BOB}@s.whatsapp.net", text="hello bob", tag="a1")
    sent = await a.expect("sent", tag="a1")
    got = await b.expect("message", within=20, text="hello bob")
    assert got["id"] == sent["id"] and got["fromMe"] is False
    await b.command("send", to=f"{ALICE}@s.whatsapp.net", text="hello alice", tag="b1")
    sent = await b.expect("sent", tag="b1")
    got = await a.expect("message", within=20, text="hello alice")
    assert got["id"] == sent["id"]


async def _until(pred: Callable[[], bool], within: float = 10.0) -> None:
    """Bounded wait for a sandbox-side condition (polls; the sandbox state has no event for it)."""
    async def poll() -> None:
        while not pred():  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.02)
    await asyncio.wait_for(poll(), within)


async def _relay(src: BaileysDriver, dst: BaileysDriver, to_phone: str, prefix: str,
                 n: int = 100) -> list[dict[str, Any]]:
    got = []
    for i in range(n):
        await src.command("send", to=f"{to_phone}@s.whatsapp.net", text=f"{prefix}{i:03}", tag=f"{prefix}{i}")
        await src.expect("sent", tag=f"{prefix}{i}")  # its key-store transaction has committed
        got += await _texts(dst, 1, prefix, within=20)
    return got


async def _texts(drv: BaileysDriver, n: int, prefix: str, within: float) -> list[dict[str, Any]]:
    got = []
    while len(got) < n:
        event = await drv.expect("message", within=within)
        if event["text"].startswith(prefix):
            got.append(event)
    return got


async def test_hundred_each_way_in_order_with_read_receipts(sb: Sandbox, http: httpx.AsyncClient, drivers: Start,
                                                            tmp_path: Path) -> None:
    a, b = await _pair(sb, http, drivers, tmp_path)
    # The first (pre-key) message each way, then 100 each way on the established sessions.
    first_at_b = await _relay(a, b, BOB, "first-", 1)
    first_at_a = await _relay(b, a, ALICE, "first-", 1)
    assert [first_at_b[0]["text"], first_at_a[0]["text"]] == ["first-000", "first-000"]
    # One direction at a time, each message sent once the previous one arrived and its send
    # completed (see _relay): Baileys rc14
    # corrupts a session when one socket runs two key-store transactions on it at once (they are
    # locked per caller key, so concurrent encrypt/decrypt/LID-migration overwrite each other's
    # session record; WhiskeySockets/Baileys PR #2811). The router delivers each ciphertext once, in
    # order; a burst without pacing is the Baileys race, not a routing loss.
    at_b = await _relay(a, b, BOB, "a-")
    at_a = await _relay(b, a, ALICE, "b-")
    assert [e["text"] for e in at_b] == [f"a-{i:03}" for i in range(100)]
    assert [e["text"] for e in at_a] == [f"b-{i:03}" for i in range(100)]
    assert len({e["id"] for e in at_b}) == 100 and not a.seen("undecryptable") and not b.seen("undecryptable")
    sent_ids = {e["id"] for e in a.seen("sent") if e["tag"].startswith("a-")}
    assert sent_ids == {e["id"] for e in at_b}
    # Bob reads everything: Alice's socket sees each of her messages go to READ (status 4).
    await b.command("read", keys=[{"remoteJid": e["remoteJid"], "id": e["id"], "fromMe": False} for e in at_b])
    while not sent_ids <= {e["id"] for e in a.seen("status") if e["status"] == 4}:
        await a.expect("status", within=30)
    assert {e.get("remoteJid") for e in a.seen("status") if e["id"] in sent_ids} - {None} == {f"{BOB}@s.whatsapp.net"}
    # Every device acknowledged what it got: nothing is left queued.
    for phone in (ALICE, BOB):
        assert [d["queued"] for d in sb.get_phone(phone)["devices"]] == [0]


async def test_offline_device_gets_message_at_next_login_exactly_once(sb: Sandbox, http: httpx.AsyncClient,
                                                                     drivers: Start, tmp_path: Path) -> None:
    a, b = await _pair(sb, http, drivers, tmp_path)
    await b.command("end")
    assert await b.wait() == 0
    await a.command("send", to=f"{BOB}@s.whatsapp.net", text="while you were away", tag="away")
    await a.expect("sent", tag="away")
    assert [d["queued"] for d in sb.get_phone(BOB)["devices"]] == [1]

    b2 = await drivers(url=sb.ws_url, root_key=sb.root_public_key, auth=tmp_path / "b", mode="login")
    got = await b2.expect("message", within=30, text="while you were away")
    assert got["upsert"] == "append"  # Baileys' marker for a message from the offline backlog
    assert [e["count"] for e in b2.seen("offline")] == [1]
    await _until(lambda: [d["queued"] for d in sb.get_phone(BOB)["devices"]] == [0])  # its receipt acked it
    await b2.command("end")
    assert await b2.wait() == 0

    b3 = await drivers(url=sb.ws_url, root_key=sb.root_public_key, auth=tmp_path / "b", mode="login")
    assert (await b3.expect("offline", within=30))["count"] == 0
    await b3.expect("open")
    assert not b3.seen("message")
    assert len([e for e in b2.seen("message") + b3.seen("message") if e["text"] == "while you were away"]) == 1


async def test_group_of_two_sockets_and_a_phone(sb: Sandbox, http: httpx.AsyncClient, drivers: Start,
                                                tmp_path: Path) -> None:
    a, b = await _pair(sb, http, drivers, tmp_path)
    res = await http.post("/admin/groups", json={"subject": "router", "members": [ALICE, BOB, CAROL]})
    assert res.status_code == 201, res.text
    group = res.json()
    await a.command("group", jid=group["jid"], tag="meta")
    meta = (await a.expect("group", tag="meta"))["metadata"]
    assert meta["subject"] == "router" and len(meta["participants"]) == 3
    texts = [f"g-{i}" for i in range(5)]
    at_b = []
    for text in texts:  # paced like _relay (see the Baileys transaction race above)
        await a.command("send", to=group["jid"], text=text, tag=text)
        await a.expect("sent", tag=text)
        at_b += await _texts(b, 1, "g-", within=30)
    assert [e["text"] for e in at_b] == texts
    assert all(e["remoteJid"] == group["jid"] for e in at_b)
    await b.command("send", to=group["jid"], text="g-from-bob", tag="gb")
    await b.expect("sent", tag="gb")
    assert (await a.expect("message", within=30, text="g-from-bob"))["remoteJid"] == group["jid"]
    # The phone-only member received every group message (its 1:1 SKDM first, then the skmsg) and
    # decrypted each one.
    inbox = [m for m in sb.phone_messages(CAROL) if m["from"] == group["jid"]]
    assert len(inbox) == 6
    assert [e["type"] for e in inbox[0]["enc"]] == ["pkmsg", "skmsg"]
    at_carol = [m for m in sb.phone_received(CAROL) if m["chat"] == group["jid"]]
    assert [m["text"] for m in at_carol] == [*texts, "g-from-bob"] and all(m["error"] is None for m in at_carol)
    # The phone writes to the group too: both sockets decrypt it (SKDM over 1:1, then its skmsg).
    res = await http.post(f"/admin/phones/{CAROL}/send", json={"to": group["jid"], "text": "g-from-phone"})
    assert res.status_code == 200, res.text
    for drv in (a, b):
        got = await drv.expect("message", within=20, text="g-from-phone")
        assert got["remoteJid"] == group["jid"] and got["participant"].startswith(sb.get_phone(CAROL)["lid"].split("@")[0])
    # Every member reads every message: Carol (the phone) reads Alice's five.
    ids = [e["id"] for e in at_b]
    assert (await http.post(f"/admin/phones/{CAROL}/read", json={"ids": ids})).json() == {"read": 5}
    # Bob reads Alice's messages: Alice sees a read receipt per message from Bob.
    await b.command("read", keys=[{"remoteJid": group["jid"], "id": e["id"], "participant": e["participant"],
                                   "fromMe": False} for e in at_b])
    sent = {e["id"] for e in a.seen("sent") if e["tag"] in texts}
    bob_lid, carol_lid = (sb.get_phone(p)["lid"].split("@")[0] for p in (BOB, CAROL))
    def readers() -> set[tuple[str, str]]:
        return {(e["id"], e["userJid"].split("@")[0].split(":")[0]) for e in a.seen("receipt") if e["readTimestamp"]}
    while not {(i, who) for i in sent for who in (bob_lid, carol_lid)} <= readers():
        await a.expect("receipt", within=30)
    # Alice reads Bob's and the phone's messages: their senders see it.
    await a.command("read", keys=[{"remoteJid": group["jid"], "id": e["id"], "participant": e["participant"],
                                   "fromMe": False} for e in a.seen("message") if e["remoteJid"] == group["jid"]])
    gb = next(e["id"] for e in b.seen("sent") if e["tag"] == "gb")
    while not any(e["id"] == gb and e["readTimestamp"] for e in b.seen("receipt")):
        await b.expect("receipt", within=30)


async def test_simulated_phone_and_baileys_both_ways(sb: Sandbox, http: httpx.AsyncClient, drivers: Start,
                                                      tmp_path: Path) -> None:
    a = await _linked(sb, http, drivers, tmp_path / "a", ALICE)
    # The phone-only account Carol writes first (a pre-key message from the phone to Alice's devices).
    res = await http.post(f"/admin/phones/{CAROL}/send", json={"to": f"{ALICE}@s.whatsapp.net", "text": "from the phone"})
    assert res.status_code == 200, res.text
    sent = res.json()
    assert sent["devices"] == 2  # Alice's phone and her Baileys companion
    got = await a.expect("message", within=20, text="from the phone")
    assert got["id"] == sent["id"] and got["remoteJid"] == f"{CAROL}@s.whatsapp.net"
    # Alice answers, addressing Carol by LID this time.
    carol_lid = sb.get_phone(CAROL)["lid"]
    await a.command("send", to=carol_lid, text="from baileys", tag="r")
    reply = await a.expect("sent", tag="r")
    await _until(lambda: any(m["text"] == "from baileys" for m in sb.phone_received(CAROL)))
    received = next(m for m in sb.phone_received(CAROL) if m["text"] == "from baileys")
    assert received["id"] == reply["id"] and received["error"] is None and received["t"] > 0
    assert received["sender"].split("@")[0].split(":")[1] == str(sb.get_phone(ALICE)["devices"][0]["device"])
    # Alice's own phone got the deviceSentMessage copy of her reply, unwrapped.
    own = [m for m in sb.phone_received(ALICE) if m["text"] == "from baileys"]
    assert len(own) == 1 and own[0]["from_me"] is True
    # The phone's delivery receipt reached Alice's socket (DELIVERY_ACK = 3).
    while not any(e["id"] == reply["id"] and e["status"] >= 3 for e in a.seen("status")):
        await a.expect("status", within=20)  # (it may also have come before "sent")
    # The second message each way uses the established sessions.
    res = await http.post(f"/admin/phones/{CAROL}/send", json={"to": f"{ALICE}@s.whatsapp.net", "text": "again"})
    assert res.status_code == 200
    await a.expect("message", within=20, text="again")
    assert not a.seen("undecryptable")
    res = await http.post(f"/admin/phones/{CAROL}/send", json={"to": "19990000000@s.whatsapp.net", "text": "x"})
    assert res.status_code == 404 and res.json()["error"] == "unknown_recipient"
