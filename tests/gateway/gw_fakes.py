"""A small fake engine honouring the evolink.wa event contract, for unit tests of the gateway's logic.

It behaves like the engine's documented interface: `start()` connects in the background and emits
`ConnectingEvent`, then a QR (unregistered creds) or `OpenEvent` (registered creds);
`request_pairing_code` waits for the registration socket, returns the same code on repeat calls
and emits `PairingCodeEvent`; rotations, link, connection loss and logout are driven by the test.
Acceptance tests use the real engine and sandbox instead.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from evolink.gateway.ports import EngineRequest
from evolink.wa.creds import Creds
from evolink.wa.events import (
    CloseEvent,
    CloseReason,
    ConnectingEvent,
    EngineEvent,
    LoggedOutEvent,
    OpenEvent,
    PairingCodeEvent,
    QrEvent,
)
from evolink.wire.crypto import generate_pairing_code


@dataclass
class FakeHub:
    """Shared knobs and a registry of the engines built by the factory."""

    qr_delay: float = 0.01
    never_qr: bool = False
    refuse_codes: bool = False
    code_delay: float = 0.01
    engines: dict[str, list[FakeEngine]] = field(default_factory=dict)
    code_requests: int = 0
    starts: int = 0

    def factory(self, req: EngineRequest) -> FakeEngine:
        engine = FakeEngine(req, self)
        self.engines.setdefault(req.instance_name, []).append(engine)
        return engine

    def latest(self, name: str) -> FakeEngine:
        return self.engines[name][-1]


class FakeEngine:
    def __init__(self, req: EngineRequest, hub: FakeHub) -> None:
        self.req = req
        self.hub = hub
        self.state = "close"
        self._subs: list[Callable[[EngineEvent], Any]] = []
        self._qr_index = -1
        self._registration = asyncio.Event()
        self._code: PairingCodeEvent | None = None
        self._code_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.companion_hellos = 0
        self.presence: list[str] = []

    # engine interface -----------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[EngineEvent], Any]) -> Callable[[], None]:
        self._subs.append(callback)
        return lambda: self._subs.remove(callback) if callback in self._subs else None

    def emit(self, ev: EngineEvent) -> None:
        for cb in list(self._subs):
            cb(ev)

    async def start(self) -> None:
        self.hub.starts += 1
        self._spawn(self._connect())

    async def request_pairing_code(self, phone: str) -> PairingCodeEvent:
        self.hub.code_requests += 1
        async with self._code_lock:
            if self._code is not None:
                return self._code
            await asyncio.wait_for(self._registration.wait(), 5)
            await asyncio.sleep(self.hub.code_delay)
            if self.hub.refuse_codes:
                raise RuntimeError("server refused companion_hello: 400 bad-request")
            self.companion_hellos += 1
            now = datetime.now(UTC)
            code = generate_pairing_code()
            self._code = PairingCodeEvent(code, phone, now, now + timedelta(seconds=160))
            self.emit(self._code)
            return self._code

    async def send_presence(self, presence: str) -> None:
        self.presence.append(presence)

    async def logout(self) -> None:
        await self.req.creds_store.clear()
        self.emit(LoggedOutEvent("logged out"))
        self.emit(CloseEvent(CloseReason.LOGGED_OUT, 401, False, "logged out"))
        self.state = "close"

    async def close(self) -> None:
        self.closed = True
        for t in self._tasks:
            t.cancel()
        if self.state != "close":
            self.state = "close"
            self.emit(CloseEvent(CloseReason.CLOSED_BY_USER, None, False, "closed"))

    # test drivers -----------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        self.state = "connecting"
        self.emit(ConnectingEvent(1))
        creds = await self.req.creds_store.load()
        if creds is not None and creds.registered:
            await asyncio.sleep(0)
            self.state = "open"
            self.emit(OpenEvent(creds.me_jid or "", None, "Alice", False))
            return
        if creds is None:
            await self.req.creds_store.save(Creds.new())
        if self.hub.never_qr:
            return
        await asyncio.sleep(self.hub.qr_delay)
        self._registration.set()
        self.rotate_qr()

    def rotate_qr(self) -> None:
        self._qr_index += 1
        ref = f"2@{secrets.token_hex(8)}"
        self.emit(QrEvent(f"https://wa.me/settings/linked_devices#{ref},bm9pc2U=,aWQ=,YWR2,1", self._qr_index, 6,
                          datetime.now(UTC) + timedelta(seconds=60)))

    async def link(self, phone: str = "15550001111", device: int = 3) -> None:
        """The phone entered the code / scanned: pair-success, 515, login, open."""
        creds = await self.req.creds_store.load()
        assert creds is not None
        creds.me_jid = f"{phone}:{device}@s.whatsapp.net"
        creds.account = b"signed-identity"
        await self.req.creds_store.save(creds)
        self.emit(CloseEvent(CloseReason.RESTART_REQUIRED, 515, True, "restart required"))
        self.emit(ConnectingEvent(1))
        self.state = "open"
        self.emit(OpenEvent(creds.me_jid, None, "Alice", True))

    def refs_ended(self) -> None:
        """The registration socket ran out of QR refs (or its code expired): closed, no reconnect."""
        self.state = "close"
        self.emit(CloseEvent(CloseReason.QR_REFS_ENDED, 408, False, "QR refs attempts ended"))

    def lose_connection(self) -> None:
        """Registration socket lost: the code dies with it; the engine reconnects with a new socket."""
        self._code = None
        self._registration = asyncio.Event()
        self._qr_index = -1
        self.emit(CloseEvent(CloseReason.TIMED_OUT, 408, True, "keepalive deadline"))
        self._spawn(self._connect())
