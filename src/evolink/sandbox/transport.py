"""One client socket's frames: WebSocket in, Noise-encrypted frames out, the outbox and the close.

No one waits on a send — not the socket's reader, not an admin call, not the router delivering a
message to another device. A frame is written at once when nothing is queued, no latency fault is
set and flow control has not paused the transport (then ``ws.send`` does not suspend); otherwise it
goes to the outbox that one writer task drains. Nodes are encrypted when written, so the Noise
counter follows the wire order.

A close queues its final node (``stream:error``/``failure``) after what is already waiting, flushes
without the latency fault, sends the WebSocket close frame; a watchdog aborts the TCP link if that
has not finished within :data:`CLOSE_TIMEOUT` (a client that stopped reading).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from evolink.sandbox.faults import Faults
from evolink.wire import binary, frames, noise
from evolink.wire.binary import Node

log = logging.getLogger("evolink.sandbox.transport")

MAX_OUTBOX = 1000  # frames queued for a client that does not read; more closes the socket
CLOSE_TIMEOUT = 5.0  # a closing socket gets this long to flush its queue and close, then it is aborted


class Gone(Exception):
    """The socket is closing or closed: nothing more can be sent or awaited on it."""


@dataclass(frozen=True, slots=True)
class _CloseRequest:
    """Last item of a closing socket's outbox: send the WebSocket close frame."""

    code: int
    reason: str


