"""What a connection needs from the sandbox process, as an explicit interface.

``Sandbox`` (server.py) implements it; a connection and its parts (linking, login, the iq handlers,
the router) get this object instead of reaching into the sandbox's private members.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from evolink.sandbox.clock import SandboxClock
from evolink.sandbox.config import SandboxConfig
from evolink.sandbox.faults import Faults
from evolink.sandbox.store import SandboxStore
from evolink.wire.crypto import KeyPair

if TYPE_CHECKING:
    from evolink.sandbox.connection import Connection
    from evolink.sandbox.router import Router


class Host(Protocol):
    config: SandboxConfig
    clock: SandboxClock
    store: SandboxStore
    server_static: KeyPair
    router: Router

    @property
    def faults(self) -> Faults: ...

    def cert_chain(self) -> bytes: ...

    def connection_logged_in(self, conn: Connection) -> None:
        """``conn`` logged in as (phone, device): index it, replace an older socket of that device."""

    def connection_closing(self, conn: Connection) -> None:
        """``conn`` started closing: it no longer receives deliveries."""

    def connection_closed(self, conn: Connection) -> None:
        """``conn`` is gone: keep it (bounded) for the connection listing."""

    async def device_logged_out(self, conn: Connection) -> None:
        """The companion on ``conn`` asked to be removed (logout)."""
