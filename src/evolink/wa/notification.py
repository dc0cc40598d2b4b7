"""``<notification>``: always acknowledged, then handled by ``type`` (a handler map).

- ``encrypt`` with ``<count value=N>``: the server's pool of our one-time pre-keys runs low; upload
  a batch when N < ``prekey_min_count`` (both Baileys and whatsmeow use 5).
- ``encrypt`` with ``<identity/>`` from a contact: their identity changed; forget the device-list
  cache entry so the next send re-fetches keys (whatsmeow drops sessions too; a stale session
  heals through the peer's retry receipt).
- ``devices``: a contact's device list changed; drop the cached list.
- ``link_code_companion_reg``: the phone typed our pairing code (``pair_code``).
- ``w:gp2`` with ``<create><group …/></create>``: we are a member of a new group → ``GroupsUpsertEvent``
  (other ``w:gp2`` children — subject, participants, settings — are acknowledged and not reported yet).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from evolink.wa import jids, prekeys
from evolink.wa.ack import ack_for
from evolink.wa.connection import Connection, IqError, QueryTimeout
from evolink.wa.events import GroupsUpsertEvent
from evolink.wa.group_meta import GroupError, learn_pairs, parse_group
from evolink.wa.pair_code import handle_primary_hello
from evolink.wire.binary import Node

if TYPE_CHECKING:
    from evolink.wa.engine import Engine

log = logging.getLogger("evolink.wa.notification")

NotificationHandler = Callable[["Engine", Connection, Node], Coroutine[Any, Any, None]]


async def _encrypt(engine: Engine, conn: Connection, node: Node) -> None:
    count = node.child("count")
    if count is not None:
        value = count.attrs.get("value", "")
        if not value.isdigit():
            log.warning("encrypt notification with a non-numeric count %r", value[:16])
            return
        if int(value) < engine.config.prekey_min_count:
            try:
                async with engine.messaging.prekey_lock:
                    uploaded = await prekeys.upload(conn, conn.creds, engine.config.prekey_upload_count,
                                                    save=engine.save_creds)
            except (IqError, QueryTimeout) as exc:  # retried at the next notification or login
                log.warning("pre-key upload after a low-count notification failed: %s", exc)
                return
            log.info("pre-keys uploaded on low-count notification",
                     extra={"server_had": int(value), "count": uploaded})
        return
    if node.child("identity") is not None:
        sender = node.attrs.get("from", "")
        if "@" in sender:
            engine.messaging.forget_devices(jids.non_ad(sender))


async def _devices(engine: Engine, conn: Connection, node: Node) -> None:
    sender = node.attrs.get("from", "")
    if "@" in sender:
        engine.messaging.forget_devices(jids.non_ad(sender))
    lid = node.attrs.get("lid")
    if lid and "@" in lid:
        engine.messaging.forget_devices(jids.non_ad(lid))


async def _link_code(engine: Engine, conn: Connection, node: Node) -> None:
    await handle_primary_hello(engine, conn, node)


async def _group(engine: Engine, conn: Connection, node: Node) -> None:
    created = []
    for child in node.children("create"):
        group = child.child("group")
        if group is None:
            continue
        try:
            meta = parse_group(group)
        except GroupError as exc:
            log.warning("w:gp2 create without usable metadata: %s", exc)
            continue
        learn_pairs(engine.messaging, meta)
        created.append(meta)
    if created:
        engine.emit(GroupsUpsertEvent(tuple(created), node.attrs.get("participant") or None))


HANDLERS: dict[str, NotificationHandler] = {
    "encrypt": _encrypt,
    "devices": _devices,
    "link_code_companion_reg": _link_code,
    "w:gp2": _group,
}


def handle(engine: Engine, conn: Connection, node: Node) -> None:
    conn.spawn(conn.send(ack_for(node)), "ack-notification")
    handler = HANDLERS.get(node.attrs.get("type", ""))
    if handler is not None:
        conn.spawn(handler(engine, conn, node), f"notification-{node.attrs.get('type')}")
