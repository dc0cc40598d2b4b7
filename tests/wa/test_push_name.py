"""Issue 10, push name: the engine learns the account's name from its own devices' messages (`notify`),
keeps it with the creds, and refuses a presence without one (whatsmeow's ErrNoPushName), instead of
sending `<presence type="available"/>` that shows contacts "-"."""

from __future__ import annotations

import pytest
from wa_helpers import PHONE, EngineFactory, link_by_qr

from evolink.sandbox.server import Sandbox
from evolink.wa import socket as wa_socket
from evolink.wa.creds import MemoryCredsStore
from evolink.wa.events import MessageEvent, PushNameEvent
from evolink.wa.presence import PresenceNoName, name_at_link, usable_push_name
from evolink.wire.binary import Node

FRIEND = "15550009999"


@pytest.mark.parametrize(("raw", "want"), [("Ana", "Ana"), ("  Ana Shop ", "Ana Shop"), ("-", None), ("", None),
                                           ("   ", None), (None, None), (7, None)])
def test_usable_push_name(raw: object, want: str | None) -> None:
    assert usable_push_name(raw) == want


@pytest.mark.parametrize(("configured", "stored", "business", "want"), [
    ("Desk", "Old", "Biz Ltd", "Desk"),       # the instance's profileName wins
    (None, "Old", "Biz Ltd", "Old"),          # a name already known is kept
    (None, None, "Biz Ltd", "Biz Ltd"),       # a business account: its name from <biz name>
    ("-", None, None, None),                  # nothing usable: presence stays refused
    ("", "  ", "-", None),
])
def test_name_at_link(configured: str | None, stored: str | None, business: str | None, want: str | None) -> None:
    assert name_at_link(configured, stored, business) == want


async def test_presence_waits_for_the_push_name_learned_from_own_messages(
        sandbox: Sandbox, make_engine: EngineFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    presences: list[Node] = []
    original = wa_socket.NoiseSocket.send_node

    async def spy(self: wa_socket.NoiseSocket, node: Node) -> None:
        await original(self, node)
        if node.tag == "presence":
            presences.append(node)

    monkeypatch.setattr(wa_socket.NoiseSocket, "send_node", spy)
    store = MemoryCredsStore()
    engine, rec = make_engine(sandbox, store=store)
    await link_by_qr(sandbox, engine, rec)

    # no name yet: refused, nothing on the wire (Baileys sends nothing either; whatsmeow refuses)
    with pytest.raises(PresenceNoName, match="push name"):
        await engine.send_presence("available")
    assert presences == []

    # the user writes from the phone: WhatsApp names the writer in `notify`, our own name
    sandbox.create_phone(FRIEND)
    sandbox.set_push_name(PHONE, "Ana Shop")
    sandbox.phone_send(PHONE, f"{FRIEND}@s.whatsapp.net", "hello from the phone")
    learned = await rec.wait(PushNameEvent)
    assert (learned.name, learned.source) == ("Ana Shop", "own-message")
    stored = await store.load()
    assert stored is not None and stored.push_name == "Ana Shop"  # persisted with the creds

    await engine.send_presence("available")
    assert presences == [Node("presence", {"type": "available", "name": "Ana Shop"})]

    # the same name again is not news
    sandbox.phone_send(PHONE, f"{FRIEND}@s.whatsapp.net", "again")
    await rec.wait(MessageEvent, lambda e: e.text == "again", within=10)
    assert len(rec.of(PushNameEvent)) == 1


async def test_configured_name_is_used_until_the_account_tells_its_own(
        sandbox: Sandbox, make_engine: EngineFactory) -> None:
    engine, rec = make_engine(sandbox, push_name="Desk")  # the gateway passes the instance's profileName
    opened = await link_by_qr(sandbox, engine, rec)
    assert opened.push_name == "Desk"
    await engine.send_presence("available")  # no refusal: a name is known
