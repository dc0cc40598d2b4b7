"""The connection lifecycle: connect, handshake, read, keep alive, close, decide, wait, again.

``SessionLoop`` is the engine's one background task. Each turn opens one socket, runs the Noise
handshake with a registration or login payload, then serves the link (a reader and a keepalive task
on the ``Connection``) until it ends with a typed ``Disconnect``. The next socket is opened only after
the previous one has been shut down, so an engine never holds two live sockets: WhatsApp treats a
second login of the same device as a takeover (``440 replaced``) and ends one of them.

After each close ``stream_errors`` has already said whether to reconnect; the loop adds the when:
a 515 ("restart required", sent right after pairing and now and then by the server) reconnects at
once, but only ``MAX_IMMEDIATE_RESTARTS`` times in a row without a stable ``open`` in between, after
which the full-jitter backoff of ``ReconnectPolicy`` applies like for any other fault (a server that
answers every login with 515 must not be hammered). ``401`` (logged out / device removed) wipes the
creds through the owner before the close is reported.

The loop owns no engine state: it reports through the ``SessionHooks`` its owner passes in (state
changes, the current socket, events, creds, stanza dispatch).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from evolink.clock.base import Clock
from evolink.wa.config import EngineConfig
from evolink.wa.connection import Connection
from evolink.wa.creds import Creds, CredsError
from evolink.wa.events import CloseEvent, CloseReason, ConnectingEvent, ConnectionState, EngineEvent
from evolink.wa.handshake import HandshakeTimeout, perform_handshake
from evolink.wa.keepalive import Action, KeepaliveSchedule
from evolink.wa.payload import PayloadError, login_payload, registration_payload
from evolink.wa.reconnect import ReconnectPolicy
from evolink.wa.socket import ConnectFailed, FrameSocket, NoiseSocket, SocketClosed
from evolink.wa.stream_errors import Disconnect, remote_closed
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.errors import CertificateError, WireError

# A child of the engine's logger: filters set on "evolink.wa.engine" keep catching these lines.
log = logging.getLogger("evolink.wa.engine.session")

MAX_IMMEDIATE_RESTARTS = 3  # consecutive 515s without reaching open before backoff applies


class Step(enum.Enum):
    """What follows a close."""

    STOP = "stop"  # stay closed
    NOW = "now"  # reconnect at once (a 515 within the immediate streak)
    BACKOFF = "backoff"  # reconnect after the policy's next jittered delay


def next_step(d: Disconnect, immediate_streak: int, exhausted: bool) -> Step:
    """Pure decision after a close that ``stream_errors`` already classified (tested row by row).

    ``immediate_streak``: 515 restarts taken at once since the last stable link; ``exhausted``: the
    backoff policy used up ``reconnect_max_attempts``. A 515 beyond the streak falls back to the
    backoff, so an exhausted policy stops it too.
    """
    if not d.will_reconnect:
        return Step.STOP
    if d.immediate and immediate_streak < MAX_IMMEDIATE_RESTARTS:
        return Step.NOW
    if exhausted:
        return Step.STOP
    return Step.BACKOFF


@dataclass(frozen=True)
class SessionHooks:
    """What the loop needs from the engine that owns it, and nothing else."""

    set_state: Callable[[ConnectionState], None]
    """The engine's CLOSE/CONNECTING state (OPEN is set by the login flow, not here)."""
    set_connection: Callable[[Connection | None], None]
    """The socket that is up now (None once it is going away)."""
    connection_changed: Callable[[], None]
    """Wake whoever waits for a (registration) socket to appear or go."""
    emit: Callable[[EngineEvent], None]
    load_creds: Callable[[], Awaitable[Creds]]
    wipe_creds: Callable[[str], Awaitable[None]]
    dispatch: Callable[[Connection, Node], None]
    """Handle one incoming stanza; must not block the reader (long work is spawned on the connection)."""


