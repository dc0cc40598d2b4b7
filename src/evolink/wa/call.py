"""``<call>`` offers: acknowledged (as Baileys does) and otherwise ignored; calls are out of scope."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evolink.wa.ack import ack_for
from evolink.wa.connection import Connection
from evolink.wire.binary import Node

if TYPE_CHECKING:
    from evolink.wa.engine import Engine


def handle(engine: Engine, conn: Connection, node: Node) -> None:
    conn.spawn(conn.send(ack_for(node)), "ack-call")
