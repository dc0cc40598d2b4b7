"""Own presence (``available`` / ``unavailable``), the account's push name, and the ``unified_session`` id.

The ``name`` of ``<presence type="available" name=…/>`` is how the server learns the account's push name,
the name its contacts see; a presence without it shows them "-". So, as whatsmeow does
(``ErrNoPushName``), the engine refuses to send a presence until it knows the name (Baileys silently
ignores the call). The name is learned from the ``notify`` attribute of messages the account's own
devices write, from pair-success's business name, or is given by the gateway (the instance's
``profileName``); it is persisted with the creds.

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


class PresenceNoName(PresenceError):
    """The account's push name is not known yet: a presence would show contacts "-"."""


NO_NAME = "-"  # what WhatsApp shows for an account whose push name it never received
NO_NAME_MESSAGE = ("can't send presence without a push name (contacts would see '-'): it is learned from the "
                   "first message sent from the phone or another linked device, or from the instance's profileName")


def usable_push_name(name: object) -> str | None:
    """``name`` stripped, or None when it is not a name (empty, "-", not a string)."""
    if not isinstance(name, str):
        return None
    clean = name.strip()
    return clean if clean and clean != NO_NAME else None


def check_presence(presence: object) -> str:
    if presence not in PRESENCE_TYPES:
        # composing/recording/paused are chat states: they need a chat JID, which setPresence lacks.
        raise InvalidPresence(f"presence must be 'available' or 'unavailable', got {presence!r}")
    assert isinstance(presence, str)
    return presence


def name_at_link(configured: str | None, stored: str | None, business_name: str | None) -> str | None:
    """The push name kept at pair-success: the configured one (the instance's profileName), else the
    one already known, else a business account's name from ``<biz name>`` (what its contacts see)."""
    return usable_push_name(configured) or usable_push_name(stored) or usable_push_name(business_name)


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