class SessionLoop:
    """Runs connection after connection until a close says not to reconnect, or ``stop()``."""

    def __init__(self, config: EngineConfig, clock: Clock, hooks: SessionHooks, *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.clock = clock
        self.ssl_context = ssl_context
        self._hooks = hooks
        self._policy = ReconnectPolicy(config.reconnect_base, config.reconnect_cap, config.reconnect_max_attempts,
                                       config.reconnect_stable_after)
        self._immediate_streak = 0
        self.task: asyncio.Task[None] | None = None
        self.connections = 0  # sockets opened so far (tests and metrics)
        self.last_disconnect: Disconnect | None = None
        self.last_reconnect_delay: float | None = None  # seconds waited before the latest reconnect

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    @property
    def failures(self) -> int:
        """Consecutive failed or unstable connections the backoff is counting (0 after a stable link)."""
        return self._policy.failures

    def start(self) -> None:
        """Start the loop with a fresh backoff (no-op while it runs)."""
        if self.running:
            return
        self._policy.reset()
        self._immediate_streak = 0
        self.task = asyncio.create_task(self._run(), name="wa-engine")

    async def stop(self) -> bool:
        """Cancel the loop and wait for its socket to be shut down; True if it was still running."""
        task, self.task = self.task, None
        if task is None or task.done():
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

    async def wait_ended(self, within: float) -> bool:
        """Wait up to ``within`` seconds for the loop to end by itself (it is not cancelled); True if it did."""
        task = self.task
        if task is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(task), within)
        except TimeoutError:
            return False
        return True

    def opened(self) -> None:
        """The current link reached ``open``: the backoff resets if it stays up (reconnect.py)."""
        self._policy.opened(asyncio.get_running_loop().time())

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        hooks = self._hooks
        attempt = 0
        try:
            while True:
                attempt += 1
                hooks.set_state(ConnectionState.CONNECTING)
                hooks.emit(ConnectingEvent(attempt))
                d = await self._connect_once()
                hooks.set_state(ConnectionState.CLOSE)
                if self._policy.closed(asyncio.get_running_loop().time()):
                    self._immediate_streak = 0
                self.last_disconnect = d
                if d.wipe_creds:
                    try:
                        await hooks.wipe_creds(d.message)
                    except Exception:
                        log.exception("could not wipe the creds of a logged-out device")
                will, delay = self._next_step(d)
                log.info("closed: %s (%s) %s", d.reason.value, d.code, d.message,
                         extra={"will_reconnect": will, "delay": round(delay, 3)})
                self.last_reconnect_delay = delay if will else None
                hooks.emit(CloseEvent(d.reason, d.code, will, d.message))
                if not will:
                    return
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            hooks.set_state(ConnectionState.CLOSE)

    def _next_step(self, d: Disconnect) -> tuple[bool, float]:
        """(reconnect?, after how many seconds) for this close, counting the streak and the failures."""
        step = next_step(d, self._immediate_streak, self._policy.exhausted)
        if step is Step.NOW:
            self._immediate_streak += 1
            return True, 0.0
        if step is Step.BACKOFF:
            return True, self._policy.next_delay()
        return False, 0.0

    async def _connect_once(self) -> Disconnect:
        try:
            creds = await self._hooks.load_creds()
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
            self._hooks.set_connection(conn)
            self._hooks.connection_changed()
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
            self._hooks.set_connection(None)
            if conn is not None:
                conn.finish(Disconnect(CloseReason.CLOSED_BY_USER, None, "closed", will_reconnect=False))
                await conn.shutdown()
            else:
                await frames.close()
            self._hooks.connection_changed()  # once the socket is really gone

    async def _read_loop(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not conn.closed:
                node = await conn.sock.recv_node()
                conn.last_rx = loop.time()
                self._hooks.dispatch(conn, node)
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
        """Ping when the link has been quiet; declare it dead after ``keepalive_dead_after`` of silence.

        Any frame counts as a sign of life (``last_rx``), not only ping replies: WhatsApp's server does
        not answer pings promptly while it streams offline messages.
        """
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
