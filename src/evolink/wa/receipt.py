"""``<receipt>`` for messages we sent: a typed ``ReceiptEvent``, the ack, and retry → resend.

Types (Baileys ``getStatusFromReceiptType``): none = delivered, ``read``/``read-self``, ``played``/
``played-self``, ``inactive``, ``sender``, ``retry``, ``server-error``. ``t`` is optional here
(Baileys' delivery receipts carry none; the server is expected to stamp it). Every receipt is
acked after handling, retry receipts included (both clients do).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from evolink.wa import jids, message_send
from evolink.wa.ack import ack_for
from evolink.wa.connection import Connection
from evolink.wa.events import ReceiptEvent, ReceiptType
from evolink.wire.binary import Node
from evolink.wire.errors import DecodeError

if TYPE_CHECKING:
    from evolink.wa.engine import Engine

log = logging.getLogger("evolink.wa.receipt")

TYPES: dict[str | None, ReceiptType] = {
    None: ReceiptType.DELIVERED,
    "": ReceiptType.DELIVERED,
    "read": ReceiptType.READ,
    "read-self": ReceiptType.READ_SELF,
    "played": ReceiptType.PLAYED,
    "played-self": ReceiptType.PLAYED_SELF,
    "inactive": ReceiptType.INACTIVE,
    "sender": ReceiptType.SENDER,
    "retry": ReceiptType.RETRY,
    "server-error": ReceiptType.SERVER_ERROR,
}


def parse(node: Node) -> ReceiptEvent:
    a = node.attrs
    frm = a.get("from", "")
    ids = [a.get("id", "")]
    lst = node.child("list")
    if lst is not None:
        ids += [item.attrs["id"] for item in lst.children("item") if item.attrs.get("id")]
    try:
        chat = frm if jids.is_group(frm) else jids.non_ad(a.get("recipient") or frm)
    except DecodeError:
        chat = frm
    t = a.get("t", "")
    raw = a.get("type")
    return ReceiptEvent(TYPES.get(raw, ReceiptType.OTHER), raw, chat, a.get("participant") or frm,
                        tuple(i for i in ids if i), int(t) if t.isdigit() else None)


def handle(engine: Engine, conn: Connection, node: Node) -> None:
    conn.spawn(_handle(engine, conn, node), "receipt")


async def _handle(engine: Engine, conn: Connection, node: Node) -> None:
    event = parse(node)
    try:
        if event.type is ReceiptType.RETRY:
            await message_send.resend_on_retry(engine, conn, node)
        engine.emit(event)
    finally:
        await conn.send(ack_for(node))
