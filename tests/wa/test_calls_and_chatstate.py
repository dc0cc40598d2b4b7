"""Call offers become CallEvents (and are acked); rejectCall and chat-state stanzas as Baileys sends them."""

from __future__ import annotations

from typing import Any

import pytest
from msg_fakes import FakeConn

from evolink.wa import call, dispatch
from evolink.wa.chatstate import ChatState, chatstate_node
from evolink.wa.config import EngineConfig
from evolink.wa.creds import Creds, MemoryCredsStore
from evolink.wa.engine import Engine
from evolink.wa.events import CallEvent
from evolink.wa.message_send import NotConnected
from evolink.wire.binary import Node

ME = "15550001111:3@s.whatsapp.net"
BOB = "15550002222@s.whatsapp.net"


def engine_with_conn() -> tuple[Engine, FakeConn, list[Any]]:
    creds = Creds.new()
    creds.me_jid = ME
    engine = Engine(EngineConfig(query_timeout=1.0), MemoryCredsStore())
    conn = FakeConn(creds)
    engine._conn = conn  # type: ignore[assignment]
    engine._creds = creds
    engine._state = "open"
    events: list[Any] = []
    engine.subscribe(events.append)
    return engine, conn, events


@pytest.mark.parametrize(("child", "status"), [
    (Node("offer", {"call-id": "C1", "call-creator": BOB}, [Node("audio")]), "offer"),
    (Node("terminate", {"call-id": "C1", "call-creator": BOB, "reason": "timeout"}), "timeout"),
    (Node("terminate", {"call-id": "C1", "call-creator": BOB}), "terminate"),
    (Node("reject", {"call-id": "C1", "call-creator": BOB}), "reject"),
    (Node("accept", {"call-id": "C1", "call-creator": BOB}), "accept"),
    (Node("relaylatency", {"call-id": "C1", "call-creator": BOB}), "ringing"),
])
def test_call_status_row_by_row(child: Node, status: str) -> None:
    ev = call.parse(Node("call", {"id": "s1", "from": BOB, "t": "1700000000"}, [child]))
    assert ev is not None and ev.status == status and ev.call_id == "C1" and ev.caller == BOB
    assert ev.timestamp == 1_700_000_000 and ev.chat == BOB


def test_offer_details_and_unusable_calls() -> None:
    offer = Node("offer", {"call-id": "C2", "from": BOB, "group-jid": "1203@g.us"}, [Node("video")])
    ev = call.parse(Node("call", {"id": "s", "from": "1203@g.us", "t": "5", "offline": "1"}, [offer]))
    assert ev == CallEvent("C2", "1203@g.us", BOB, "offer", 5, True, True, True, "1203@g.us")
    assert call.parse(Node("call", {"id": "s"})) is None
    assert call.parse(Node("call", {"id": "s"}, [Node("offer", {"call-creator": BOB})])) is None  # no call-id
    assert call.parse(Node("call", {"id": "s"}, [Node("offer", {"call-id": "x", "call-creator": "bad"})])) is None


async def test_offer_is_emitted_and_acked_then_rejected() -> None:
    engine, conn, events = engine_with_conn()
    node = Node("call", {"id": "s9", "from": BOB, "t": "7"}, [Node("offer", {"call-id": "C9", "call-creator": BOB})])
    dispatch.dispatch(engine, conn, node)  # type: ignore[arg-type]
    await conn.drain()
    assert next(e for e in events if isinstance(e, CallEvent)).call_id == "C9"
    assert conn.of("ack")[0].attrs == {"id": "s9", "to": BOB, "class": "call"}
    await engine.reject_call("C9", BOB)
    rej = conn.of("call")[-1]
    assert rej.attrs["from"] == ME and rej.attrs["to"] == BOB and rej.attrs["id"]
    assert [(c.tag, c.attrs) for c in rej.children()] == [
        ("reject", {"call-id": "C9", "call-creator": BOB, "count": "0"})]


async def test_chat_states_and_not_connected() -> None:
    engine, conn, _ = engine_with_conn()
    await engine.send_chat_state(BOB, ChatState.COMPOSING)
    await engine.send_chat_state(BOB, ChatState.PAUSED)
    sent = conn.of("chatstate")
    assert [(n.attrs, [c.tag for c in n.children()]) for n in sent] == [
        ({"to": BOB}, ["composing"]), ({"to": BOB}, ["paused"])]
    assert chatstate_node(BOB, ChatState.RECORDING).children()[0].attrs == {"media": "audio"}
    with pytest.raises(ValueError):
        chatstate_node("nobody", ChatState.COMPOSING)
    engine._state = "close"
    with pytest.raises(NotConnected):
        await engine.send_chat_state(BOB, ChatState.COMPOSING)
    with pytest.raises(NotConnected):
        await engine.reject_call("C", BOB)
