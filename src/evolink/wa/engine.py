"""The engine: one linked (or linking) device, one socket at a time, reconnecting by policy.

``Engine.start()`` runs a single background task that connects, handshakes, links or logs in, and
keeps the link alive; when the connection ends it decides (``stream_errors``) whether and when to
reconnect. There is never more than one live socket per engine: the next connection is opened only
after the previous one has been shut down. ``close()`` cancels everything; ``logout()`` removes the
companion device upstream, wipes the creds and closes.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable

from evolink.clock.base import Clock, SystemClock
from evolink.clock.base import elapsed as default_elapsed
from evolink.wa import call, plaintext, receipts_out
from evolink.wa.bus import Callback, EventBus
from evolink.wa.chatstate import ChatState, chatstate_node
from evolink.wa.config import EngineConfig
from evolink.wa.connection import Connection, ConnectionLost, IqError, QueryTimeout
from evolink.wa.creds import Creds, CredsError, CredsStore
from evolink.wa.dispatch import dispatch
from evolink.wa.e2e import Cipher
from evolink.wa.events import (
    CloseEvent,
    CloseReason,
    ConnectingEvent,
    ConnectionState,
    CredsUpdatedEvent,
    EngineEvent,
    LoggedOutEvent,
    OpenEvent,
    PairingCodeEvent,
    PushNameEvent,
    ServerTimeEvent,
)
from evolink.wa.handshake import HandshakeTimeout, perform_handshake
from evolink.wa.keepalive import Action, KeepaliveSchedule
from evolink.wa.memory_store import MemoryMessageStore
from evolink.wa.message_send import NotConnected, SendResult, group_participants, send_message
from evolink.wa.messaging import Messaging
from evolink.wa.pair_code import (
    AlreadyPaired,
    PairingError,
    PairingUnavailable,
    normalize_phone,
    request_code,
)
from evolink.wa.payload import PayloadError, login_payload, registration_payload
from evolink.wa.plaintext import QuotedMessage
from evolink.wa.presence import (
    NO_NAME_MESSAGE,
    PresenceNoName,
    PresenceNotConnected,
    presence_node,
    unified_session_node,
    usable_push_name,
)
from evolink.wa.reconnect import ReconnectPolicy
from evolink.wa.signal_adapter import default_cipher
from evolink.wa.socket import ConnectFailed, FrameSocket, NoiseSocket, SocketClosed
from evolink.wa.store_port import MessageStore
from evolink.wa.stream_errors import Disconnect, remote_closed
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.errors import CertificateError, WireError
from evolink.wire.proto.e2e_pb2 import Message

log = logging.getLogger("evolink.wa.engine")

MAX_IMMEDIATE_RESTARTS = 3  # consecutive 515s without reaching open before backoff applies


class Engine:
    def __init__(self, config: EngineConfig, store: CredsStore, clock: Clock | None = None, *,
                 ssl_context: ssl.SSLContext | None = None, elapsed: Callable[[], float] = default_elapsed,
                 message_store: MessageStore | None = None, cipher: Cipher | None = None) -> None:
        self.config = config
        self.messaging = Messaging(message_store if message_store is not None else MemoryMessageStore(),
                                   cipher if cipher is not None else default_cipher())
        self.store = store
        self.clock: Clock = clock or SystemClock()
        # Durations (a pending code's life) are measured on this never-stepped clock, not on `clock`.
        self.elapsed = elapsed
        self.ssl_context = ssl_context
        self._bus = EventBus(config.event_queue_size)
        self._policy = ReconnectPolicy(config.reconnect_base, config.reconnect_cap, config.reconnect_max_attempts,
                                       config.reconnect_stable_after)
        self._run_task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        self._conn_changed = asyncio.Event()
        self._pair_lock = asyncio.Lock()
        self._state: ConnectionState = ConnectionState.CLOSE
        self._creds: Creds | None = None
        self._wiped = False
        self._new_login = False
        self._immediate_streak = 0
        self.connections = 0  # sockets opened so far (tests and metrics)
        self.last_disconnect: Disconnect | None = None
        self.last_reconnect_delay: float | None = None  # seconds waited before the latest reconnect
        self.server_time_offset: float | None = None
        # server time − the injected clock's time, from the same `t` (for unified_session ids)
        self.server_clock_offset: float = 0.0

    # ------------------------------------------------------------------ public API

    @property
    def state(self) -> ConnectionState:
        """CLOSE | CONNECTING | OPEN (Evolution's strings)."""
        return self._state

    @property
    def reconnect_failures(self) -> int:
        """Consecutive failed or unstable connections the backoff is counting (0 after a stable link)."""
        return self._policy.failures

    @property
    def creds(self) -> Creds | None:
        return self._creds

    @property
    def running(self) -> bool:
        return self._run_task is not None and not self._run_task.done()

    def events(self) -> AsyncIterator[EngineEvent]:
        return self._bus.stream()

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        return self._bus.subscribe(callback)

    async def start(self) -> None:
        """Connect in the background (idempotent while running)."""
        if self.running:
            return
        self._policy.reset()
        self._immediate_streak = 0
        self._run_task = asyncio.create_task(self._run(), name="wa-engine")

    async def close(self) -> None:
        """Stop: cancel the connection and every task, close the socket, end event iterators."""
        task, self._run_task = self._run_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._state = ConnectionState.CLOSE
            self.emit(CloseEvent(CloseReason.CLOSED_BY_USER, None, False, "closed by user"))
        self._state = ConnectionState.CLOSE
        self._notify()
        self._bus.end_streams()

    async def logout(self) -> None:
        """Remove this companion device upstream, wipe the creds, close."""
        conn = self._conn
        creds = self._creds
        if conn is not None and conn.opened and not conn.closed and creds is not None and creds.me_jid:
            node = Node("iq", {"to": SERVER_JID, "type": "set", "xmlns": "md"}, [
                Node("remove-companion-device", {"jid": creds.me_jid, "reason": "user_initiated"}),
            ])
            try:
                await conn.query(node, within=min(self.config.query_timeout, 10.0))
            except (IqError, QueryTimeout, ConnectionLost) as exc:
                log.info("remove-companion-device: %s", exc)
            # The server follows up with stream:error 401; let the run loop process it.
            task = self._run_task
            if task is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(task), 5.0)
                except TimeoutError:
                    log.warning("server did not close the stream after logout; closing ourselves")
        else:
            log.info("logout while not connected: creds wiped locally only")
        await self._wipe_creds("logged out by user")
        await self.close()

    async def send_presence(self, presence: str) -> None:
        """Send our own presence (``available`` / ``unavailable``) on the logged-in socket.

        ``InvalidPresence`` for anything else, ``PresenceNotConnected`` when no logged-in socket is up,
        ``PresenceNoName`` while the account's push name is unknown (whatsmeow's rule; see presence.py).
        """
        creds = self._creds
        push_name = usable_push_name(creds.push_name if creds is not None else None) or \
            usable_push_name(self.config.push_name)
        node = presence_node(presence, push_name)  # validates before looking at the socket
        conn = self._conn
        if conn is None or not conn.opened or conn.closed or self._state != ConnectionState.OPEN:
            raise PresenceNotConnected(f"Connection Closed: the engine is {self._state}, not open")
        if push_name is None:
            raise PresenceNoName(NO_NAME_MESSAGE)
        if presence == "available":
            await self.send_unified_session(conn)  # as Baileys does before going online
        try:
            await conn.send(node)
        except ConnectionLost as exc:
            raise PresenceNotConnected(f"Connection Closed: {exc}") from None
        log.info("presence sent", extra={"presence": presence, "conn": conn.number})

    async def send_unified_session(self, conn: Connection) -> None:
        """``<ib><unified_session id=…/></ib>``, best effort (telemetry: a lost socket is not an error)."""
        try:
            await conn.send(unified_session_node(self.clock.time(), self.server_clock_offset))
        except ConnectionLost as exc:
            log.debug("unified_session not sent: %s", exc)

    async def request_pairing_code(self, phone: str) -> PairingCodeEvent:
        """A server-confirmed pairing code for ``phone``; the same code on repeat calls on this socket."""
        digits = normalize_phone(phone)
        async with self._pair_lock:
            conn = await self._registration_connection()
            pending = conn.pairing
            if pending is not None and self.elapsed() < pending.deadline:
                if pending.phone != digits:
                    raise PairingError("a pairing code for another number is active on this connection")
                return pending.event()
            try:
                pending = await request_code(self, conn, digits)
            except ConnectionLost:
                raise PairingUnavailable("the registration connection closed during the request") from None
            if conn.closed:
                raise PairingUnavailable("the registration connection closed during the request")
            conn.pairing = pending
            event = pending.event()
            self.emit(event)
            return event

    async def send_text(self, to: str, text: str, *, message_id: str | None = None,
                        quoted: QuotedMessage | None = None, within: float | None = None) -> SendResult:
        """Send a text to a user (PN or LID JID: all their devices and our own others) or a group.

        ``message_id`` fixes the id (a resend after a crash must reuse it); the call returns once the
        server acked the stanza (bounded by ``within``, default ``query_timeout``). ``SendError``
        (``NotConnected``) otherwise.
        """
        message = plaintext.text_message(
            text, quoted_id=quoted.id if quoted else None,
            quoted_participant=quoted.participant if quoted else None,
            quoted_message=quoted.message if quoted else None)
        return await send_message(self, to, message, message_id=message_id, within=within)

    async def send_message(self, to: str, message: Message, *, message_id: str | None = None,
                           within: float | None = None) -> SendResult:
        """Send any ``Message`` protobuf (a reaction, a text with mentions…) like ``send_text``."""
        return await send_message(self, to, message, message_id=message_id, within=within)

    async def group_members(self, group: str) -> list[str]:
        """Member user JIDs of a group we are in (``w:g2`` metadata; for mentions of everyone)."""
        conn = self.live_connection()
        if conn is None:
            raise NotConnected(f"Connection Closed: the engine is {self._state}, not open")
        try:
            members, _mode = await group_participants(conn, group, self.messaging)
        except ConnectionLost as exc:
            raise NotConnected(f"Connection Closed: {exc}") from None
        return members

    async def reject_call(self, call_id: str, caller: str) -> None:
        """Reject an incoming call offer (Baileys ``rejectCall``); NotConnected if down."""
        conn = self.live_connection()
        if conn is None or not conn.creds.me_jid:
            raise NotConnected(f"Connection Closed: the engine is {self._state}, not open")
        try:
            await conn.send(call.reject_node(conn.creds.me_jid, call_id, caller, conn.next_id()))
        except ConnectionLost as exc:
            raise NotConnected(f"Connection Closed: {exc}") from None

    async def send_chat_state(self, to: str, state: ChatState) -> None:
        """Typing indicator for a chat (``composing`` / ``recording`` / ``paused``); NotConnected if down."""
        conn = self.live_connection()
        if conn is None:
            raise NotConnected(f"Connection Closed: the engine is {self._state}, not open")
        try:
            await conn.send(chatstate_node(to, state))
        except ConnectionLost as exc:
            raise NotConnected(f"Connection Closed: {exc}") from None

    async def send_read_receipt(self, chat: str, ids: list[str], *, participant: str | None = None,
                                played: bool = False) -> None:
        """Mark received messages read (``type="read"``, or ``played`` for voice notes)."""
        conn = self.live_connection()
        if conn is None:
            raise NotConnected(f"Connection Closed: the engine is {self._state}, not open")
        try:
            await conn.send(receipts_out.read_receipt(chat, ids, participant=participant, played=played,
                                                      now=int(self.clock.time())))
        except ConnectionLost as exc:
            raise NotConnected(f"Connection Closed: {exc}") from None

    def live_connection(self) -> Connection | None:
        """The logged-in socket, or None."""
        conn = self._conn
        if conn is None or not conn.opened or conn.closed or self._state != ConnectionState.OPEN:
            return None
        return conn

    # ------------------------------------------------------------------ hooks used by the flows

    def emit(self, event: EngineEvent) -> None:
        self._bus.emit(event)

    async def save_creds(self, creds: Creds) -> None:
        self._creds = creds
        await self.store.save(creds)
        self._wiped = False
        self.emit(CredsUpdatedEvent(creds.to_dict()))

    async def learn_push_name(self, name: str | None, source: str) -> None:
        """Adopt the account's push name when it is new: saved with the creds, then ``PushNameEvent``."""
        clean = usable_push_name(name)
        creds = self._creds
        if clean is None or creds is None or creds.push_name == clean:
            return
        creds.push_name = clean
        await self.save_creds(creds)
        log.info("push name learned", extra={"source": source})  # the name itself is personal data
        self.emit(PushNameEvent(clean, source))

    def mark_new_login(self) -> None:
        self._new_login = True

    def notify_connection_change(self) -> None:
        self._notify()

    def report_server_time(self, t: str | None, source: str) -> None:
        """Server ``t`` (whole unix seconds) → upstream offset for the clock guard and an event."""
        if t is None or not t.isdigit() or int(t) <= 0:
            return
        server = int(t)
        host = time.time()
        # `t` is truncated to the second: the true server time is in [t, t+1), centre it.
        offset = server + 0.5 - host
        report = getattr(self.clock, "report_upstream", None)
        if callable(report):
            report(source, server + 0.5, host, 1.0)
        self.server_time_offset = offset
        self.server_clock_offset = server + 0.5 - self.clock.time()
        self.emit(ServerTimeEvent(server, offset, source))

    def on_open(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.opened = True
        self._state = ConnectionState.OPEN
        self._policy.opened(asyncio.get_running_loop().time())  # reset only if it stays up (reconnect.py)
        creds = conn.creds
        is_new, self._new_login = self._new_login, False
        log.info("open", extra={"jid": creds.me_jid, "conn": conn.number})
        self.emit(OpenEvent(creds.me_jid or "", creds.me_lid, creds.push_name or self.config.push_name, is_new))
        self._notify()

    # ------------------------------------------------------------------ internals

    def _notify(self) -> None:
        event, self._conn_changed = self._conn_changed, asyncio.Event()
        event.set()

    async def _wipe_creds(self, message: str) -> None:
        if self._wiped:
            return
        self._wiped = True
        self._creds = None
        try:
            await self.store.clear()
        finally:  # logged out upstream either way; the gateway must hear it
            self.emit(LoggedOutEvent(message))

    async def _registration_connection(self) -> Connection:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.pairing_wait_timeout
        while True:
            conn = self._conn
            if self._creds is not None and self._creds.registered:
                raise AlreadyPaired("this engine is already linked; log out first")
            if conn is not None and conn.registration and conn.pair_device_seen.is_set() and not conn.closed:
                return conn
            if not self.running:
                raise PairingUnavailable("the engine is not running (call start())")
            waiter = self._conn_changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PairingUnavailable("no registration connection became ready in time")
            try:
                await asyncio.wait_for(waiter.wait(), remaining)
            except TimeoutError:
                raise PairingUnavailable("no registration connection became ready in time") from None

    async def _run(self) -> None:
        attempt = 0
        try:
            while True:
                attempt += 1
                self._state = ConnectionState.CONNECTING
                self.emit(ConnectingEvent(attempt))
                d = await self._connect_once()
                self._state = ConnectionState.CLOSE
                if self._policy.closed(asyncio.get_running_loop().time()):
                    self._immediate_streak = 0
                self.last_disconnect = d
                if d.wipe_creds:
                    try:
                        await self._wipe_creds(d.message)
                    except Exception:
                        log.exception("could not wipe the creds of a logged-out device")
                will, delay = d.will_reconnect, 0.0
                if will:
                    if d.immediate and self._immediate_streak < MAX_IMMEDIATE_RESTARTS:
                        self._immediate_streak += 1
                    elif self._policy.exhausted:
                        will = False
                    else:
                        delay = self._policy.next_delay()
                log.info("closed: %s (%s) %s", d.reason.value, d.code, d.message,
                         extra={"will_reconnect": will, "delay": round(delay, 3)})
                self.last_reconnect_delay = delay if will else None
                self.emit(CloseEvent(d.reason, d.code, will, d.message))
                if not will:
                    return
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            self._state = ConnectionState.CLOSE

    async def _load_creds(self) -> Creds:
        if self._creds is None:
            self._creds = await self.store.load()
        if self._creds is None:
            await self.save_creds(await Creds.new_async())
        assert self._creds is not None
        return self._creds

    async def _connect_once(self) -> Disconnect:
        try:
            creds = await self._load_creds()
        except CredsError as exc:
            return Disconnect(CloseReason.BAD_SESSION, None, f"stored creds unreadable: {exc}", will_reconnect=False)
        except Exception as exc:  # the store's backend (database, disk) failed: transient, retry by policy
            log.exception("creds store failed")
            return Disconnect(CloseReason.BAD_SESSION, None, f"creds store failed: {exc}", will_reconnect=True)
        registration = not creds.registered
        try:
            payload = registration_payload(creds, self.config) if registration else login_payload(creds, self.config)
        except PayloadError as exc:
            return Disconnect(CloseReason.BAD_SESSION, None, str(exc), will_reconnect=False)
        try:
            frames = await FrameSocket.open(self.config, ssl_context=self.ssl_context,
                                            routing_info=creds.routing_info)
        except ConnectFailed as exc:
            return Disconnect(CloseReason.CONNECT_FAILED, None, str(exc), will_reconnect=True)
        self.connections += 1
        conn: Connection | None = None
        try:
            transport, _ = await perform_handshake(
                frames, creds.noise_key, payload, root_public_key=self.config.root_public_key,
                clock=self.clock, tolerance=self.config.cert_time_tolerance, reply_within=self.config.connect_timeout,
            )
            conn = Connection(NoiseSocket(frames, transport), creds, registration=registration,
                              query_timeout=self.config.query_timeout, number=self.connections)
            conn.last_rx = asyncio.get_running_loop().time()
            self._conn = conn
            self._notify()
            conn.spawn(self._read_loop(conn), "reader")
            conn.spawn(self._keepalive_loop(conn), "keepalive")
            return await asyncio.shield(conn.done)
        except CertificateError as exc:
            log.warning("server certificate refused: %s", exc)
            return Disconnect(CloseReason.CERTIFICATE, None, str(exc), will_reconnect=True)
        except HandshakeTimeout as exc:
            return Disconnect(CloseReason.TIMED_OUT, 408, str(exc), will_reconnect=True)
        except SocketClosed as exc:
            return Disconnect(CloseReason.CONNECTION_CLOSED, 428, f"closed during handshake: {exc}",
                              will_reconnect=True)
        except WireError as exc:
            return Disconnect(CloseReason.PROTOCOL, None, f"handshake failed: {exc}", will_reconnect=True)
        except Exception as exc:  # a bug must not kill the engine silently: typed close, retry by policy
            log.exception("connection failed unexpectedly")
            return Disconnect(CloseReason.PROTOCOL, None, f"unexpected {type(exc).__name__}: {exc}",
                              will_reconnect=True)
        finally:
            self._conn = None
            if conn is not None:
                conn.finish(Disconnect(CloseReason.CLOSED_BY_USER, None, "closed", will_reconnect=False))
                await conn.shutdown()
            else:
                await frames.close()
            self._notify()

    async def _read_loop(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not conn.closed:
                node = await conn.sock.recv_node()
                conn.last_rx = loop.time()
                self._dispatch(conn, node)
        except SocketClosed as exc:
            if conn.registration and conn.qr_exhausted and not conn.pair_success_seen:
                conn.finish(Disconnect(CloseReason.QR_REFS_ENDED, 408, "QR refs attempts ended", will_reconnect=False))
            else:
                d = remote_closed()
                conn.finish(Disconnect(d.reason, d.code, f"{d.message}: {exc}", d.will_reconnect))
        except WireError as exc:
            conn.finish(Disconnect(CloseReason.PROTOCOL, None, f"bad frame from the server: {exc}",
                                   will_reconnect=True))

    async def _keepalive_loop(self, conn: Connection) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        sched = KeepaliveSchedule(cfg.keepalive_min, cfg.keepalive_max, cfg.keepalive_dead_after,
                                  last_received=conn.last_rx)
        while not conn.closed:
            sched.received(conn.last_rx)
            delay = sched.wake_at() - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                sched.received(conn.last_rx)
            action = sched.due(loop.time())
            if action is Action.DEAD:
                conn.finish(Disconnect(CloseReason.TIMED_OUT, 408,
                                       f"no frame from the server for {cfg.keepalive_dead_after:g}s",
                                       will_reconnect=True))
                return
            if action is Action.PING:
                await conn.send(Node("iq", {"id": conn.next_id(), "to": SERVER_JID, "type": "get", "xmlns": "w:p"},
                                     [Node("ping")]))

    def _dispatch(self, conn: Connection, node: Node) -> None:
        dispatch(self, conn, node)
