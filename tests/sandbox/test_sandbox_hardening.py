"""Close/replace under faults, the live-session index, the companion_hello fault and presence."""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import Callable, ValuesView
from typing import Any

import pytest
from sandbox_client import Client, Closed, Creds, iq, login_payload, pair_device_sign, registration_payload

from evolink.sandbox import transport as sandbox_transport
from evolink.sandbox.connection import Connection
from evolink.sandbox.server import Sandbox
from evolink.wire import qr
from evolink.wire.binary import SERVER_JID, Node

PHONE = "15550007777"
SLOW_MS = 30_000  # a latency no test may wait out


async def _until(pred: Callable[[], bool], within: float = 5.0) -> None:
    """Bounded wait for a sandbox-side condition (polls; the sandbox exposes no event for these)."""
    async def poll() -> None:
        while not pred():  # noqa: ASYNC110 - the sandbox state has no event to wait on
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), within)


async def _link(sb: Sandbox) -> Creds:
    creds = Creds()
    client = await Client.connect(sb.ws_url, creds, registration_payload(creds))
    pair = (await client.recv()).child("pair-device")
    assert pair is not None
    ref = pair.children("ref")[0].content
    assert isinstance(ref, bytes)
    scan = asyncio.create_task(sb.scan(PHONE, qr.build_qr(ref.decode(), creds.noise.public,
                                                          creds.identity.public, creds.adv_secret)))
    await client.send(pair_device_sign(creds, await client.recv()))
    assert (await client.recv()).attrs.get("code") == "515"
    await scan
    await client.wait_closed()
    return creds


async def _login(sb: Sandbox, creds: Creds) -> Client:
    assert creds.phone is not None
    client = await Client.connect(sb.ws_url, creds, login_payload(creds.phone, creds.device))
    assert (await client.recv()).tag == "success"
    return client


def _conn(sb: Sandbox, pred: Callable[[Connection], bool]) -> Connection:
    return next(c for c in reversed(sb.connections.values()) if pred(c))


async def _assert_released(conn: Connection, sb: Sandbox) -> None:
    """Nothing of a closed socket is left running or queued (its cancelled writer ends promptly)."""
    assert conn.closed_at is not None and not conn.open
    assert conn.link._writer is not None
    await asyncio.wait({conn.link._writer}, timeout=2)
    assert conn.link._writer.done()
    assert not conn.link._outbox and not conn._tasks and not conn.link._waiters
    assert all(c is not conn for c in sb._live.values())


@pytest.fixture
async def sb() -> Any:
    async with Sandbox.start() as sandbox:
        sandbox.create_phone(PHONE)
        yield sandbox


# 1 -------------------------------------------------------------------- closes vs. delayed sends
async def test_kick_does_not_wait_for_a_delayed_send(sb: Sandbox) -> None:
    client = await _login(sb, await _link(sb))
    conn = _conn(sb, lambda c: c.open and c.state == "login")
    sb.set_faults(latency_ms=SLOW_MS)
    ping = iq("w:p", "get", [Node("ping")])
    ping.attrs["id"] = "p1"
    await client.send(ping)
    await _until(lambda: conn.stanza_counts["ping"] == 1)
    started = time.monotonic()
    await asyncio.wait_for(sb.kick(conn.id, 503), 3)
    # The queued answer is still delivered first, then the stream error: order kept, no delay.
    pong = await client.recv(within=3)
    assert pong.attrs == {"from": SERVER_JID, "type": "result", "id": "p1"}
    end = await client.recv(within=3)
    assert end.tag == "stream:error" and end.attrs["code"] == "503"
    await client.wait_closed(within=3)
    assert time.monotonic() - started < 3
    await _until(lambda: conn.closed_at is not None)
    await _assert_released(conn, sb)


