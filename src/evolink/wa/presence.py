"""Own presence (``available`` / ``unavailable``) and the ``unified_session`` telemetry id.

Both WhatsApp Web clients send ``<ib><unified_session id=…/></ib>`` after ``success`` and after the
``pair-device-sign`` reply (wa-protocol.md §9.4, §10.1). The id is the only place where the server
time offset is used (§11): ``(now + offset + 3 days) mod 1 week`` in milliseconds.
"""

from __future__ import annotations

from evolink.wire.binary import Node

PRESENCE_TYPES = ("available", "unavailable")
DAY_MS = 24 * 3600 * 1000
WEEK_MS = 7 * DAY_MS
UNIFIED_SESSION_SHIFT_MS = 3 * DAY_MS


class PresenceError(Exception):
    """A presence update could not be sent."""


class InvalidPresence(PresenceError, ValueError):
    """Not a presence this engine can send."""


class PresenceNotConnected(PresenceError):
    """No logged-in socket to send it on."""


def check_presence(presence: object) -> str:
    if presence not in PRESENCE_TYPES:
        # composing/recording/paused are chat states: they need a chat JID, which setPresence lacks.
        raise InvalidPresence(f"presence must be 'available' or 'unavailable', got {presence!r}")
    assert isinstance(presence, str)
    return presence


def presence_node(presence: str, push_name: str | None) -> Node:
    """``<presence type=… name=…/>``; ``name`` only when a push name is known."""
    attrs = {"type": check_presence(presence)}
    name = (push_name or "").replace("@", "")  # a value with '@' would be encoded as a JID
    if name:
        attrs["name"] = name
    return Node("presence", attrs)


def unified_session_id(now_unix: float, server_offset: float) -> str:
    """``(now + server offset + 3 days) mod 1 week`` in whole milliseconds, as a decimal string."""
    now_ms = int((now_unix + server_offset) * 1000)
    return str((now_ms + UNIFIED_SESSION_SHIFT_MS) % WEEK_MS)


def unified_session_node(now_unix: float, server_offset: float) -> Node:
    return Node("ib", {}, [Node("unified_session", {"id": unified_session_id(now_unix, server_offset)})])
