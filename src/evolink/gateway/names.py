"""Evolution event names: dotted values, UPPER_SNAKE keys, kebab URL suffixes."""

from __future__ import annotations

INSTANCE_CREATE = "instance.create"
INSTANCE_DELETE = "instance.delete"
QRCODE_UPDATED = "qrcode.updated"
CONNECTION_UPDATE = "connection.update"
STATUS_INSTANCE = "status.instance"
REMOVE_INSTANCE = "remove.instance"
LOGOUT_INSTANCE = "logout.instance"
CONTACTS_UPSERT = "contacts.upsert"
CONTACTS_UPDATE = "contacts.update"
CHATS_UPSERT = "chats.upsert"
CHATS_UPDATE = "chats.update"
GROUPS_UPSERT = "groups.upsert"
# evolink extension (not in Evolution): the host wall clock was stepped; opt-in only.
CLOCK_STEP = "clock.step"


def event_key(event: str) -> str:
    """`connection.update` -> `CONNECTION_UPDATE`."""
    return event.replace(".", "_").replace("-", "_").upper()


def event_suffix(event: str) -> str:
    """`connection.update` -> `connection-update` (the `webhookByEvents` URL suffix)."""
    return event_key(event).replace("_", "-").lower()
