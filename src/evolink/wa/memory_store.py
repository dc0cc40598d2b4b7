"""``MessageStore`` in memory (tests, demos): every call is one atomic step of the event loop."""

from __future__ import annotations

from evolink.wa.store_port import OutgoingMessage, StateChanges, StoredMessage


class MemoryMessageStore:
    def __init__(self) -> None:
        self.sessions: dict[str, bytes] = {}
        self.identities: dict[str, bytes] = {}
        self.sender_keys: dict[tuple[str, str], bytes] = {}
        self.consumed_pre_keys: set[int] = set()
        self.devices: dict[str, tuple[list[str], float]] = {}
        self.incoming: dict[str, StoredMessage] = {}  # message id -> message, in arrival order
        self.outgoing: dict[str, OutgoingMessage] = {}

    async def load_session(self, address: str) -> bytes | None:
        return self.sessions.get(address)

    async def load_identity(self, address: str) -> bytes | None:
        return self.identities.get(address)

    async def load_sender_key(self, group: str, address: str) -> bytes | None:
        return self.sender_keys.get((group, address))

    async def is_pre_key_consumed(self, key_id: int) -> bool:
        return key_id in self.consumed_pre_keys

    async def apply(self, changes: StateChanges) -> None:
        self._apply(changes)

    def _apply(self, changes: StateChanges) -> None:
        for address, record in changes.sessions.items():
            if record is None:
                self.sessions.pop(address, None)
            else:
                self.sessions[address] = record
        self.identities.update(changes.identities)
        for key, sk in changes.sender_keys.items():
            if sk is None:
                self.sender_keys.pop(key, None)
            else:
                self.sender_keys[key] = sk
        self.consumed_pre_keys |= changes.consumed_pre_keys

    async def load_devices(self, user: str) -> tuple[list[str], float] | None:
        return self.devices.get(user)

    async def save_devices(self, user: str, devices: list[str], fetched_at: float) -> None:
        self.devices[user] = (list(devices), fetched_at)

    async def save_incoming(self, message: StoredMessage, changes: StateChanges) -> bool:
        if message.id in self.incoming:
            return False
        self._apply(changes)
        self.incoming[message.id] = message
        return True

    async def has_incoming(self, message_id: str) -> bool:
        return message_id in self.incoming

    async def record_outgoing(self, message: OutgoingMessage, changes: StateChanges) -> None:
        self._apply(changes)
        self.outgoing[message.id] = message

    async def load_outgoing(self, message_id: str) -> OutgoingMessage | None:
        return self.outgoing.get(message_id)
