"""One client socket: Noise responder, registration (QR / pairing code) or login, then stanzas.

The sandbox plays both the WhatsApp server and the user's primary phone. Everything on the wire
goes through ``evolink.wire`` (frames, Noise, binary nodes, protobufs); this module only decides
what to answer. Any malformed input from the client closes *this* socket cleanly.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError as PbDecodeError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from evolink.sandbox import stanzas
from evolink.sandbox.errors import AdminError
from evolink.sandbox.phone import (
    DeviceIdentity,
    LinkRefused,
    PrimaryHello,
    build_device_identity,
    finish_code_pairing,
    primary_hello,
    verify_device_sign,
)
from evolink.sandbox.store import PHONE_RE, DeviceRecord, PhoneRecord
from evolink.wire import binary, crypto, frames, noise
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.crypto import KeyPair
from evolink.wire.errors import WireError
from evolink.wire.proto import wa_pb2

if TYPE_CHECKING:
    from evolink.sandbox.server import Sandbox

log = logging.getLogger("evolink.sandbox.connection")

MAX_LOG = 200  # stanza labels kept per connection
MAX_WRONG_CODES = 5  # wrong pairing-code attempts before the registration is dropped
MAX_OUTBOX = 1000  # frames queued for a client that does not read; more closes the socket
CLOSE_TIMEOUT = 5.0  # a closing socket gets this long to flush its queue and close, then it is aborted


@dataclass(frozen=True, slots=True)
class _CloseRequest:
    """Last item of a closing socket's outbox: send the WebSocket close frame."""

    code: int
    reason: str


class ProtocolViolation(Exception):
    """The client sent something the server refuses; the socket is closed."""


class _Gone(Exception):
    """The socket went away while an admin operation waited on it."""


@dataclass(slots=True)
class QrRef:
    ref: str
    expires_at: float  # sandbox time


@dataclass(slots=True)
class Registration:
    """What a registration ClientPayload told us about the would-be companion."""

    identity_public: bytes
    registration_id: int
    platform: str
    refs: list[QrRef]
    started_at: float


@dataclass(slots=True)
class CodeRegistration:
    """A pending pairing-code registration; bound to its socket and dies with it."""

    phone: str
    ref: bytes
    wrapped_companion: bytes
    platform_id: str
    platform_display: str
    created_at: float
    expires_at: float
    wrong_attempts: int = 0


