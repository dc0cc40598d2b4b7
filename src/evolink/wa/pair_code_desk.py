"""Handing out pairing codes: one per registration connection, only once the server confirmed it.

WhatsApp binds a pairing code to the registration socket that asked for it (its
``link_code_pairing_ref``): a second ``companion_hello`` on that socket would replace the code the user
may already be typing, so repeat requests get the pending code back until it expires, and a request
for another number is refused meanwhile. A code whose socket closed during the request is never
handed out: it could not be completed (the next registration socket needs a new one).

The desk owns only that policy and its lock; the engine passes in how to wait for a registration
socket, how to ask the server (``pair_code.request_code``), the never-stepped elapsed clock and its
event emitter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from evolink.wa.connection import Connection, ConnectionLost
from evolink.wa.events import EngineEvent, PairingCodeEvent
from evolink.wa.pair_code import PairingError, PairingUnavailable, PendingCode, normalize_phone


class PairingCodeDesk:
    def __init__(self, *, registration_connection: Callable[[], Awaitable[Connection]],
                 request: Callable[[Connection, str], Awaitable[PendingCode]],
                 elapsed: Callable[[], float], emit: Callable[[EngineEvent], None]) -> None:
        self._registration_connection = registration_connection
        self._request = request
        self._elapsed = elapsed
        self._emit = emit
        self._lock = asyncio.Lock()  # one request at a time: two callers must not send two hellos

    async def code_for(self, phone: str) -> PairingCodeEvent:
        """The pending code of the current registration socket for ``phone``, or a new confirmed one.

        ``InvalidPhoneNumber`` before anything is sent; ``PairingError`` while a code for another
        number is pending; ``PairingUnavailable`` when the socket closes during the request (plus
        whatever waiting for the socket or the request raises). A new code is emitted as an event.
        """
        digits = normalize_phone(phone)
        async with self._lock:
            conn = await self._registration_connection()
            pending = conn.pairing
            if pending is not None and self._elapsed() < pending.deadline:
                if pending.phone != digits:
                    raise PairingError("a pairing code for another number is active on this connection")
                return pending.event()
            try:
                pending = await self._request(conn, digits)
            except ConnectionLost:
                raise PairingUnavailable("the registration connection closed during the request") from None
            if conn.closed:
                raise PairingUnavailable("the registration connection closed during the request")
            conn.pairing = pending
            event = pending.event()
            self._emit(event)
            return event
