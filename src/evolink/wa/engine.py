"""The engine: one linked (or linking) device, one socket at a time, reconnecting by policy.

``Engine`` is the public face of a device: its state, creds, event bus and the calls the gateway
makes (link, send, presence, receipts, logout). The connection lifecycle itself (connect, handshake,
read, keepalive, reconnect with backoff) runs in ``session_loop.SessionLoop``, which the engine owns
and feeds through ``SessionHooks``; incoming stanzas go through ``dispatch``'s handler table to the
flow modules (``login``, ``pair_qr``, ``pair_code``, ``message_recv``…), which call back into the
engine's hooks (``emit``, ``save_creds``, ``on_open``…). There is never more than one live socket
per engine. ``close()`` cancels everything; ``logout()`` removes the companion device upstream,
wipes the creds and closes.
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
from evolink.wa.creds import Creds, CredsStore
from evolink.wa.dispatch import dispatch
from evolink.wa.e2e import Cipher
from evolink.wa.events import (
    CloseEvent,
    CloseReason,
    ConnectionState,
    CredsUpdatedEvent,
    EngineEvent,
    LoggedOutEvent,
    OpenEvent,
    PairingCodeEvent,
    PushNameEvent,
    ServerTimeEvent,
)
from evolink.wa.memory_store import MemoryMessageStore
from evolink.wa.message_send import NotConnected, SendResult, group_participants, send_message
from evolink.wa.messaging import Messaging
from evolink.wa.pair_code import AlreadyPaired, PairingUnavailable, request_code
from evolink.wa.pair_code_desk import PairingCodeDesk
from evolink.wa.plaintext import QuotedMessage
from evolink.wa.presence import (
    NO_NAME_MESSAGE,
    PresenceNoName,
    PresenceNotConnected,
    presence_node,
    unified_session_node,
    usable_push_name,
)
from evolink.wa.session_loop import MAX_IMMEDIATE_RESTARTS, SessionHooks, SessionLoop
from evolink.wa.signal_adapter import default_cipher
from evolink.wa.store_port import MessageStore
from evolink.wa.stream_errors import Disconnect
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.proto.e2e_pb2 import Message

log = logging.getLogger("evolink.wa.engine")

__all__ = ["MAX_IMMEDIATE_RESTARTS", "Engine"]


class Engine:
    """One WhatsApp companion device (a "linked device" of the account on the phone).

    Protocol caveats the caller cannot see in the code:

    - WhatsApp allows one socket per companion device: a second login with the same creds, from this
      or any other process, makes the server end one of them with ``440 replaced``, which does not
      reconnect. Run one engine per creds.
    - A new engine links through a registration connection (QR refs or a pairing code); the server then
      sends ``515 restart required`` and the engine logs in again by itself: ``OpenEvent.is_new_login``
      marks that first open.
    - Creds are the device's identity: the engine saves them through its ``CredsStore`` on every
      change (``CredsUpdatedEvent``); a ``401`` (logged out on the phone, device removed) wipes them.
    - Events are delivered in order on ``events()`` / ``subscribe()``; an ``events()`` consumer that
      falls ``config.event_queue_size`` behind loses the oldest ones (bus.py): the engine never waits.
    """

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
        self._session = SessionLoop(config, self.clock, SessionHooks(
            set_state=self._set_state, set_connection=self._set_connection,
            connection_changed=self.notify_connection_change, emit=self.emit,
            load_creds=self._load_creds, wipe_creds=self._wipe_creds, dispatch=self._dispatch,
        ), ssl_context=ssl_context)
        self._conn: Connection | None = None
        self._conn_changed = asyncio.Event()
        self._codes = PairingCodeDesk(registration_connection=self._registration_connection,
                                      request=lambda conn, digits: request_code(self, conn, digits),
                                      elapsed=lambda: self.elapsed(), emit=self.emit)
        self._state: ConnectionState = ConnectionState.CLOSE
        self._creds: Creds | None = None
        self._wiped = False
        self._new_login = False
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
        return self._session.failures

    @property
    def connections(self) -> int:
        """Sockets opened so far (tests and metrics)."""
        return self._session.connections

    @property
    def last_disconnect(self) -> Disconnect | None:
        """How the latest connection ended (None before the first close)."""
        return self._session.last_disconnect

    @property
    def last_reconnect_delay(self) -> float | None:
        """Seconds waited before the latest reconnect (None when the latest close did not reconnect)."""
        return self._session.last_reconnect_delay

    @property
    def _run_task(self) -> asyncio.Task[None] | None:
        return self._session.task

    @property
    def creds(self) -> Creds | None:
        """The device's creds once loaded (None before ``start()`` and after a logout)."""
        return self._creds

    @property
    def running(self) -> bool:
        """The connection loop is alive (connecting, open, or waiting to reconnect)."""
        return self._session.running

    def events(self) -> AsyncIterator[EngineEvent]:
        """Every event from now on, in order; the iterator ends at ``close()``."""
        return self._bus.stream()

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` (plain or async) for every event; returns the unsubscribe function."""
        return self._bus.subscribe(callback)

    async def start(self) -> None:
        """Connect in the background (idempotent while running).

        Returns at once: watch ``ConnectingEvent`` / ``QrEvent`` / ``OpenEvent`` / ``CloseEvent``. Each
        start begins with a fresh backoff.
        """
        self._session.start()

    async def close(self) -> None:
        """Stop: cancel the connection and every task, close the socket, end event iterators.

        The device stays linked (creds kept): the server holds messages for it as offline messages,
        delivered after the next ``start()``.
        """
        if await self._session.stop():
            self._state = ConnectionState.CLOSE
            self.emit(CloseEvent(CloseReason.CLOSED_BY_USER, None, False, "closed by user"))
        self._state = ConnectionState.CLOSE
        self._notify()
        self._bus.end_streams()

    async def logout(self) -> None:
        """Remove this companion device upstream, wipe the creds, close.

        Online, the server answers ``remove-companion-device`` by ending the stream with ``401``
        (waited for up to 5 s); offline, the phone keeps listing the device until it is removed there:
        only the local creds are wiped.
        """
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
            # The server follows up with stream:error 401; let the session loop process it.
            if not await self._session.wait_ended(5.0):
                log.warning("server did not close the stream after logout; closing ourselves")
        else:
            log.info("logout while not connected: creds wiped locally only")
        await self._wipe_creds("logged out by user")
        await self.close()

    async def send_presence(self, presence: str) -> None:
        """Send our own presence (``available`` / ``unavailable``) on the logged-in socket.

        ``InvalidPresence`` for anything else, ``PresenceNotConnected`` when no logged-in socket is up,
        ``PresenceNoName`` while the account's push name is unknown (whatsmeow's rule; see presence.py):
        the server takes the push name from the presence, and contacts would see "-" without it.
        While the companion is ``available`` the phone stops showing the account's notifications;
        ``available`` is preceded by a ``unified_session`` stanza, as WhatsApp Web does.
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
        """``<ib><unified_session id=…/></ib>``, best effort (telemetry: a lost socket is not an error).

        The id derives from the server's time (``server_clock_offset``), not the host's.
        """
        try:
            await conn.send(unified_session_node(self.clock.time(), self.server_clock_offset))
        except ConnectionLost as exc:
            log.debug("unified_session not sent: %s", exc)

    async def request_pairing_code(self, phone: str) -> PairingCodeEvent:
        """A server-confirmed pairing code for ``phone``; the same code on repeat calls on this socket.

        The server accepts one code per registration connection: a repeat call returns the pending
        code until it expires, and a code for another number is refused (``PairingError``) until then.
        The call waits (up to ``pairing_wait_timeout``) for a registration socket that has received
        ``pair-device``; ``AlreadyPaired`` once linked, ``PairingUnavailable`` when not running or
        when that socket closes during the request, ``PairingCodeRefused`` when the server refuses.
        The code is handed out only after the server confirmed it, so it works on the first try.
        """
        return await self._codes.code_for(phone)

    async def send_text(self, to: str, text: str, *, message_id: str | None = None,
                        quoted: QuotedMessage | None = None, within: float | None = None) -> SendResult:
        """Send a text to a user (PN or LID JID: all their devices and our own others) or a group.

        ``message_id`` fixes the id (a resend after a crash must reuse it); the call returns once the
        server acked the stanza (bounded by ``within``, default ``query_timeout``). ``SendError``
        (``NotConnected``) otherwise. The server's ack means it accepted the message, not that a
        recipient device got it: delivery and read come later as receipts (``ReceiptEvent``).
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
        """Member user JIDs of a group we are in (``w:g2`` metadata; for mentions of everyone).

        The server refuses groups this account is not in; NotConnected if down.
        """
        conn = self._live_or_raise()
        try:
            members, _mode = await group_participants(conn, group, self.messaging)
        except ConnectionLost as exc:
            raise NotConnected(f"Connection Closed: {exc}") from None
        return members

    async def reject_call(self, call_id: str, caller: str) -> None:
        """Reject an incoming call offer (Baileys ``rejectCall``); NotConnected if down.

        ``caller`` is the offer's caller (``CallEvent.caller``): the reject is addressed to it.
        """
        conn = self._live_or_raise(need_jid=True)
        await self._send_live(conn, call.reject_node(conn.creds.me_jid or "", call_id, caller, conn.next_id()))

    async def send_chat_state(self, to: str, state: ChatState) -> None:
        """Typing indicator for a chat (``composing`` / ``recording`` / ``paused``); NotConnected if down.

        Fire and forget: the server does not ack a chatstate, so a lost socket is the only error seen.
        """
        conn = self._live_or_raise()
        await self._send_live(conn, chatstate_node(to, state))

    async def send_read_receipt(self, chat: str, ids: list[str], *, participant: str | None = None,
                                played: bool = False) -> None:
        """Mark received messages read (``type="read"``, or ``played`` for voice notes).

        In a group, ``participant`` is the sender of the messages (the server needs it to route the
        receipt). Whether the sender sees blue ticks also depends on the accounts' privacy settings.
        """
        conn = self._live_or_raise()
        await self._send_live(conn, receipts_out.read_receipt(chat, ids, participant=participant, played=played,
                                                               now=int(self.clock.time())))

    def live_connection(self) -> Connection | None:
        """The logged-in socket, or None (while linking, connecting, or closed)."""
        conn = self._conn
        if conn is None or not conn.opened or conn.closed or self._state != ConnectionState.OPEN:
            return None
        return conn

    def _live_or_raise(self, *, need_jid: bool = False) -> Connection:
        conn = self.live_connection()
        if conn is None or (need_jid and not conn.creds.me_jid):
            raise NotConnected(f"Connection Closed: the engine is {self._state}, not open")
        return conn

    @staticmethod
    async def _send_live(conn: Connection, node: Node) -> None:
        """Send on the logged-in socket; a socket lost meanwhile is ``NotConnected``, as before the send."""
        try:
            await conn.send(node)
        except ConnectionLost as exc:
            raise NotConnected(f"Connection Closed: {exc}") from None

    # ------------------------------------------------------------------ hooks used by the flows

    def emit(self, event: EngineEvent) -> None:
        """Publish an event to every iterator and callback (never blocks; see bus.py)."""
        self._bus.emit(event)

    async def save_creds(self, creds: Creds) -> None:
        """Persist changed creds through the store, then ``CredsUpdatedEvent``."""
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
        """Pairing succeeded: the next ``OpenEvent`` (after the server's 515 restart) is a new login."""
        self._new_login = True

    def notify_connection_change(self) -> None:
        """Wake ``request_pairing_code`` callers waiting for a registration socket to become ready."""
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
        """The server accepted the login (``success``): the engine is OPEN on ``conn``."""
        if conn.closed:
            return
        conn.opened = True
        self._state = ConnectionState.OPEN
        self._session.opened()  # the backoff resets only if the link stays up (reconnect.py)
        creds = conn.creds
        is_new, self._new_login = self._new_login, False
        log.info("open", extra={"jid": creds.me_jid, "conn": conn.number})
        self.emit(OpenEvent(creds.me_jid or "", creds.me_lid, creds.push_name or self.config.push_name, is_new))
        self._notify()

    # ------------------------------------------------------------------ internals (and SessionHooks)

    def _notify(self) -> None:
        event, self._conn_changed = self._conn_changed, asyncio.Event()
        event.set()

    def _set_state(self, state: ConnectionState) -> None:
        self._state = state

    def _set_connection(self, conn: Connection | None) -> None:
        self._conn = conn

    async def _wipe_creds(self, message: str) -> None:
        if self._wiped:
            return
        self._wiped = True
        self._creds = None
        try:
            await self.store.clear()
        finally:  # logged out upstream either way; the gateway must hear it
            self.emit(LoggedOutEvent(message))

    async def _load_creds(self) -> Creds:
        if self._creds is None:
            self._creds = await self.store.load()
        if self._creds is None:
            await self.save_creds(await Creds.new_async())
        assert self._creds is not None
        return self._creds

    async def _registration_connection(self) -> Connection:
        """The registration socket once the server sent ``pair-device`` (a code request is valid only after)."""
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

    def _dispatch(self, conn: Connection, node: Node) -> None:
        dispatch(self, conn, node)
