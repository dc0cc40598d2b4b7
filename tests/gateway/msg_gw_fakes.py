"""The gateway's fake engine, extended with the messaging surface the message pipeline uses
(send_message, send_chat_state, send_read_receipt, group_members) and drivers that emit received
messages and receipts as the real engine does."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from gw_fakes import FakeEngine, FakeHub

from evolink.gateway.ports import EngineRequest
from evolink.wa.events import CallEvent, MessageEvent, ReceiptEvent, ReceiptType
from evolink.wa.message_send import NotConnected, SendError, SendResult
from evolink.wire.proto.e2e_pb2 import Message


@dataclass
class Sent:
    to: str
    message: Message
    id: str


@dataclass
class MsgHub(FakeHub):
    no_devices: set[str] = field(default_factory=set)  # JIDs "not on WhatsApp"
    fail_with: str | None = None  # a SendError text for every send
    lose_after_record: bool = False  # the connection drops after the stanza was recorded for the wire
    send_gate: asyncio.Event | None = None  # sends wait on it when set
    members: dict[str, list[str]] = field(default_factory=dict)

    def factory(self, req: EngineRequest) -> MsgEngine:
        engine = MsgEngine(req, self)
        self.engines.setdefault(req.instance_name, []).append(engine)
        return engine

    def latest(self, name: str) -> MsgEngine:
        engine = self.engines[name][-1]
        assert isinstance(engine, MsgEngine)
        return engine


class MsgEngine(FakeEngine):
    hub: MsgHub

    def __init__(self, req: EngineRequest, hub: MsgHub) -> None:
        super().__init__(req, hub)
        self.sent: list[Sent] = []
        self.chat_states: list[tuple[str, str, float]] = []
        self.read_receipts: list[tuple[str, list[str], str | None]] = []
        self.sent_event = asyncio.Event()
        self.rejected: list[tuple[str, str]] = []
        self.recorded: set[str] = set()  # ids "recorded for the wire" (the real engine's record_outgoing)
        self.messaging = SimpleNamespace(store=SimpleNamespace(load_outgoing=self._load_outgoing))

    def _live(self) -> None:
        if self.state != "open":
            raise NotConnected(f"Connection Closed: the engine is {self.state}, not open")

    async def send_message(self, to: str, message: Message, *, message_id: str | None = None,
                           within: float | None = None) -> SendResult:
        self._live()
        if self.hub.send_gate is not None:
            await self.hub.send_gate.wait()
        if to in self.hub.no_devices:
            raise SendError(f"{to} has no devices")
        if self.hub.fail_with:
            raise SendError(self.hub.fail_with)
        assert message_id is not None
        self.recorded.add(message_id)
        if self.hub.lose_after_record:
            raise NotConnected("Connection Closed: connection lost")
        self.sent.append(Sent(to, message, message_id))
        self.sent_event.set()
        return SendResult(message_id, 1_700_000_000, 2)

    async def _load_outgoing(self, msg_id: str) -> object | None:
        return msg_id if msg_id in self.recorded else None

    async def send_chat_state(self, to: str, state: Any) -> None:
        self._live()
        self.chat_states.append((to, str(state), asyncio.get_running_loop().time()))

    async def send_read_receipt(self, chat: str, ids: list[str], *, participant: str | None = None,
                                played: bool = False) -> None:
        self._live()
        self.read_receipts.append((chat, list(ids), participant))

    async def reject_call(self, call_id: str, caller: str) -> None:
        self._live()
        self.rejected.append((call_id, caller))

    async def group_members(self, group: str) -> list[str]:
        self._live()
        return list(self.hub.members.get(group, []))

    # drivers ------------------------------------------------------------------------------------
    def receive(self, msg_id: str, chat: str, text: str, *, sender: str | None = None, push_name: str = "Bob",
                from_me: bool = False, sender_pn: str | None = None, sender_lid: str | None = None,
                timestamp: int = 1_700_000_100) -> None:
        m = Message()
        m.conversation = text
        m.messageContextInfo.messageSecret = b"\x01" * 32
        self.emit(MessageEvent(msg_id, chat, sender or chat, sender_pn, sender_lid, from_me, timestamp, push_name,
                               m))

    def call(self, call_id: str, caller: str, status: str = "offer") -> None:
        self.emit(CallEvent(call_id, caller, caller, status, 1_700_000_300, is_video=False))

    def receipt(self, kind: ReceiptType, chat: str, ids: list[str], sender: str | None = None) -> None:
        self.emit(ReceiptEvent(kind, kind.value, chat, sender or chat, tuple(ids), 1_700_000_200))
