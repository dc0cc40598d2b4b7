"""``<call>`` stanzas: acknowledged (as Baileys does) and reported as ``CallEvent``; calls themselves
(audio/video) are out of scope. ``reject_node`` is Baileys' ``rejectCall`` stanza.

Status from the call child's tag, as Baileys ``getCallStatusFromNode``: ``offer``/``offer_notice`` →
``offer``; ``terminate`` → ``timeout`` when its ``reason`` is ``timeout``, else ``terminate``;
``reject`` → ``reject``; ``accept`` → ``accept``; anything else → ``ringing``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from evolink.wa.ack import ack_for
from evolink.wa.connection import Connection
from evolink.wa.events import CallEvent
from evolink.wire.binary import Node

if TYPE_CHECKING:
    from evolink.wa.engine import Engine

log = logging.getLogger("evolink.wa.call")


def status_of(child: Node) -> str:
    if child.tag in ("offer", "offer_notice"):
        return "offer"
    if child.tag == "terminate":
        return "timeout" if child.attrs.get("reason") == "timeout" else "terminate"
    if child.tag in ("reject", "accept"):
        return child.tag
    return "ringing"


def parse(node: Node) -> CallEvent | None:
    kids = node.children()
    if not kids:
        return None
    child = kids[0]
    call_id = child.attrs.get("call-id", "")
    caller = child.attrs.get("from") or child.attrs.get("call-creator", "")
    if not call_id or "@" not in caller:
        return None
    t = node.attrs.get("t", "")
    status = status_of(child)
    is_offer = status == "offer"
    group_jid = child.attrs.get("group-jid") if is_offer else None
    return CallEvent(call_id=call_id, chat=node.attrs.get("from", caller), caller=caller, status=status,
                     timestamp=int(t) if t.isdigit() else 0, offline=bool(node.attrs.get("offline")),
                     is_video=is_offer and child.child("video") is not None,
                     is_group=is_offer and (child.attrs.get("type") == "group" or bool(group_jid)),
                     group_jid=group_jid)


def reject_node(own_jid: str, call_id: str, caller: str, stanza_id: str) -> Node:
    """``<call from=<me> to=<caller> id><reject call-id call-creator=<caller> count="0"/></call>``."""
    return Node("call", {"from": own_jid, "to": caller, "id": stanza_id},
                [Node("reject", {"call-id": call_id, "call-creator": caller, "count": "0"})])


def handle(engine: Engine, conn: Connection, node: Node) -> None:
    ev = parse(node)
    if ev is not None:
        engine.emit(ev)
    else:
        log.debug("call stanza without a usable child", extra={"id": node.attrs.get("id")})
    conn.spawn(conn.send(ack_for(node)), "ack-call")