class Link:
    """The framed, (after the handshake) encrypted WebSocket of one connection.

    ``faults`` is read at every frame (the admin replaces the fault set at runtime);
    ``on_closing`` is called once, when a close or abort starts.
    """

    def __init__(self, ws: ServerConnection, conn_id: str, *, max_frame_size: int,
                 faults: Callable[[], Faults], on_closing: Callable[[], None]) -> None:
        self.ws = ws
        self.id = conn_id
        self._faults = faults
        self._on_closing = on_closing
        self.frames_in = 0
        self.frames_out = 0
        self.closed = False  # set by :meth:`teardown`
        self.close_reason: str | None = None
        self._reader = frames.ServerFrameReader(max_size=max_frame_size)
        self._pending: collections.deque[bytes] = collections.deque()
        self.transport: noise.Transport | None = None
        self._outbox: collections.deque[bytes | Node | _CloseRequest] = collections.deque()
        self._outbox_ready = asyncio.Event()
        self._drained = asyncio.Event()  # set by the writer when the outbox is below a quarter
        self._closing_event = asyncio.Event()
        self._close_watchdog: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._writer_busy = False  # the writer has taken a frame off the queue and is writing it
        self._waiters: dict[str, asyncio.Future[Node]] = {}
        self.closing = False

    @property
    def routing_info(self) -> bytes | None:
        return self._reader.routing_info

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    # ------------------------------------------------------------------------- receiving
    async def recv_frame(self, within: float) -> bytes:
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

    async def recv_node(self, within: float) -> Node:
        frame = await self.recv_frame(within)
        assert self.transport is not None
        return binary.decode(self.transport.decrypt(frame))

    # --------------------------------------------------------------------------- sending
    async def send_frame(self, payload: bytes) -> None:
        """Send an unencrypted frame (the handshake's server hello)."""
        await self._send(payload)

    async def send_node(self, node: Node) -> None:
        """Send ``node`` without ever waiting on the client (raises :class:`Gone` if closing)."""
        if self.transport is None:
            raise Gone()
        await self._send(node)

    def try_send(self, node: Node) -> bool:
        """Queue ``node`` for the writer without awaiting; False if the socket is closing/closed."""
        if self.transport is None or self.closing:
            return False
        try:
            self._enqueue(node)
        except Gone:
            return False
        return True

    async def send_paced(self, node: Node) -> None:
        """Like :meth:`send_node`, but first waits while the outbox is half full (bulk replays)."""
        while len(self._outbox) >= MAX_OUTBOX // 2 and not self.closing:
            self._drained.clear()
            await self._drained.wait()
        await self.send_node(node)

    async def request(self, node: Node, within: float) -> Node:
        """Send a server-initiated iq and wait for the client's result/error with the same id."""
        iq_id = node.attrs["id"]
        fut: asyncio.Future[Node] = asyncio.get_running_loop().create_future()
        self._waiters[iq_id] = fut
        try:
            await self.send_node(node)
            return await asyncio.wait_for(fut, within)
        finally:
            self._waiters.pop(iq_id, None)

    def resolve(self, node: Node) -> bool:
        """An iq result/error from the client: hand it to the :meth:`request` waiting for its id."""
        fut = self._waiters.get(node.attrs.get("id", ""))
        if fut is None or fut.done():
            return False
        fut.set_result(node)
        return True

    async def _send(self, item: bytes | Node) -> None:
        if (not self._outbox and not self._writer_busy and not self.closing
                and not self._faults().latency_ms and not self.ws.paused):
            await self._write(item)
        else:
            self._enqueue(item)

    def _enqueue(self, item: bytes | Node) -> None:
        if self.closing:
            raise Gone()
        if len(self._outbox) >= MAX_OUTBOX:
            log.info("client is not reading; closing", extra={"conn": self.id, "queued": len(self._outbox)})
            self.begin_close(1008, "outbox overflow: client is not reading")
            raise Gone()
        self._outbox.append(item)
        self._outbox_ready.set()
        self.start()

    async def _write_loop(self) -> None:
        """The socket's only sender: applies the latency fault, encrypts, writes, closes."""
        try:
            while not self.closed:
                if not self._outbox:
                    self._outbox_ready.clear()
                    await self._outbox_ready.wait()
                    continue
                item = self._outbox[0]
                latency = self._faults().latency_ms
                if latency and not self.closing:
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
                if len(self._outbox) < MAX_OUTBOX // 4:
                    self._drained.set()
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
            assert self.transport is not None
            payload = self.transport.encrypt(binary.encode(item))
        else:
            payload = item
        await self.ws.send(frames.encode_frame(payload))
        self.frames_out += 1
        drop = self._faults().drop_after_frames
        if drop is not None and self.frames_out >= drop:
            self.abort(f"fault: drop after {drop} frames")
            return False
        return True

    # --------------------------------------------------------------------------- closing
    def begin_close(self, code: int = 1000, reason: str = "", final: Node | None = None) -> None:
        """Start closing without waiting: queue ``final`` (if the stream is up), then the close frame."""
        if self.closing:
            return
        self._mark_closing(reason or f"closed ({code})")
        self._close_watchdog = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._close_overdue)
        if final is not None and self.transport is not None:
            self._outbox.append(final)
        self._outbox.append(_CloseRequest(code, reason[:120]))
        self._outbox_ready.set()
        self.start()  # never started (closing before run): nothing else would close it

    async def wait_closed(self) -> None:
        """Wait until the close frame went out or the link was cut (at most ~CLOSE_TIMEOUT: watchdog)."""
        if self._writer is not None:
            await asyncio.wait({self._writer})

    def abort(self, reason: str) -> None:
        """Drop the TCP connection without a close frame (fault injection)."""
        if not self.closing:
            self._mark_closing(reason, force=True)
        self._outbox.clear()
        self.ws.transport.abort()

    def _mark_closing(self, reason: str, force: bool = False) -> None:
        self.closing = True
        self._closing_event.set()
        self._drained.set()
        self.close_reason = reason if force else (self.close_reason or reason)
        self._on_closing()

    def teardown(self) -> None:
        """The socket is gone: cancel the writer, fail every waiter."""
        self.closed = True
        if not self.closing:
            self.closing = True
            self._closing_event.set()
            self._on_closing()
        self._drained.set()
        self._outbox.clear()
        if self._close_watchdog is not None:
            self._close_watchdog.cancel()
        if self._writer is not None:
            self._writer.cancel()  # nothing queued can be delivered any more
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(Gone())
        self._waiters.clear()

    def _close_overdue(self) -> None:
        """The close did not finish in time (a client that stopped reading): cut the TCP link."""
        if self._writer is not None and not self._writer.done():
            log.info("close did not finish in time; aborting", extra={"conn": self.id})
            self._outbox.clear()
            self.ws.transport.abort()
