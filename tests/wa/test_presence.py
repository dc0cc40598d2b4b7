"""Own presence and unified_session: the formula, the stanzas, and what reaches the sandbox."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from wa_helpers import PHONE, EngineFactory, FrozenClock, link_by_qr, sandbox_conn

from evolink.sandbox.server import Sandbox
from evolink.wa import socket as wa_socket
from evolink.wa.events import OpenEvent, ServerTimeEvent
from evolink.wa.presence import (
    InvalidPresence,
    PresenceNotConnected,
    presence_node,
    unified_session_id,
)
from evolink.wire.binary import Node

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS


def test_unified_session_id_formula() -> None:
    assert unified_session_id(0, 0) == str(3 * DAY_MS)
    # 1700000000.123 s + 1 h offset + 3 days = 1700262800123 ms; minus 2811 weeks = 170000123 ms
    assert unified_session_id(1_700_000_000.123, 3600) == "170000123"
    # 4 days into the epoch + 3 days wraps to 0; a negative offset counts back
    assert unified_session_id(4 * 86_400, 0) == "0"
    assert unified_session_id(4 * 86_400, -0.001) == str(WEEK_MS - 1)
    assert unified_session_id(100.0, -100.0) == str(3 * DAY_MS)


def test_presence_node_shape_and_validation() -> None:
    assert presence_node("available", "Support Desk") == Node("presence", {"type": "available", "name": "Support Desk"})
    # '@' would make the binary encoder treat the name as a JID (Baileys strips it too)
    assert presence_node("unavailable", "a@b") == Node("presence", {"type": "unavailable", "name": "ab"})
    assert presence_node("available", None) == Node("presence", {"type": "available"})
    for bad in ("composing", "recording", "paused", "", "AVAILABLE", None):
        with pytest.raises(InvalidPresence):
            presence_node(bad, "x")  # type: ignore[arg-type]


async def test_presence_refused_without_an_open_socket(sandbox: Sandbox, make_engine: EngineFactory) -> None:
    engine, _ = make_engine(sandbox)
    with pytest.raises(PresenceNotConnected, match="Connection Closed"):
        await engine.send_presence("available")
    with pytest.raises(InvalidPresence):  # validated before the socket is looked at
        await engine.send_presence("composing")


async def test_unified_session_and_presence_on_the_wire(monkeypatch: pytest.MonkeyPatch,
                                                        make_engine: EngineFactory) -> None:
    sent: list[Node] = []  # nodes as the engine wrote them to its sockets
    wrote = asyncio.Event()
    original = wa_socket.NoiseSocket.send_node

    async def spy(self: wa_socket.NoiseSocket, node: Node) -> None:
        await original(self, node)
        sent.append(node)
        wrote.set()

    async def until_sent(pred: Callable[[list[Node]], bool]) -> None:
        async def loop() -> None:
            while not pred(sent):
                wrote.clear()
                await wrote.wait()
        await asyncio.wait_for(loop(), 5)

    def label(n: Node) -> str:
        return n.children()[0].tag if n.tag == "iq" and n.children() else n.tag

    def ids() -> list[str]:
        return [n.children()[0].attrs["id"] for n in sent
                if n.tag == "ib" and n.children() and n.children()[0].tag == "unified_session"]

    monkeypatch.setattr(wa_socket.NoiseSocket, "send_node", spy)
    # The sandbox runs 1 h ahead: the ids must follow server time, not the injected clock.
    async with Sandbox.start(clock_offset=3600, link_timeout=5.0, cert_not_before=-2 * 86400) as sb:
        sb.create_phone(PHONE)
        clock = FrozenClock(float(int(time.time())))
        engine, rec = make_engine(sb, clock=clock, push_name="Desk@Home")
        await link_by_qr(sb, engine, rec)
        login_time = [e for e in rec.of(ServerTimeEvent) if e.source == "success"][-1]
        assert abs(login_time.server_unix - (clock.t + 3600)) < 5

        # after the pair-device-sign reply, and after success (then the digest check)
        await until_sent(lambda s: "digest" in [label(n) for n in s])
        tags = [label(n) for n in sent]
        assert tags[tags.index("pair-device-sign") + 1] == "ib"
        assert tags.count("ib") == 2 and tags.index("ib", tags.index("active")) < tags.index("digest")
        expected_login = (login_time.server_unix * 1000 + 500 + 3 * DAY_MS) % WEEK_MS
        assert ids()[-1] == str(expected_login)

        clock.t += 1000.0  # time passes on the injected clock; the measured offset stays
        await engine.send_presence("available")
        await engine.send_presence("unavailable")
        expected_later = ((login_time.server_unix + 1000) * 1000 + 500 + 3 * DAY_MS) % WEEK_MS
        assert ids()[-1] == str(expected_later)
        assert [n for n in sent if n.tag == "presence"] == [
            Node("presence", {"type": "available", "name": "DeskHome"}),
            Node("presence", {"type": "unavailable", "name": "DeskHome"}),
        ]

        # The sandbox got them on the logged-in connection, in order: a ping round trip after them
        # guarantees its (sequential) reader has logged everything sent before.
        assert engine._conn is not None
        await engine._conn.query(Node("iq", {"type": "get", "xmlns": "w:p"}, [Node("ping")]))
        log = sandbox_conn(sb, lambda c: c["open"] and c["state"] == "login")["stanza_log"]
        tail = log[log.index("digest"):]  # the sandbox labels presence stanzas with their type
        assert [s for s in tail if s == "ib" or s.startswith("presence")] == [
            "ib", "presence:available", "presence:unavailable"]
        assert engine.state == "open" and len(rec.of(OpenEvent)) == 1  # digest answered: no drop
