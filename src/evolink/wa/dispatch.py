"""Incoming stanzas → handlers: one table lookup per stanza instead of an if/elif chain.

``STANZA_HANDLERS`` maps the top-level tag to a handler; ``iq`` fans out further by ``type``
(results and errors resolve a waiting query) and, for server requests, by the first child's tag
(``IQ_SET_HANDLERS``) or the ``xmlns`` (``IQ_GET_HANDLERS``). A handler is a plain function that
must not block the reader: long work is spawned on the connection (``conn.spawn``), whose failure
handling ends the connection with a typed close instead of a silent crash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from evolink.wa import call, message_recv, notification, receipt
from evolink.wa.connection import Connection
from evolink.wa.events import CloseReason
from evolink.wa.login import handle_success
from evolink.wa.pair_qr import handle_pair_device
from evolink.wa.pair_success import handle_pair_success
from evolink.wa.stream_errors import Disconnect, from_failure, from_stream_error, remote_closed
from evolink.wire.binary import SERVER_JID, Node

if TYPE_CHECKING:
    from evolink.wa.engine import Engine

log = logging.getLogger("evolink.wa.dispatch")

Handler = Callable[["Engine", Connection, Node], None]


def _iq_pair_device(engine: Engine, conn: Connection, node: Node) -> None:
    pd = node.child("pair-device")
    assert pd is not None
    conn.spawn(handle_pair_device(engine, conn, node, pd), "pair-device")


def _iq_pair_success(engine: Engine, conn: Connection, node: Node) -> None:
    ps = node.child("pair-success")
    assert ps is not None
    conn.spawn(handle_pair_success(engine, conn, node, ps), "pair-success")


def _iq_ping(engine: Engine, conn: Connection, node: Node) -> None:
    reply = Node("iq", {"to": SERVER_JID, "type": "result", "id": node.attrs.get("id", "")})
    conn.spawn(conn.send(reply), "pong")


IQ_SET_HANDLERS: dict[str, Handler] = {
    "pair-device": _iq_pair_device,
    "pair-success": _iq_pair_success,
}
IQ_GET_HANDLERS: dict[str, Handler] = {
    "urn:xmpp:ping": _iq_ping,
}


def _iq(engine: Engine, conn: Connection, node: Node) -> None:
    kind = node.attrs.get("type")
    if kind in ("result", "error"):
        conn.resolve(node)
        return
    handler: Handler | None = None
    if kind == "set":
        for child in node.children():
            handler = IQ_SET_HANDLERS.get(child.tag)
            if handler is not None:
                break
    elif kind == "get":
        handler = IQ_GET_HANDLERS.get(node.attrs.get("xmlns", ""))
    if handler is None:
        log.debug("unhandled iq", extra={"type": kind, "xmlns": node.attrs.get("xmlns")})
        return
    handler(engine, conn, node)


def _success(engine: Engine, conn: Connection, node: Node) -> None:
    if conn.registration:
        conn.finish(Disconnect(CloseReason.PROTOCOL, None, "success on a registration socket", True))
    else:
        conn.spawn(handle_success(engine, conn, node), "login")


def _failure(engine: Engine, conn: Connection, node: Node) -> None:
    # a 405 names the version we announced and the variable that changes it
    conn.finish(from_failure(node.attrs.get("reason"), node.attrs.get("message"), engine.config.version))


def _stream_error(engine: Engine, conn: Connection, node: Node) -> None:
    conflict = node.child("conflict")
    conn.finish(from_stream_error(node.attrs.get("code"), conflict.attrs.get("type") if conflict else None,
                                  [c.tag for c in node.children()]))


def _stream_end(engine: Engine, conn: Connection, node: Node) -> None:
    conn.finish(remote_closed())


def _ib(engine: Engine, conn: Connection, node: Node) -> None:
    edge = node.child("edge_routing")
    info = edge.child("routing_info") if edge is not None else None
    if info is not None and isinstance(info.content, bytes) and info.content != conn.creds.routing_info:
        conn.creds.routing_info = info.content
        conn.spawn(engine.save_creds(conn.creds), "save-routing-info")


def _ack(engine: Engine, conn: Connection, node: Node) -> None:
    """Server acks: ``class="message"`` completes a send waiting for it; acks of our receipts need
    nothing (whatsmeow drops them too)."""
    if node.attrs.get("class") == "message":
        engine.messaging.on_ack(node)


STANZA_HANDLERS: dict[str, Handler] = {
    "iq": _iq,
    "success": _success,
    "failure": _failure,
    "stream:error": _stream_error,
    "xmlstreamend": _stream_end,
    "ib": _ib,
    "notification": notification.handle,
    "receipt": receipt.handle,
    "call": call.handle,
    "message": message_recv.handle,
    "ack": _ack,
}


def dispatch(engine: Engine, conn: Connection, node: Node) -> None:
    handler = STANZA_HANDLERS.get(node.tag)
    if handler is None:
        log.debug("unhandled node %s", node.tag)
        return
    handler(engine, conn, node)
