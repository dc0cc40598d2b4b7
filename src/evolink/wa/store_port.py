"""The store port: where the engine keeps Signal state and received messages (async Protocol).

Everything the messaging layer must not lose goes through here, so the gateway can keep it in its
database and the tests in memory (``memory_store.MemoryMessageStore``):

- Signal state as opaque, versioned byte records: 1:1 sessions keyed by Signal address
  (``user[_agent].device`` as Baileys spells it, LID preferred), remote identities, group sender keys
  keyed by (group JID, sender address); consumed one-time pre-key ids (a consumed id is refused for
  ever, across crashes: "never reuse a one-time pre-key").
- The device-list cache (user → device JIDs, with the time it was fetched).
- Received messages: ``save_incoming(message, changes)`` writes the message **and** the Signal state
  its decryption produced in one transaction and answers whether it was new. The engine sends the
  delivery receipt / ack only after it returned, so a crash between the two means the server
  redelivers, the store answers "already have it" (by message id), and the engine just receipts
  again: at-least-once from the server, exactly-once into the store.
- Sent messages: ``record_outgoing`` keeps what a peer's retry receipt may ask us to resend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class StateChanges:
    """Signal state produced by handling one stanza; applied atomically by the store.

    ``None`` as a value deletes the record.
    """

    sessions: dict[str, bytes | None] = field(default_factory=dict)
    identities: dict[str, bytes] = field(default_factory=dict)
    sender_keys: dict[tuple[str, str], bytes | None] = field(default_factory=dict)
    consumed_pre_keys: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.sessions or self.identities or self.sender_keys or self.consumed_pre_keys)

    def merge(self, other: StateChanges) -> None:
        self.sessions.update(other.sessions)
        self.identities.update(other.identities)
        self.sender_keys.update(other.sender_keys)
        self.consumed_pre_keys |= other.consumed_pre_keys


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A received (or own-device-sent) message as it is written to the store."""

    id: str
    chat: str  # chat JID (user non-AD, or group)
    sender: str  # sender device JID as it came (PN or LID)
    sender_alt: str | None  # the sender in the other namespace, when the server told us
    from_me: bool
    timestamp: int  # server `t`, unix seconds
    push_name: str | None
    message: bytes  # the serialized Message protobuf (after unpadding and deviceSentMessage unwrap)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    id: str
    chat: str
    message: bytes  # serialized Message protobuf
    timestamp: int


class MessageStore(Protocol):
    # Signal state -------------------------------------------------------------------------
    async def load_session(self, address: str) -> bytes | None: ...
    async def load_identity(self, address: str) -> bytes | None: ...
    async def load_sender_key(self, group: str, address: str) -> bytes | None: ...
    async def is_pre_key_consumed(self, key_id: int) -> bool: ...
    async def apply(self, changes: StateChanges) -> None:
        """Apply Signal state changes that belong to no stored message (sends, SKDM-only stanzas)."""

    # device lists ------------------------------------------------------------------------------
    async def load_devices(self, user: str) -> tuple[list[str], float] | None: ...
    async def save_devices(self, user: str, devices: list[str], fetched_at: float) -> None: ...

    # messages -----------------------------------------------------------------------------------
    async def save_incoming(self, message: StoredMessage, changes: StateChanges) -> bool:
        """Store the message and the state changes in one transaction; False if the id was known
        already (then nothing is changed)."""

    async def has_incoming(self, message_id: str) -> bool: ...
    async def record_outgoing(self, message: OutgoingMessage, changes: StateChanges) -> None:
        """Keep a sent message (for retry receipts) together with the Signal state its encryption made."""

    async def load_outgoing(self, message_id: str) -> OutgoingMessage | None: ...
