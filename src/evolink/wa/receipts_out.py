"""Receipts we send on request: read / played (wa-messaging §6.3)."""

from __future__ import annotations

from evolink.wa import jids
from evolink.wire.binary import Node


class ReceiptError(ValueError):
    pass


def read_receipt(chat: str, ids: list[str], *, participant: str | None = None, played: bool = False,
                 now: int) -> Node:
    """``<receipt id=<first> to=<chat> [participant] type="read|played" t><list><item id/>…</list></receipt>``.

    ``participant`` (the author, groups only) loses its device part, as whatsmeow sends it."""
    ids = [i for i in dict.fromkeys(ids) if i]
    if not ids:
        raise ReceiptError("no message ids to mark")
    if "@" not in chat:
        raise ReceiptError(f"bad chat JID {chat[:64]!r}")
    attrs = {"id": ids[0], "to": chat, "type": "played" if played else "read", "t": str(now)}
    if participant:
        attrs["participant"] = jids.non_ad(participant)
    children = [Node("list", {}, [Node("item", {"id": i}) for i in ids[1:]])] if len(ids) > 1 else None
    return Node("receipt", attrs, children)