class Connection:
    def __init__(self, sandbox: Sandbox, ws: ServerConnection, conn_id: str) -> None:
        self.sb = sandbox
        self.ws = ws
        self.id = conn_id
        self.state = "handshake"  # -> registration | login -> closed
        self.opened_at = sandbox.clock.time()
        self.closed_at: float | None = None
        self.close_reason: str | None = None
        remote = ws.remote_address
        self.remote = f"{remote[0]}:{remote[1]}" if remote else "?"
        self.client_static: bytes | None = None
        self.routing_info: bytes | None = None
        self.registration: Registration | None = None
        self.code_registration: CodeRegistration | None = None
        self.phone: str | None = None
        self.device: int | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.pings_answered = 0
        self.stanza_counts: collections.Counter[str] = collections.Counter()
        self.stanza_log: collections.deque[str] = collections.deque(maxlen=MAX_LOG)
        self._reader = frames.ServerFrameReader(max_size=sandbox.config.max_frame_size)
        self._pending: collections.deque[bytes] = collections.deque()
        self._transport: noise.Transport | None = None
        # One writer task drains the outbox, so neither the reader nor an admin call ever waits on a
        # (possibly delayed or stalled) send. Nodes are encrypted by the writer at send time so the
        # Noise counter always follows the order on the wire.
        self._outbox: collections.deque[bytes | Node | _CloseRequest] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._closing_event = asyncio.Event()
        self._close_watchdog: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._writer_busy = False  # the writer has taken a frame off the queue and is writing it
        self.presence: dict[str, str] | None = None
        self._waiters: dict[str, asyncio.Future[Node]] = {}
        self._finish_waiter: asyncio.Future[Node] | None = None
        self._linking = False
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ public view / control
    @property
    def open(self) -> bool:
        # A socket we are closing no longer counts: it cannot be linked or kicked any more.
        return self.closed_at is None and not self._closing

    def to_json(self) -> dict[str, Any]:
        code = self.code_registration
        return {
            "id": self.id,
            "open": self.open,
            "state": self.state,
            "remote": self.remote,
            "tls": self.sb.config.tls,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason,
            "phone": self.phone,
            "device": self.device,
            "jid": f"{self.phone}:{self.device}@s.whatsapp.net" if self.phone and self.device else None,
            "edge_routing": self.routing_info is not None,
            "qr_refs": len(self.registration.refs) if self.registration else 0,
            "pairing_code": None if code is None else {
                "phone": code.phone, "created_at": code.created_at, "expires_at": code.expires_at,
                "wrong_attempts": code.wrong_attempts,
            },
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "pings_answered": self.pings_answered,
            "presence": self.presence,
            "stanzas": dict(self.stanza_counts),
            "stanza_log": list(self.stanza_log),
        }

    def has_ref(self, ref: str) -> bool:
        return self.registration is not None and any(r.ref == ref for r in self.registration.refs)

    async def kick(self, code: int) -> None:
        """Send the ``stream:error`` for ``code`` (if the stream is up) and close; returns once closed.

        Never waits behind the latency fault: a closing socket flushes its queue without delay.
        """
        self.begin_close(1000, f"kicked with {code}", stanzas.stream_error(code))
        await self.wait_closed()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.begin_close(code, reason)
        await self.wait_closed()

    def begin_close(self, code: int = 1000, reason: str = "", final: Node | None = None) -> None:
        """Start closing without waiting: queue ``final`` (if the stream is up), then the close frame.

        Frames already queued are still sent first (clients see e.g. an iq result before the
        ``stream:error``) but without the latency fault; a watchdog aborts the TCP link if all this
        does not finish within :data:`CLOSE_TIMEOUT` (a client that stopped reading).
        """
        if self._closing:
            return
        self._closing = True
        self._closing_event.set()
        self._close_watchdog = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._close_overdue)
        self.close_reason = self.close_reason or reason or f"closed ({code})"
        self.sb._connection_closing(self)
        if final is not None and self._transport is not None:
            self._outbox.append(final)
        self._outbox.append(_CloseRequest(code, reason[:120]))
        self._outbox_ready.set()
        if self._writer is None:  # never started (closing before run): nothing else will close it
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    async def wait_closed(self) -> None:
        """Wait until the close frame went out or the link was cut (at most ~CLOSE_TIMEOUT: watchdog)."""
        if self._writer is not None:
            await asyncio.wait({self._writer})

    def abort(self, reason: str) -> None:
        """Drop the TCP connection without a close frame (fault injection)."""
        if not self._closing:
            self._closing = True
            self._closing_event.set()
            self.close_reason = reason
            self.sb._connection_closing(self)
        self._outbox.clear()
        self.ws.transport.abort()

    # ------------------------------------------------------------------------ main loop
    async def run(self) -> None:
        log.info("connection open", extra={"conn": self.id, "remote": self.remote})
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        try:
            if self.sb.faults.drop_after_frames == 0:
                self.abort("fault: drop after 0 frames")
                return
            await self._handshake()
            await self._read_loop()
        except ConnectionClosed:
            self.close_reason = self.close_reason or "closed by client"
        except _Gone:  # we are closing this socket ourselves: let the writer finish the close
            await self.wait_closed()
        except TimeoutError:
            log.info("closing idle connection", extra={"conn": self.id, "state": self.state})
            await self.close(1000, "idle timeout")
        except (WireError, ProtocolViolation, PbDecodeError, UnicodeDecodeError, ValueError) as exc:
            log.info("closing on bad client input", extra={"conn": self.id, "error": repr(exc)[:200]})
            self.close_reason = f"protocol error: {type(exc).__name__}"
            await self.close(1002, "protocol error")
        except Exception:  # one broken client must never take the server down
            log.exception("connection handler failed", extra={"conn": self.id})
            self.close_reason = "internal error"
            await self.close(1011, "internal error")
        finally:
            self._teardown()

    def _teardown(self) -> None:
        self.closed_at = self.sb.clock.time()
        self.state = "closed" if self.state == "handshake" else self.state
        self._closing = True
        self._closing_event.set()
        self.sb._connection_closing(self)
        self._outbox.clear()
        if self._close_watchdog is not None:
            self._close_watchdog.cancel()
        if self._writer is not None:
            self._writer.cancel()  # the socket is gone: nothing queued can be delivered any more
        for task in list(self._tasks):
            task.cancel()
        for fut in [*self._waiters.values(), self._finish_waiter]:
            if fut is not None and not fut.done():
                fut.set_exception(_Gone())
        self._waiters.clear()
        self.code_registration = None  # a pairing-code registration dies with its socket
        self.sb._connection_closed(self)
        log.info("connection closed", extra={"conn": self.id, "reason": self.close_reason})

    async def _recv_frame(self, within: float) -> bytes:
        deadline = time.monotonic() + within
        while not self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(self.ws.recv(), remaining)
            if isinstance(message, str):
                continue  # only binary messages carry frames
            self._pending.extend(self._reader.feed(message))
        self.frames_in += 1
        return self._pending.popleft()

    async def _handshake(self) -> None:
        cfg = self.sb.config
        deadline = time.monotonic() + cfg.handshake_timeout
        responder = noise.NoiseResponder(self.sb.server_static)
        responder.read_client_hello(await self._recv_frame(deadline - time.monotonic()))
        self.routing_info = self._reader.routing_info
        await self._send_frame(responder.server_hello(self.sb.cert_chain()))
        finish = responder.read_client_finish(await self._recv_frame(deadline - time.monotonic()))
        self.client_static = finish.static
        self._transport = responder.transport()
        payload = wa_pb2.ClientPayload.FromString(finish.payload)
        if payload.HasField("username"):
            await self._login(payload)
        elif payload.HasField("devicePairingData"):
            await self._register(payload)
        else:
            raise ProtocolViolation("client payload is neither login nor registration")

    async def _read_loop(self) -> None:
        idle = self.sb.config.idle_timeout
        while True:
            frame = await self._recv_frame(idle)
            assert self._transport is not None
            node = binary.decode(self._transport.decrypt(frame))
            name = stanzas.label(node)
            self.stanza_counts[name] += 1
            self.stanza_log.append(name)
            if not self._closing:  # a closing socket only waits for its close handshake
                await self._dispatch(node)

    # ----------------------------------------------------------------------------- sending
    async def _send_frame(self, payload: bytes) -> None:
        """Send an unencrypted frame (the handshake's server hello); see :meth:`send_node`."""
        await self._send(payload)

    async def send_node(self, node: Node) -> None:
        """Send ``node`` without ever waiting on the client (raises :class:`_Gone` if closing).

        Written at once when nothing is queued, no latency fault is set and the transport is not
        paused by flow control (then ``ws.send`` does not suspend); queued for the writer otherwise.
        The fast path keeps answers as prompt as a direct write on a loaded sandbox.
        """
        if self._transport is None:
            raise _Gone()
        await self._send(node)

    async def _send(self, item: bytes | Node) -> None:
        if (not self._outbox and not self._writer_busy and not self._closing
                and not self.sb.faults.latency_ms and not self.ws.paused):
            await self._write(item)
        else:
            self._enqueue(item)

    def _enqueue(self, item: bytes | Node) -> None:
        if self._closing:
            raise _Gone()
        if len(self._outbox) >= MAX_OUTBOX:
            log.info("client is not reading; closing", extra={"conn": self.id, "queued": len(self._outbox)})
            self.begin_close(1008, "outbox overflow: client is not reading")
            raise _Gone()
        self._outbox.append(item)
        self._outbox_ready.set()

    async def _write_loop(self) -> None:
        """The socket's only sender: applies the latency fault, encrypts, writes, closes."""
        try:
            while self.closed_at is None:
                if not self._outbox:
                    self._outbox_ready.clear()
                    await self._outbox_ready.wait()
                    continue
                item = self._outbox[0]
                latency = self.sb.faults.latency_ms
                if latency and not self._closing:
                    # Delay this frame, but wake up at once when a close starts (kick, replacement).
                    # (asyncio.wait, not wait_for: 3.11's wait_for can swallow our own cancellation.)
                    closing = asyncio.ensure_future(self._closing_event.wait())
                    try:
                        await asyncio.wait({closing}, timeout=latency / 1000)
                    finally:
                        closing.cancel()
                if not self._outbox or self._outbox[0] is not item:
                    continue  # the queue was cleared (abort) while we waited
                self._outbox.popleft()
                if isinstance(item, _CloseRequest):
                    await self.ws.close(item.code, item.reason)
                    return
                self._writer_busy = True
                try:
                    if not await self._write(item):
                        return
                finally:
                    self._writer_busy = False
        except (ConnectionClosed, OSError):
            self._outbox.clear()  # the reader sees the closed socket and tears down
        except Exception:
            log.exception("connection writer failed", extra={"conn": self.id})
            self._outbox.clear()
            self.ws.transport.abort()

    async def _write(self, item: bytes | Node) -> bool:
        """Encrypt (nodes) and write one frame; False once the drop fault has cut the link."""
        if isinstance(item, Node):
            assert self._transport is not None
            payload = self._transport.encrypt(binary.encode(item))
        else:
            payload = item
        await self.ws.send(frames.encode_frame(payload))
        self.frames_out += 1
        drop = self.sb.faults.drop_after_frames
        if drop is not None and self.frames_out >= drop:
            self.abort(f"fault: drop after {drop} frames")
            return False
        return True

    def _close_overdue(self) -> None:
        """The close did not finish in time (a client that stopped reading): cut the TCP link.

        The abort also ends a send that is blocked on such a client, so the writer can exit.
        """
        if self._writer is not None and not self._writer.done():
            log.info("close did not finish in time; aborting", extra={"conn": self.id})
            self._outbox.clear()
            self.ws.transport.abort()

    async def _request(self, node: Node, within: float) -> Node:
        """Send a server-initiated iq and wait for the client's result/error with the same id."""
        iq_id = node.attrs["id"]
        fut: asyncio.Future[Node] = asyncio.get_running_loop().create_future()
        self._waiters[iq_id] = fut
        try:
            await self.send_node(node)
            return await asyncio.wait_for(fut, within)
        finally:
            self._waiters.pop(iq_id, None)

    async def _stream_error_and_close(self, code: int, reason: str) -> None:
        self.begin_close(1000, reason, stanzas.stream_error(code))
        await self.wait_closed()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------------ registration
    async def _register(self, payload: wa_pb2.ClientPayload) -> None:
        data = payload.devicePairingData
        if len(data.eIdent) != 32 or len(data.eSkeyVal) != 32 or len(data.eRegid) != 4:
            raise ProtocolViolation("malformed devicePairingData")
        if not crypto.verify(data.eIdent, b"\x05" + data.eSkeyVal, data.eSkeySig):
            # The real service refuses a registration whose signed pre-key does not verify.
            self.begin_close(1000, "bad signed pre-key signature", Node("failure", {"reason": "400"}))
            await self.wait_closed()
            return
        platform = "unknown"
        if data.deviceProps:
            with contextlib.suppress(PbDecodeError):
                props = wa_pb2.DeviceProps.FromString(data.deviceProps)
                platform = props.os or platform
        cfg = self.sb.config
        now = self.sb.clock.time()
        refs = []
        for i in range(cfg.qr_ref_count):
            ttl = cfg.qr_first_ttl + cfg.qr_next_ttl * i
            refs.append(QrRef("2@" + base64.b64encode(secrets.token_bytes(48)).decode(), now + ttl))
        self.registration = Registration(
            identity_public=bytes(data.eIdent),
            registration_id=int.from_bytes(data.eRegid, "big"),
            platform=platform,
            refs=refs,
            started_at=now,
        )
        self.state = "registration"
        node = Node(
            "iq",
            {"from": SERVER_JID, "type": "set", "id": stanzas.new_id(), "xmlns": "md"},
            [Node("pair-device", {}, [Node("ref", {}, r.ref.encode()) for r in refs])],
        )
        await self.send_node(node)
        self._spawn(self._registration_expiry())

    def _registration_deadline(self) -> float:
        assert self.registration is not None
        deadline = self.registration.refs[-1].expires_at if self.registration.refs else self.opened_at
        if self.code_registration is not None:
            deadline = max(deadline, self.code_registration.expires_at)
        return deadline + self.sb.config.qr_close_grace

    async def _registration_expiry(self) -> None:
        """Close the registration socket once its refs (and any pairing code) have run out."""
        while True:
            remaining = self._registration_deadline() - self.sb.clock.time()
            if remaining <= 0 and not self._linking:
                break
            # Re-evaluate at least every second: the sandbox clock may be moved by the admin.
            await asyncio.sleep(min(max(remaining, 0.05), 1.0))
        log.info("registration refs exhausted", extra={"conn": self.id})
        # 408 mirrors what Baileys reports when it runs out of refs itself ("QR refs attempts ended").
        await self._stream_error_and_close(408, "qr refs exhausted")

    def current_ref_valid(self, ref: str) -> bool:
        assert self.registration is not None
        now = self.sb.clock.time()
        return any(r.ref == ref and now <= r.expires_at for r in self.registration.refs)

    async def link_device(self, phone: PhoneRecord, *, identity_public: bytes, adv_secret: bytes,
                          method: str, platform: str) -> DeviceRecord:
        """pair-success → verified pair-device-sign → device stored → stream:error 515.

        Callers (:meth:`scan`, :meth:`enter_code`) hold the socket's ``_linking`` flag.
        """
        if self.registration is None or self._transport is None:
            raise AdminError(409, "not_registering", "connection is not a registration connection")
        sb = self.sb
        account = KeyPair.from_private(phone.identity_private)
        device = sb.store.allocate_device(phone.phone)
        now = sb.clock.unix()
        identity: DeviceIdentity = build_device_identity(
            account, identity_public, adv_secret, key_index=device, timestamp=now
        )
        node = Node(
            "iq",
            {"from": SERVER_JID, "type": "set", "id": stanzas.new_id(), "xmlns": "md", "t": str(now)},
            [Node("pair-success", {}, [
                Node("device-identity", {}, identity.container),
                Node("platform", {"name": sb.config.phone_platform}),
                Node("device", {"jid": f"{phone.phone}:{device}@s.whatsapp.net", "lid": f"{phone.lid}:{device}@lid"}),
            ])],
        )
        try:
            reply = await self._request(node, sb.config.link_timeout)
        except TimeoutError as exc:
            raise AdminError(504, "client_timeout", "the companion did not answer pair-success") from exc
        except (_Gone, ConnectionClosed) as exc:
            raise AdminError(409, "connection_closed", "the companion closed the socket (it refused pair-success)") from exc
        if reply.attrs.get("type") != "result":
            err = next((c for c in stanzas.children(reply) if c.tag == "error"), None)
            text = f"{err.attrs.get('code')} {err.attrs.get('text')}" if err else "error"
            raise AdminError(409, "companion_refused", f"the companion refused pair-success: {text}")
        sign = next((c for c in stanzas.children(reply) if c.tag == "pair-device-sign"), None)
        ident = next((c for c in stanzas.children(sign) if c.tag == "device-identity"), None) if sign else None
        if ident is None or not isinstance(ident.content, bytes):
            await self._stream_error_and_close(500, "bad pair-device-sign")
            raise AdminError(400, "bad_device_identity", "pair-device-sign without a device-identity")
        try:
            verify_device_sign(ident.content, ident.attrs.get("key-index"), identity, account.public,
                               identity_public)
        except LinkRefused:
            await self._stream_error_and_close(500, "bad pair-device-sign")
            raise
        assert self.client_static is not None and self.registration is not None
        record = sb.store.add_device(
            phone.phone, device, noise_key=self.client_static, identity_key=identity_public,
            registration_id=self.registration.registration_id, key_index=device, method=method,
            platform=platform, now=sb.clock.unix(),
        )
        log.info("device linked", extra={"conn": self.id, "phone": phone.phone, "device": device, "method": method})
        self.phone, self.device = phone.phone, device
        self._spawn(self._stream_error_and_close(515, "paired: restart required"))
        return record

    async def scan(self, phone: PhoneRecord, noise_public: bytes, identity_public: bytes,
                   adv_secret: bytes, platform_id: str | None) -> DeviceRecord:
        if self.registration is None:
            raise AdminError(409, "not_registering", "connection is not a registration connection")
        if noise_public != self.client_static:
            raise AdminError(400, "noise_key_mismatch", "QR noise key is not the socket's static key")
        if identity_public != self.registration.identity_public:
            raise AdminError(400, "identity_mismatch", "QR identity key differs from the registration")
        if self._linking:
            raise AdminError(409, "link_in_progress", "a link is already in progress on this socket")
        self._linking = True
        try:
            platform = f"{self.registration.platform} (platform id {platform_id or '?'})"
            return await self.link_device(phone, identity_public=identity_public, adv_secret=adv_secret,
                                          method="qr", platform=platform)
        finally:
            self._linking = False

    # ------------------------------------------------------------------------ pairing code
    async def _companion_hello(self, iq: Node, reg: Node) -> None:
        refused = self.sb.faults.companion_hello_error
        if refused is not None:  # fault: the server refuses every code request (rate limit…)
            await self.send_node(stanzas.error(iq, refused.code, refused.text))
            return
        if self.registration is None:
            await self.send_node(stanzas.error(iq, 400, "bad-request"))
            return
        jid = reg.attrs.get("jid", "")
        user = jid.split("@", 1)[0]
        wrapped = stanzas.child_bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")
        auth_key = stanzas.child_bytes(reg, "companion_server_auth_key_pub")
        if not PHONE_RE.match(user) or wrapped is None or len(wrapped) != 80:
            await self.send_node(stanzas.error(iq, 400, "bad-request"))
            return
        if auth_key != self.client_static:
            await self.send_node(stanzas.error(iq, 401, "not-authorized"))
            return
        now = self.sb.clock.time()
        ref = ("2@" + base64.b64encode(secrets.token_bytes(24)).decode()).encode()
        self.code_registration = CodeRegistration(
            phone=user,
            ref=ref,
            wrapped_companion=wrapped,
            platform_id=stanzas.child_text(reg, "companion_platform_id") or "",
            platform_display=stanzas.child_text(reg, "companion_platform_display") or "",
            created_at=now,
            expires_at=now + self.sb.config.pairing_code_ttl,
        )
        log.info("pairing-code registration", extra={"conn": self.id, "phone": user})
        await self.send_node(stanzas.result(iq, [
            Node("link_code_companion_reg", {}, [Node("link_code_pairing_ref", {}, ref)])
        ]))

    async def _companion_finish(self, iq: Node) -> None:
        waiter = self._finish_waiter
        if waiter is None or waiter.done():
            await self.send_node(stanzas.error(iq, 400, "bad-request"))
            return
        waiter.set_result(iq)

    async def enter_code(self, phone: PhoneRecord, code: str) -> DeviceRecord:
        """The phone's user typed ``code``: primary_hello → companion_finish → pair-success."""
        reg = self.code_registration
        if reg is None or reg.phone != phone.phone:
            raise AdminError(404, "no_pending_registration", f"no pairing-code registration for {phone.phone}")
        if self.sb.clock.time() > reg.expires_at:
            raise AdminError(410, "expired", "the pairing code has expired")
        if self._linking:
            raise AdminError(409, "link_in_progress", "a link is already in progress on this socket")
        assert self.registration is not None
        self._linking = True
        try:
            account = KeyPair.from_private(phone.identity_private)
            # Two PBKDF2 runs (131072 rounds each): keep them off the event loop.
            hello: PrimaryHello = await asyncio.to_thread(primary_hello, code, reg.wrapped_companion)
            self._finish_waiter = asyncio.get_running_loop().create_future()
            await self.send_node(Node(
                "notification",
                {"from": SERVER_JID, "type": "link_code_companion_reg", "id": stanzas.new_id(),
                 "t": str(self.sb.clock.unix())},
                [Node("link_code_companion_reg", {"stage": "primary_hello"}, [
                    Node("link_code_pairing_wrapped_primary_ephemeral_pub", {}, hello.wrapped_primary),
                    Node("primary_identity_pub", {}, account.public),
                    Node("link_code_pairing_ref", {}, reg.ref),
                ])],
            ))
            try:
                finish = await asyncio.wait_for(self._finish_waiter, self.sb.config.link_timeout)
            except TimeoutError as exc:
                raise AdminError(504, "client_timeout", "the companion did not send companion_finish") from exc
            except _Gone as exc:
                raise AdminError(409, "connection_closed", "the companion closed the socket") from exc
            finally:
                self._finish_waiter = None
            lc = next((c for c in stanzas.children(finish) if c.tag == "link_code_companion_reg"), None)
            bundle = stanzas.child_bytes(lc, "link_code_pairing_wrapped_key_bundle")
            companion_identity = stanzas.child_bytes(lc, "companion_identity_public")
            try:
                if stanzas.child_bytes(lc, "link_code_pairing_ref") != reg.ref:
                    raise LinkRefused(400, "ref_mismatch", "companion_finish carries another ref")
                if bundle is None or companion_identity is None:
                    raise LinkRefused(400, "bad_companion_finish", "companion_finish lacks bundle or identity")
                if companion_identity != self.registration.identity_public:
                    raise LinkRefused(400, "identity_mismatch", "companion identity differs from the registration")
                adv_secret = finish_code_pairing(hello, account, bundle, companion_identity)
            except LinkRefused as exc:
                reg.wrong_attempts += 1
                if reg.wrong_attempts >= MAX_WRONG_CODES:
                    self.code_registration = None
                await self.send_node(stanzas.error(finish, 400, "bad-request"))
                log.info("pairing code refused", extra={"conn": self.id, "error": exc.error,
                                                        "code_tail": code[-2:]})
                raise
            await self.send_node(stanzas.result(finish))
            self.code_registration = None
            platform = reg.platform_display or self.registration.platform
            return await self.link_device(phone, identity_public=companion_identity, adv_secret=adv_secret,
                                          method="code", platform=platform)
        except (_Gone, ConnectionClosed) as exc:
            raise AdminError(409, "connection_closed", "the companion's socket is closing") from exc
        finally:
            self._linking = False

    # ------------------------------------------------------------------------------ login
    async def _login(self, payload: wa_pb2.ClientPayload) -> None:
        sb = self.sb
        username = str(payload.username)
        record = sb.store.get_device(username, payload.device) if payload.HasField("device") else None
        if record is None or record.noise_key != self.client_static:
            log.info("login refused", extra={"conn": self.id, "phone": username})
            self.state = "login"
            self.begin_close(1000, "login failed: 401", Node("failure", {"reason": "401", "location": "sandbox"}))
            await self.wait_closed()
            return
        self.state = "login"
        self.phone, self.device = record.phone, record.device
        sb.store.mark_login(record.phone, record.device, sb.clock.unix())
        sb._session_logged_in(self)
        await self.send_node(Node("success", {"t": str(sb.clock.unix()), "lid": record.lid_jid}))
        if sb.config.edge_routing_info:
            await self.send_node(Node("ib", {}, [
                Node("edge_routing", {}, [Node("routing_info", {}, sb.config.edge_routing_info)])
            ]))
        log.info("login", extra={"conn": self.id, "phone": record.phone, "device": record.device})

    # --------------------------------------------------------------------------- dispatch
    async def _dispatch(self, node: Node) -> None:
        if node.tag == "presence":
            self._presence(node)
            return
        if node.tag != "iq":
            return  # ack, ib (unified_session…), receipts: nothing to answer
        kind = node.attrs.get("type")
        if kind in ("result", "error"):
            fut = self._waiters.get(node.attrs.get("id", ""))
            if fut is not None and not fut.done():
                fut.set_result(node)
            return
        kids = stanzas.children(node)
        first = kids[0] if kids else None
        xmlns = node.attrs.get("xmlns", "")
        if first is not None and first.tag == "link_code_companion_reg":
            stage = first.attrs.get("stage")
            if stage == "companion_hello":
                await self._companion_hello(node, first)
            elif stage == "companion_finish":
                await self._companion_finish(node)
            else:
                await self.send_node(stanzas.error(node, 400, "bad-request"))
            return
        if self.state != "login" and xmlns != "w:p":
            # Before login only keepalive and linking make sense; answer politely anyway.
            await self.send_node(stanzas.result(node))
            return
        await self.send_node(self._answer(node, xmlns, kind, first))
        if xmlns == "w:p":
            self.pings_answered += 1
        if first is not None and first.tag == "remove-companion-device":
            await self.sb._device_logged_out(self)

    def _presence(self, node: Node) -> None:
        """``<presence type="available|unavailable" name=…/>``: no answer, just remembered."""
        kind = node.attrs.get("type", "available")
        if kind not in ("available", "unavailable"):
            return  # other presence stanzas (subscribe…) need no sandbox state
        self.presence = {"type": kind, "name": node.attrs.get("name", ""), "at": str(self.sb.clock.unix())}

    def _answer(self, iq: Node, xmlns: str, kind: str | None, first: Node | None) -> Node:
        tag = first.tag if first is not None else None
        sb = self.sb
        if xmlns == "encrypt" and tag == "count":
            rec = sb.store.get_device(self.phone or "", self.device or 0)
            return stanzas.result(iq, [Node("count", {"value": str(rec.prekeys if rec else 0)})])
        if xmlns == "encrypt" and kind == "set" and tag in ("registration", "list", "identity"):
            listed = next((c for c in stanzas.children(iq) if c.tag == "list"), None)
            count = len([k for k in stanzas.children(listed) if k.tag == "key"]) if listed else 0
            sb.store.add_prekeys(self.phone or "", self.device or 0, count)
            return stanzas.result(iq)
        if xmlns == "encrypt" and tag == "digest":
            return stanzas.result(iq, [Node("digest", {})])
        if xmlns == "abt" and tag == "props":
            return stanzas.result(iq, [Node("props", {"protocol": "1"})])
        if xmlns == "blocklist":
            return stanzas.result(iq, [Node("list", {})])
        if xmlns == "privacy" and kind == "get":
            names = ("last", "online", "profile", "status", "readreceipts", "groupadd", "calladd")
            return stanzas.result(iq, [Node("privacy", {}, [
                Node("category", {"name": n, "value": "all"}) for n in names
            ])])
        if xmlns == "md" and tag == "remove-companion-device":
            return stanzas.result(iq)
        # passive/active, w:p, rotate, props, anything else: a plain result is what the clients need.
        return stanzas.result(iq)
