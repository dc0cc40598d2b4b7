"""Garbage from one client closes that socket cleanly; the sandbox keeps serving everyone else."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
from sandbox_client import Client, Closed, Creds, registration_payload
from websockets.asyncio.client import ClientConnection, connect

from evolink.sandbox.server import Sandbox
from evolink.wire import frames, noise
from evolink.wire.crypto import KeyPair
from evolink.wire.proto import wa_pb2


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox.start(handshake_timeout=0.5) as sandbox:
        yield sandbox


async def _healthy(sb: Sandbox) -> None:
    """A well-behaved client still gets its pair-device."""
    creds = Creds()
    client = await Client.connect(sb.ws_url, creds, registration_payload(creds))
    node = await client.recv()
    assert node.child("pair-device") is not None
    await client.close()




async def _closed_by_server(ws: ClientConnection) -> int | None:
    await asyncio.wait_for(ws.wait_closed(), 5)
    return ws.close_code


def _client_hello() -> tuple[noise.NoiseInitiator, bytes]:
    ini = noise.NoiseInitiator(KeyPair.generate())
    return ini, frames.client_intro() + frames.encode_frame(ini.client_hello())


GARBAGE = {
    "random_bytes": lambda: os.urandom(64),
    "bad_intro": lambda: b"WA\x05\x03" + frames.encode_frame(b"x" * 10),
    "bad_ed_intro": lambda: b"ED\x00\x02" + os.urandom(20),
    "hello_not_protobuf": lambda: frames.client_intro() + frames.encode_frame(b"\xff" * 40),
    "hello_short_key": lambda: frames.client_intro() + frames.encode_frame(
        wa_pb2.HandshakeMessage(clientHello=wa_pb2.HandshakeMessage.ClientHello(ephemeral=b"\x01" * 5)).SerializeToString()
    ),
    "oversized_frame_header": lambda: frames.client_intro() + b"\xff\xff\xff" + os.urandom(10),
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
async def test_garbage_before_handshake(sb: Sandbox, name: str) -> None:
    ws = await connect(sb.ws_url, compression=None, open_timeout=5)
    await ws.send(GARBAGE[name]())
    code = await _closed_by_server(ws)
    assert code in (1002, 1000, 1009)
    await _healthy(sb)
    assert any("protocol error" in (c["close_reason"] or "") or c["close_reason"] == "idle timeout"
               for c in sb.list_connections())


async def test_truncated_frame_times_out(sb: Sandbox) -> None:
    ws = await connect(sb.ws_url, compression=None, open_timeout=5)
    _, hello = _client_hello()
    await ws.send(hello[: len(hello) - 7])  # length header promises more than ever arrives
    assert await _closed_by_server(ws) == 1000
    await _healthy(sb)


async def test_text_messages_and_silence_time_out(sb: Sandbox) -> None:
    ws = await connect(sb.ws_url, compression=None, open_timeout=5)
    await ws.send("hello")  # non-binary messages are ignored, not fatal
    assert await _closed_by_server(ws) == 1000
    await _healthy(sb)


async def test_bad_client_finish(sb: Sandbox) -> None:
    ws = await connect(sb.ws_url, compression=None, open_timeout=5)
    ini, hello = _client_hello()
    await ws.send(hello)
    reader = frames.FrameReader()
    got: list[bytes] = []
    while not got:
        got = reader.feed(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
    ini.read_server_hello(got[0])
    finish = wa_pb2.HandshakeMessage()
    finish.clientFinish.static = os.urandom(48)  # not encrypted under the handshake key
    finish.clientFinish.payload = os.urandom(60)
    await ws.send(frames.encode_frame(finish.SerializeToString()))
    assert await _closed_by_server(ws) == 1002
    await _healthy(sb)


async def test_garbage_payload_and_transport_frames(sb: Sandbox) -> None:
    # A valid handshake whose ClientPayload is not a protobuf.
    creds = Creds()
    with pytest.raises(Closed):
        client = await Client.connect(sb.ws_url, creds, b"\xff\xff\xff")
        await client.recv(within=5)
    # A registered socket that then sends an undecryptable transport frame.
    client = await Client.connect(sb.ws_url, creds, registration_payload(creds))
    await client.recv()
    await client.ws.send(frames.encode_frame(os.urandom(40)))
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code == 1002
    # Valid encryption around bytes that are not a binary node.
    client = await Client.connect(sb.ws_url, Creds(), registration_payload(Creds()))
    await client.recv()
    assert client.transport is not None
    await client.ws.send(frames.encode_frame(client.transport.encrypt(b"\x00\xf8\x00\xff")))
    await asyncio.wait_for(client.ws.wait_closed(), 5)
    assert client.ws.close_code == 1002
    await _healthy(sb)


async def test_concurrent_garbage_does_not_disturb_a_linked_session(sb: Sandbox) -> None:
    sb.config.handshake_timeout = 5
    creds = Creds()
    good = await Client.connect(sb.ws_url, creds, registration_payload(creds))
    await good.recv()

    async def spam() -> None:
        ws = await connect(sb.ws_url, compression=None, open_timeout=5)
        await ws.send(os.urandom(200))
        await _closed_by_server(ws)

    await asyncio.gather(*(spam() for _ in range(20)))
    from evolink.wire.binary import SERVER_JID, Node

    pong_id = "1.1-99"
    await good.send(Node("iq", {"to": SERVER_JID, "type": "get", "xmlns": "w:p", "id": pong_id}, [Node("ping")]))
    pong = await good.recv()
    assert pong.attrs["id"] == pong_id and pong.attrs["type"] == "result"
    await good.close()