async def test_replacement_does_not_wait_for_the_old_sockets_delayed_send(sb: Sandbox) -> None:
    creds = await _link(sb)
    first = await _login(sb, creds)
    old = _conn(sb, lambda c: c.open and c.state == "login")
    sb.set_faults(latency_ms=SLOW_MS)
    await first.send(iq("w:p", "get", [Node("ping")]))
    await _until(lambda: old.stanza_counts["ping"] == 1)
    sb.set_faults()  # the new socket is fast; the old one is still holding a 30 s frame
    second = await asyncio.wait_for(_login(sb, creds), 3)
    assert (await first.recv(within=3)).attrs.get("type") == "result"
    replaced = await first.recv(within=3)
    assert replaced.tag == "stream:error" and replaced.child("conflict").attrs["type"] == "replaced"  # type: ignore[union-attr]
    await first.wait_closed(within=3)
    assert (await second.query(iq("w:p", "get", [Node("ping")]), within=3)).attrs["type"] == "result"
    await _until(lambda: old.closed_at is not None)
    await _assert_released(old, sb)
    assert sb._live == {(PHONE, creds.device): _conn(sb, lambda c: c.open)}
    await second.close()


async def test_idle_timeout_closes_a_socket_with_a_delayed_send_pending() -> None:
    async with Sandbox.start(idle_timeout=0.5) as sb:
        sb.create_phone(PHONE)
        client = await _login(sb, await _link(sb))
        conn = _conn(sb, lambda c: c.open and c.state == "login")
        sb.set_faults(latency_ms=SLOW_MS)
        await client.send(iq("w:p", "get", [Node("ping")]))
        # The reader is not stuck behind its own 30 s send, so the idle timeout still fires.
        await _until(lambda: conn.closed_at is not None, within=5)
        assert conn.close_reason == "idle timeout"
        with pytest.raises(Closed):
            for _ in range(3):
                await client.recv(within=5)
        await _assert_released(conn, sb)


async def test_a_client_that_never_reads_is_closed_when_its_queue_overflows(
        sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_transport, "MAX_OUTBOX", 20)
    client = await _login(sb, await _link(sb))
    conn = _conn(sb, lambda c: c.open and c.state == "login")
    sb.set_faults(latency_ms=SLOW_MS)
    for _ in range(25):
        await client.send(iq("w:p", "get", [Node("ping")]))
    await _until(lambda: conn.closed_at is not None)
    assert conn.close_reason == "outbox overflow: client is not reading"
    await _assert_released(conn, sb)


async def test_closed_sockets_leave_no_tasks_behind(sb: Sandbox) -> None:
    creds = await _link(sb)
    baseline = len(asyncio.all_tasks())
    sb.set_faults(latency_ms=SLOW_MS)
    clients = []
    for _ in range(3):  # each login replaces the previous one while its frames are delayed
        sb.set_faults()
        clients.append(await _login(sb, creds))
        sb.set_faults(latency_ms=SLOW_MS)
        await clients[-1].send(iq("w:p", "get", [Node("ping")]))
    sb.set_faults()
    last = _conn(sb, lambda c: c.open)
    await sb.kick(last.id, 500)
    for client in clients:
        await client.wait_closed(within=5)
    await _until(lambda: all(c.closed_at is not None for c in sb.connections.values()))
    for conn in sb.connections.values():
        await _assert_released(conn, sb)
    await _until(lambda: len(asyncio.all_tasks()) <= baseline)
    assert sb._live == {}


# 2 ---------------------------------------------------------------------------- live-session index
class _CountingConnections(OrderedDict[str, Connection]):
    scans = 0

    def values(self) -> ValuesView[Connection]:  # type: ignore[override]
        type(self).scans += 1
        return super().values()


async def test_login_replacement_and_removal_do_not_scan_all_connections(sb: Sandbox) -> None:
    a, b = await _link(sb), await _link(sb)
    _CountingConnections.scans = 0
    sb.connections = _CountingConnections(sb.connections)
    first_a = await _login(sb, a)
    await _login(sb, b)
    second_a = await _login(sb, a)  # replaces first_a
    node = await first_a.recv()
    assert node.child("conflict").attrs["type"] == "replaced"  # type: ignore[union-attr]
    await sb.remove_device(PHONE, b.device)
    assert _CountingConnections.scans == 0
    online = {d["device"]: d["online"] for d in sb.get_phone(PHONE)["devices"]}
    assert online == {a.device: True}
    assert (await second_a.query(iq("w:p", "get", [Node("ping")]))).attrs["type"] == "result"


