"""What the gateway needs from an engine (a subset of `evolink.wa`'s Engine) and how it gets one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from evolink.clock import Clock
from evolink.wa.events import EngineEvent, PairingCodeEvent


class EnginePort(Protocol):
    @property
    def state(self) -> str: ...

    async def start(self) -> None: ...

    async def request_pairing_code(self, phone: str) -> PairingCodeEvent: ...

    def subscribe(self, callback: Callable[[EngineEvent], Any]) -> Callable[[], None]: ...

    async def send_presence(self, presence: str) -> None: ...

    async def logout(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """Everything a factory needs to build the engine of one instance connection."""

    instance_name: str
    instance_id: str
    creds_store: Any  # evolink.wa.creds.CredsStore
    mode: str  # "qr" | "code": code mode announces the browser WhatsApp expects for link codes
    clock: Clock
    proxy: str | None = None  # proxy URL for websockets (gateway.proxy.ProxySpec.url()); None = direct
    message_store: Any = None  # evolink.wa.store_port.MessageStore (gateway: SqlMessageStore); None = memory
    push_name: str | None = None  # the instance's profileName: the push name until the account tells its own


EngineFactory = Callable[[EngineRequest], EnginePort]
