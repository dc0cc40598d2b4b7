"""One live, post-handshake socket: request/response matching, background tasks, and its end.

A connection ends exactly once: the first ``finish(Disconnect)`` wins (a stream:error followed by the
TCP close must not be reported twice), every pending query fails with ``ConnectionLost`` and every
task it spawned is cancelled.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from evolink.wa.creds import Creds
from evolink.wa.events import CloseReason
from evolink.wa.socket import NoiseSocket, SocketClosed
from evolink.wa.stream_errors import Disconnect
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.errors import WireError

if TYPE_CHECKING:
    from evolink.wa.pair_code import PendingCode

log = logging.getLogger("evolink.wa.connection")


class IqError(Exception):
    """The server answered our IQ with ``type="error"``."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"server error {code}: {text}")
        self.code = code
        self.text = text


class QueryTimeout(Exception):
    """No answer to an IQ within the query timeout."""


class ConnectionLost(Exception):
    """The connection ended while we were waiting on it."""


class Connection:
    def __init__(self, sock: NoiseSocket, creds: Creds, *, registration: bool, query_timeout: float,
                 number: int) -> None:
        self.sock = sock
        self.creds = creds
        self.registration = registration
        self.number = number  # connection counter within the engine (for logs and tests)
        self.query_timeout = query_timeout
        self.done: asyncio.Future[Disconnect] = asyncio.get_running_loop().create_future()
        self._pending: dict[str, asyncio.Future[Node]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prefix = f"{secrets.randbelow(65536)}.{secrets.randbelow(65536)}-"
        self._counter = itertools.count(1)
        # registration-socket state
        self.pair_device_seen = asyncio.Event()
        self.qr_exhausted = False
        self.pairing: PendingCode | None = None  # set once the server confirmed a pairing code
        self.pair_success_seen = False
        self.is_new_login = False
        self.opened = False
        self.last_rx = 0.0  # loop.time() of the last frame received (keepalive)

    @property
    def closed(self) -> bool:
        return self.done.done()

    def next_id(self) -> str:
        return f"{self._prefix}{next(self._counter)}"

    async def send(self, node: Node) -> None:
        if self.closed:
            raise ConnectionLost("connection already closed")
        try:
            await self.sock.send_node(node)
        except SocketClosed as exc:
            raise ConnectionLost(str(exc)) from None

    async def query(self, node: Node, within: float | None = None) -> Node:
        """Send an IQ and wait for the ``result``; ``IqError`` on ``type="error"``."""
        node.attrs.setdefault("id", self.next_id())
        node.attrs.setdefault("to", SERVER_JID)
        iq_id = node.attrs["id"]
        future: asyncio.Future[Node] = asyncio.get_running_loop().create_future()
        self._pending[iq_id] = future
        try:
            await self.send(node)
            try:
                reply = await asyncio.wait_for(asyncio.shield(future), within or self.query_timeout)
            except TimeoutError:
                raise QueryTimeout(f"no answer to iq {node.attrs.get('xmlns')} within "
                                   f"{within or self.query_timeout:g}s") from None
        finally:
            self._pending.pop(iq_id, None)
        if reply.attrs.get("type") == "error":
            err = reply.child("error")
            code = err.attrs.get("code", "") if err else ""
            raise IqError(int(code) if code.isdigit() else 0, (err.attrs.get("text") if err else None) or "error")
        return reply

    def resolve(self, node: Node) -> bool:
        """Hand an incoming iq result/error to its waiting query; False if nobody waits for it."""
        iq_id = node.attrs.get("id")
        future = self._pending.get(iq_id) if iq_id else None
        if future is None or future.done():
            return False
        future.set_result(node)
        return True

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run a handler next to the reader; an unexpected error in it ends the connection cleanly."""
        task = asyncio.create_task(coro, name=f"wa-conn{self.number}-{what}")
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(t, what))
        return task

    def _task_done(self, task: asyncio.Task[Any], what: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or isinstance(exc, ConnectionLost):
            return
        if isinstance(exc, WireError | IqError | QueryTimeout | ValueError):
            log.warning("%s failed: %s", what, exc)
        else:
            log.error("%s crashed", what, exc_info=exc)
        self.finish(Disconnect(CloseReason.PROTOCOL, None, f"{what} failed: {exc}", will_reconnect=True))

    def finish(self, disconnect: Disconnect) -> None:
        if self.done.done():
            return
        self.done.set_result(disconnect)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(disconnect.message))
                future.exception()  # mark retrieved: nobody may be awaiting it any more
        self._pending.clear()

    async def shutdown(self) -> None:
        """Cancel every task and close the socket (idempotent)."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.sock.close()
