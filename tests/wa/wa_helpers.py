"""Helpers for engine ↔ sandbox tests on loopback: short timers, event recorders."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve

from evolink.sandbox.server import Sandbox
from evolink.wa.config import EngineConfig
from evolink.wa.engine import Engine
from evolink.wa.events import EngineEvent, OpenEvent, QrEvent
from evolink.wire.certs import build_cert_chain
from evolink.wire.crypto import KeyPair
from evolink.wire.frames import ServerFrameReader, encode_frame
from evolink.wire.noise import NoiseResponder

E = TypeVar("E")
PHONE = "15550001111"


class FrozenClock:
    """An injected clock that moves only when the test says so."""

    def __init__(self, t: float) -> None:
        self.t = t

    def time(self) -> float:
        return self.t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


class Recorder:
    """Every event of one engine, in order, with bounded waits (no sleeps as synchronisation)."""

    def __init__(self, engine: Engine) -> None:
        self.events: list[EngineEvent] = []
        self._changed = asyncio.Event()
        self._cursor = 0
        engine.subscribe(self._on_event)

    def _on_event(self, event: EngineEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait(self, kind: type[E], pred: Callable[[E], bool] | None = None, within: float = 5.0) -> E:
        """Next event of ``kind`` (matching ``pred``) after the previous wait's match."""
        async def scan() -> E:
            while True:
                for i in range(self._cursor, len(self.events)):
                    ev = self.events[i]
                    if isinstance(ev, kind) and (pred is None or pred(ev)):
                        self._cursor = i + 1
                        return ev
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(scan(), within)
        except TimeoutError:
            seen = [type(e).__name__ + (f"({getattr(e, 'reason', '')})" if hasattr(e, "reason") else "")
                    for e in self.events]
            raise AssertionError(f"no {kind.__name__} within {within}s; events: {seen}") from None


FAST = dict(
    qr_first_ttl=2.0, qr_next_ttl=1.0, reconnect_base=0.05, reconnect_cap=0.2,
    connect_timeout=3.0, query_timeout=3.0, pairing_wait_timeout=5.0,
)


def engine_config(sb: Sandbox, **overrides: Any) -> EngineConfig:
    base = EngineConfig(ws_url=sb.ws_url, root_public_key=bytes.fromhex(sb.root_public_key), **FAST)  # type: ignore[arg-type]
    return dataclasses.replace(base, **overrides)


async def link_by_qr(sb: Sandbox, engine: Engine, rec: Recorder, phone: str = PHONE) -> OpenEvent:
    await engine.start()
    qr = await rec.wait(QrEvent)
    await sb.scan(phone, qr.qr)
    return await rec.wait(OpenEvent)


def sandbox_conn(sb: Sandbox, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    matches = [c for c in sb.list_connections() if pred(c)]
    assert matches, sb.list_connections()
    return matches[-1]
EngineFactory = Callable[..., tuple[Engine, Recorder]]


class FakeServer:
    """A deliberately misbehaving WA server on loopback, built on evolink.wire's responder.

    ``mode``: "garbage_hello" (random bytes instead of ServerHello), "truncated_hello" (a frame
    header promising more bytes than ever arrive), "silent" (handshake completes, then nothing),
    "garbage_transport" (handshake completes, then an undecryptable frame).
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.root = KeyPair.generate()
        self.intermediate = KeyPair.generate()
        self.static = KeyPair.generate()
        self.connections = 0
        self._server: Server | None = None
        self.ws_url = ""

    async def __aenter__(self) -> FakeServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None, ping_interval=None)
        port = self._server.sockets[0].getsockname()[1]
        self.ws_url = f"ws://127.0.0.1:{port}/ws/chat"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close(close_connections=True)
        await self._server.wait_closed()

    async def _recv_frame(self, ws: ServerConnection, reader: ServerFrameReader) -> bytes:
        while True:
            message = await ws.recv()
            assert isinstance(message, bytes)
            frames = reader.feed(message)
            if frames:
                return frames[0]

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        reader = ServerFrameReader()
        responder = NoiseResponder(self.static)
        responder.read_client_hello(await self._recv_frame(ws, reader))
        if self.mode == "garbage_hello":
            await ws.send(encode_frame(os.urandom(64)))
            await ws.wait_closed()
            return
        if self.mode == "truncated_hello":
            await ws.send(b"\x00\x01\x00" + os.urandom(10))
            await ws.wait_closed()
            return
        now = int(time.time())
        chain = build_cert_chain(self.root, self.intermediate, self.static.public,
                                 not_before=now - 3600, not_after=now + 3600)
        await ws.send(encode_frame(responder.server_hello(chain)))
        responder.read_client_finish(await self._recv_frame(ws, reader))
        if self.mode == "garbage_transport":
            await ws.send(encode_frame(os.urandom(40)))
        await ws.wait_closed()