async def test_closed_connections_kept_for_listing_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from evolink.sandbox import server as sandbox_server
    monkeypatch.setattr(sandbox_server, "MAX_CLOSED_KEPT", 3)
    async with Sandbox.start() as sb:
        for _ in range(5):
            creds = Creds()
            client = await Client.connect(sb.ws_url, creds, registration_payload(creds))
            await client.recv()
            await client.close()
        await _until(lambda: sum(c.closed_at is not None for c in sb.connections.values()) == 3)
        assert [c["id"] for c in sb.list_connections()] == ["c3", "c4", "c5"]


# 3 ---------------------------------------------------------------------- companion_hello fault
def _companion_hello(creds: Creds, phone: str = PHONE) -> Node:
    return Node("iq", {"to": SERVER_JID, "type": "set", "xmlns": "md"}, [
        Node("link_code_companion_reg", {"jid": f"{phone}@s.whatsapp.net", "stage": "companion_hello"}, [
            Node("link_code_pairing_wrapped_companion_ephemeral_pub", {}, os.urandom(80)),
            Node("companion_server_auth_key_pub", {}, creds.noise.public),
            Node("companion_platform_id", {}, b"1"),
            Node("companion_platform_display", {}, b"Chrome (Linux)"),
        ])
    ])


async def test_companion_hello_error_fault(sb: Sandbox) -> None:
    sb.set_faults(companion_hello_error={"code": 429, "text": "rate-overlimit"})
    creds = Creds()
    client = await Client.connect(sb.ws_url, creds, registration_payload(creds))
    await client.recv()  # pair-device
    refused = await client.query(_companion_hello(creds))
    err = refused.child("error")
    assert refused.attrs["type"] == "error" and err is not None
    assert err.attrs == {"code": "429", "text": "rate-overlimit"}
    conn = _conn(sb, lambda c: c.open)
    assert conn.code_registration is None and conn.open
    sb.set_faults()
    accepted = await client.query(_companion_hello(creds))
    assert accepted.attrs["type"] == "result" and accepted.child("link_code_companion_reg") is not None
    assert conn.code_registration is not None and conn.code_registration.phone == PHONE
    await client.close()


# presence ----------------------------------------------------------------------------------------
async def test_presence_is_accepted_silently_and_logged(sb: Sandbox) -> None:
    client = await _login(sb, await _link(sb))
    await client.send(Node("presence", {"type": "available", "name": "Evolink"}))
    await client.send(Node("presence", {"type": "unavailable"}))
    # No answer to either: the next node is the ping's result.
    assert (await client.query(iq("w:p", "get", [Node("ping")]))).attrs["type"] == "result"
    conn = next(c for c in sb.list_connections() if c["open"])
    assert conn["stanza_log"][-3:] == ["presence:available", "presence:unavailable", "ping"]
    assert conn["presence"]["type"] == "unavailable" and conn["open"]
    await client.send(Node("presence", {"type": "available", "name": "Evolink"}))
    await client.query(iq("w:p", "get", [Node("ping")]))
    conn = next(c for c in sb.list_connections() if c["open"])
    assert conn["presence"]["type"] == "available" and conn["presence"]["name"] == "Evolink"
    await client.close()


async def test_a_close_stuck_behind_a_blocked_send_aborts_the_link(
        sb: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_transport, "CLOSE_TIMEOUT", 0.3)
    client = await _login(sb, await _link(sb))
    conn = _conn(sb, lambda c: c.open and c.state == "login")

    # A peer whose TCP window stays shut: flow control pauses the transport, writes never drain.
    async def never_drains(data: bytes) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(conn.ws, "send", never_drains)
    conn.ws.paused = True
    await client.send(iq("w:p", "get", [Node("ping")]))
    await _until(lambda: conn.stanza_counts["ping"] == 1)
    await asyncio.wait_for(sb.kick(conn.id, 503), 3)
    with pytest.raises(Closed):
        await client.recv(within=3)  # the answer and the stream error never got out: link aborted
    await _until(lambda: conn.closed_at is not None)
    await _assert_released(conn, sb)
