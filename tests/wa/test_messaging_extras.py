"""Engine extras for the Evolution API layer, against the sandbox: reactions (number lookup and w:g2
groups are in test_groups_contacts.py)."""

from __future__ import annotations

import pytest
from test_messaging_sandbox import BOB, linked, text_of, until
from wa_helpers import PHONE, EngineFactory

from evolink.sandbox.server import Sandbox
from evolink.wa.events import MessageEvent
from evolink.wa.message_send import SendError
from evolink.wa.reactions import send_reaction

CAROL = "15550003333"


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


async def test_note_to_self_reaches_our_phone(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    engine, rec = await linked(sandbox, make_engine)
    sent = await engine.send_text(f"{PHONE}@s.whatsapp.net", "note to self")
    assert sent.devices == 1  # our phone only (never our own device)
    await until(lambda: any(m["id"] == sent.id for m in sandbox.phone_received(PHONE)))
    got = next(m for m in sandbox.phone_received(PHONE) if m["id"] == sent.id)
    assert got["text"] == "note to self" and got["from_me"] and got["error"] is None
    # The phone writes to its own chat: the engine gets it as from_me in the self chat.
    res = sandbox.phone_send(PHONE, f"{PHONE}@s.whatsapp.net", "from my phone to me")
    ev = await rec.wait(MessageEvent, lambda e: e.id == res["id"])
    assert ev.from_me and text_of(ev) == "from my phone to me"
    assert ev.chat.split("@")[0] in (PHONE, sandbox.get_phone(PHONE)["lid"].split("@")[0])
