"""Engine extras for the Evolution API layer, against the sandbox: "is on WhatsApp", group create
and metadata over w:g2, reactions."""

from __future__ import annotations

import pytest
from test_messaging_sandbox import BOB, linked, text_of, until
from wa_helpers import PHONE, EngineFactory

from evolink.sandbox.server import Sandbox
from evolink.wa.events import MessageEvent
from evolink.wa.groups import create_group, group_metadata
from evolink.wa.message_send import NotConnected, SendError
from evolink.wa.onwhatsapp import on_whatsapp
from evolink.wa.reactions import send_reaction

CAROL = "15550003333"


async def test_on_whatsapp_lookup(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    engine, _ = await linked(sandbox, make_engine)
    got = await on_whatsapp(engine, [f"+{BOB}", "19990000000", f"{BOB}@s.whatsapp.net"])
    assert [(r.number, r.jid, r.exists) for r in got] == [
        (BOB, f"{BOB}@s.whatsapp.net", True), ("19990000000", "19990000000@s.whatsapp.net", False)]
    assert got[0].lid == sandbox.get_phone(BOB)["lid"] and got[1].lid is None
    assert engine.messaging.lid_of[f"{BOB}@s.whatsapp.net"] == got[0].lid
    with pytest.raises(ValueError, match="not a phone number"):
        await on_whatsapp(engine, ["hello"])
    assert await on_whatsapp(engine, []) == []
    await engine.close()
    with pytest.raises(NotConnected):
        await on_whatsapp(engine, [BOB])


async def test_create_group_then_message_it(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    engine, rec = await linked(sandbox, make_engine)
    sandbox.create_phone(CAROL)
    info = await create_group(engine, "made by evolink", [f"{BOB}@s.whatsapp.net", f"{CAROL}@s.whatsapp.net"])
    assert info.jid.endswith("@g.us") and info.subject == "made by evolink"
    members = {p.phone_number: p.admin for p in info.participants}
    assert members == {f"{PHONE}@s.whatsapp.net": "superadmin", f"{BOB}@s.whatsapp.net": None,
                       f"{CAROL}@s.whatsapp.net": None}
    assert [g["jid"] for g in sandbox.list_groups()] == [info.jid]
    again = await group_metadata(engine, info.jid)
    assert again.participants == info.participants and again.addressing_mode == info.addressing_mode
    sent = await engine.send_text(info.jid, "first in my group")
    for phone in (BOB, CAROL):
        await until(lambda p=phone: any(m["id"] == sent.id and m["text"] == "first in my group"  # type: ignore[misc]
                                        for m in sandbox.phone_received(p)))
    with pytest.raises(SendError):
        await group_metadata(engine, "120363999999999999@g.us")
    with pytest.raises(SendError):
        await create_group(engine, "x", ["19990000000@s.whatsapp.net"])
    with pytest.raises(ValueError):
        await create_group(engine, "", [f"{BOB}@s.whatsapp.net"])
    assert rec.of(MessageEvent) == []


async def test_reactions_to_a_phone(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    engine, rec = await linked(sandbox, make_engine)
    res = sandbox.phone_send(BOB, f"{PHONE}@s.whatsapp.net", "react to me")
    ev = await rec.wait(MessageEvent, lambda e: text_of(e) == "react to me")
    sent = await send_reaction(engine, ev.chat, ev.id, "👍")
    stanza = next(m for m in sandbox.phone_messages(BOB) if m["id"] == sent.id)
    assert stanza["type"] == "reaction"
    await until(lambda: any(m["id"] == sent.id for m in sandbox.phone_received(BOB)))
    got = next(m for m in sandbox.phone_received(BOB) if m["id"] == sent.id)
    assert got["error"] is None  # decrypted (a reaction has no text)
    # Removing a reaction to our own message (empty emoji, fromMe key) goes out too.
    mine = await engine.send_text(f"{BOB}@s.whatsapp.net", "mine")
    removal = await send_reaction(engine, f"{BOB}@s.whatsapp.net", mine.id, "", from_me=True)
    assert removal.id != sent.id
    assert res["id"] == ev.id
    with pytest.raises(SendError):
        await send_reaction(engine, ev.chat, "", "👍")
