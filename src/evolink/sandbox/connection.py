"""One client socket: handshake, then registration (QR / pairing code) or login, then stanzas.

The parts, one file per concern: ``transport.py`` (frames, outbox, close), ``handshake.py``
(Noise responder), ``linking.py`` (registration and linking), ``login.py``, ``iq.py`` (the iq
handler table), ``router.py`` / ``messages.py`` / ``receipts.py`` (routing). This class holds
the connection's state and dispatches stanzas through a table keyed by tag. Any malformed input
from the client closes *this* socket cleanly.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from google.protobuf.message import DecodeError as PbDecodeError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from evolink.sandbox import iq, stanzas
from evolink.sandbox.errors import AdminError
from evolink.sandbox.handshake import client_version, handshake, version_refused
from evolink.sandbox.host import Host
from evolink.sandbox.linking import CodeRegistration, Linker, ProtocolViolation, Registration
from evolink.sandbox.login import login, welcome
from evolink.sandbox.services import IqRequest
from evolink.sandbox.store import DeviceRecord, PhoneRecord
from evolink.sandbox.transport import Gone, Link
from evolink.wire.binary import Node
from evolink.wire.errors import WireError

log = logging.getLogger("evolink.sandbox.connection")

MAX_LOG = 200  # stanza labels kept per connection


class State(enum.StrEnum):
    HANDSHAKE = "handshake"
    REGISTRATION = "registration"
    LOGIN = "login"
    CLOSED = "closed"


class Connection:
    def __init__(self, host: Host, ws: ServerConnection, conn_id: str) -> None:
        self.host = host
        self.ws = ws
        self.id = conn_id
        self.link = Link(ws, conn_id, max_frame_size=host.config.max_frame_size,
                         faults=lambda: host.faults, on_closing=self._on_closing)
        self.state = State.HANDSHAKE
        self.opened_at = host.clock.time()
        self.closed_at: float | None = None
        remote = ws.remote_address
        self.remote = f"{remote[0]}:{remote[1]}" if remote else "?"
        self.client_static: bytes | None = None
        self.linker: Linker | None = None
        self.phone: str | None = None
        self.device: int | None = None
        self.pings_answered = 0
        self.presence: dict[str, str] | None = None
        self.deliverable = False  # the router may push to it (after login and the offline replay)
        self.stanza_counts: collections.Counter[str] = collections.Counter()
        self.stanza_log: collections.deque[str] = collections.deque(maxlen=MAX_LOG)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[str, Callable[[Node], Awaitable[None]]] = {
            "iq": self._on_iq,
            "presence": self._on_presence,
            "message": self._on_message,
            "receipt": self._on_receipt,
            "ack": self._on_ack,
        }

    # ------------------------------------------------------------------ public view / control
    @property
    def open(self) -> bool:
        # A socket we are closing no longer counts: it cannot be linked or kicked any more.
        return self.closed_at is None and not self.link.closing

    @property
    def close_reason(self) -> str | None:
        return self.link.close_reason

    @property
    def registration(self) -> Registration | None:
        return self.linker.registration if self.linker else None

    @property
    def code_registration(self) -> CodeRegistration | None:
        return self.linker.code_registration if self.linker else None

    def to_json(self) -> dict[str, Any]:
        code = self.code_registration
        reg = self.registration
        return {
            "id": self.id,
            "open": self.open,
            "state": self.state.value,
            "remote": self.remote,
            "tls": self.host.config.tls,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason,
            "phone": self.phone,
            "device": self.device,
            "jid": f"{self.phone}:{self.device}@s.whatsapp.net" if self.phone and self.device else None,
            "edge_routing": self.link.routing_info is not None,
            "qr_refs": len(reg.refs) if reg else 0,
            "pairing_code": None if code is None else {
                "phone": code.phone, "created_at": code.created_at, "expires_at": code.expires_at,
                "wrong_attempts": code.wrong_attempts,
            },
            "frames_in": self.link.frames_in,
            "frames_out": self.link.frames_out,
            "pings_answered": self.pings_answered,
            "presence": self.presence,
            "stanzas": dict(self.stanza_counts),
            "stanza_log": list(self.stanza_log),
        }

    def has_ref(self, ref: str) -> bool:
        return self.linker is not None and self.linker.has_ref(ref)

    def current_ref_valid(self, ref: str) -> bool:
        return self.linker is not None and self.linker.current_ref_valid(ref)

    async def scan(self, phone: PhoneRecord, noise_public: bytes, identity_public: bytes,
                   adv_secret: bytes, platform_id: str | None) -> DeviceRecord:
        if self.linker is None:
            raise AdminError(409, "not_registering", "connection is not a registration connection")
        return await self.linker.scan(phone, noise_public, identity_public, adv_secret, platform_id)

    async def enter_code(self, phone: PhoneRecord, code: str) -> DeviceRecord:
        if self.linker is None:
            raise AdminError(404, "no_pending_registration", f"no pairing-code registration for {phone.phone}")
        return await self.linker.enter_code(phone, code)

    async def kick(self, code: int) -> None:
        """Send the ``stream:error`` for ``code`` (if the stream is up) and close; returns once closed."""
        self.begin_close(1000, f"kicked with {code}", stanzas.stream_error(code))
        await self.link.wait_closed()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.begin_close(code, reason)
        await self.link.wait_closed()

    def begin_close(self, code: int = 1000, reason: str = "", final: Node | None = None) -> None:
        self.link.begin_close(code, reason, final)

    def push(self, node: Node) -> bool:
        """Queue a routed stanza for this socket without waiting (False if it is closing)."""
        return self.link.try_send(node)

    async def push_paced(self, node: Node) -> None:
        await self.link.send_paced(node)

    def _on_closing(self) -> None:
        self.deliverable = False
        self.host.connection_closing(self)

    # ------------------------------------------------------------------------ main loop
    async def run(self) -> None:
        log.info("connection open", extra={"conn": self.id, "remote": self.remote})
        self.link.start()
        try:
            if self.host.faults.drop_after_frames == 0:
                self.link.abort("fault: drop after 0 frames")
                return
            if await self._start():
                await self._read_loop()
        except ConnectionClosed:
            self.link.close_reason = self.link.close_reason or "closed by client"
        except Gone:  # we are closing this socket ourselves: let the writer finish the close
            await self.link.wait_closed()
        except TimeoutError:
            log.info("closing idle connection", extra={"conn": self.id, "state": self.state.value})
            await self.close(1000, "idle timeout")
        except (WireError, ProtocolViolation, PbDecodeError, UnicodeDecodeError, ValueError) as exc:
            log.info("closing on bad client input", extra={"conn": self.id, "error": repr(exc)[:200]})
            self.link.close_reason = f"protocol error: {type(exc).__name__}"
            await self.close(1002, "protocol error")
        except Exception:  # one broken client must never take the server down
            log.exception("connection handler failed", extra={"conn": self.id})
            self.link.close_reason = "internal error"
            await self.close(1011, "internal error")
        finally:
            self._teardown()

    async def _start(self) -> bool:
        """Handshake, then login or registration; False when the socket is being closed."""
        host = self.host
        done = await handshake(self.link, host.server_static, host.cert_chain(), host.config.handshake_timeout)
        self.client_static = done.client_static
        if version_refused(done.payload, host.config.min_client_version):
            shown = ".".join(str(p) for p in client_version(done.payload))
            log.info("client version refused", extra={"conn": self.id, "version": shown})
            self.link.begin_close(1000, "client version refused: 405",
                                  Node("failure", {"reason": "405", "location": "sandbox"}))
            await self.link.wait_closed()
            return False
        if done.payload.HasField("username"):
            self.state = State.LOGIN
            record = await login(host, self.link, done.payload, done.client_static)
            if record is None:
                return False
            self.phone, self.device = record.phone, record.device
            host.connection_logged_in(self)
            await welcome(host, self.link, record)
            self._spawn(self._replay())
            return True
        if done.payload.HasField("devicePairingData"):
            self.linker = Linker(host, self.link, self.id, done.client_static, close=self._stream_error_and_close,
                                 spawn=self._spawn, on_linked=self._linked)
            self.state = State.REGISTRATION
            return await self.linker.register(done.payload)
        raise ProtocolViolation("client payload is neither login nor registration")

    async def _replay(self) -> None:
        try:
            await self.host.router.replay(self)
        except Gone:
            pass

    def _linked(self, phone: str, device: int) -> None:
        self.phone, self.device = phone, device

    def _teardown(self) -> None:
        self.closed_at = self.host.clock.time()
        self.state = State.CLOSED if self.state is State.HANDSHAKE else self.state
        self.deliverable = False
        self.link.teardown()
        for task in list(self._tasks):
            task.cancel()
        if self.linker is not None:
            self.linker.forget()
        self.host.connection_closed(self)
        log.info("connection closed", extra={"conn": self.id, "reason": self.close_reason})

    async def _read_loop(self) -> None:
        idle = self.host.config.idle_timeout
        while True:
            node = await self.link.recv_node(idle)
            name = stanzas.label(node)
            self.stanza_counts[name] += 1
            self.stanza_log.append(name)
            if self.link.closing:  # a closing socket only waits for its close handshake
                continue
            handler = self._handlers.get(node.tag)
            if handler is not None:
                await handler(node)
            # ib (unified_session, offline_batch…), notifications: nothing to answer

    async def _stream_error_and_close(self, code: int, reason: str) -> None:
        self.begin_close(1000, reason, stanzas.stream_error(code))
        await self.link.wait_closed()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --------------------------------------------------------------------------- handlers
    @property
    def _logged_in(self) -> bool:
        return self.state is State.LOGIN and self.phone is not None and self.device is not None

    async def _on_iq(self, node: Node) -> None:
        kind = node.attrs.get("type")
        if kind in ("result", "error"):
            self.link.resolve(node)
            return
        kids = stanzas.children(node)
        first = kids[0] if kids else None
        xmlns = node.attrs.get("xmlns", "")
        if first is not None and first.tag == "link_code_companion_reg":
            if self.linker is None:
                await self.link.send_node(stanzas.error(node, 400, "bad-request"))
            else:
                await self.linker.on_link_code_iq(node, first)
            return
        if not self._logged_in:
            # Before login only keepalive and linking make sense; answer politely anyway.
            await self.link.send_node(stanzas.result(node))
            if xmlns == "w:p":
                self.pings_answered += 1
            return
        assert self.phone is not None and self.device is not None
        answer = iq.answer(self.host.router.sv, IqRequest(node, first, self.phone, self.device))
        await self.link.send_node(answer)
        if xmlns == "w:p":
            self.pings_answered += 1
        if first is not None and first.tag == "remove-companion-device":
            await self.host.device_logged_out(self)

    async def _on_presence(self, node: Node) -> None:
        """``<presence type="available|unavailable" name=…/>``: no answer, just remembered."""
        kind = node.attrs.get("type", "available")
        if kind not in ("available", "unavailable"):
            return  # other presence stanzas (subscribe…) need no sandbox state
        self.presence = {"type": kind, "name": node.attrs.get("name", ""), "at": str(self.host.clock.unix())}

    async def _on_message(self, node: Node) -> None:
        if self._logged_in:
            await self.link.send_node(self.host.router.on_message(self, node))

    async def _on_receipt(self, node: Node) -> None:
        if self._logged_in:
            self.host.router.on_receipt(self, node)

    async def _on_ack(self, node: Node) -> None:
        if self._logged_in:
            self.host.router.on_ack(self, node)
