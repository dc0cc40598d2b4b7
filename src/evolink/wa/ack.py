"""``<ack>`` for what the server sends us: receipts, notifications, calls and refused messages.

Shape (Baileys 7.0.0-rc14 ``buildAckStanza``, which mirrors WA Web; whatsmeow ``sendAck`` agrees except
that it drops ``type`` on message acks): ``<ack id=<id> to=<from> class=<tag> [error] [participant]
[recipient] [type] [from=<own jid>, message class only]>``. Attributes the stanza does not carry are
left out, never sent empty: a ``type=""`` ack is not what either client sends. A successfully
decrypted message gets a ``<receipt>`` instead of an ack (``message_recv``).
"""

from __future__ import annotations

from evolink.wire.binary import SERVER_JID, Node

# Error codes a client puts into <ack error> (Baileys NACK_REASONS, whatsmeow receipt.go).
NACK_PARSING_ERROR = 487
NACK_UNRECOGNIZED_STANZA = 488
NACK_INVALID_PROTOBUF = 491
NACK_UNHANDLED_ERROR = 500
NACK_DB_OPERATION_FAILED = 552


def ack_for(node: Node, *, error: int | None = None, me: str | None = None) -> Node:
    """The ack answering ``node`` (its tag becomes the ack's ``class``)."""
    attrs = node.attrs
    out = {"id": attrs.get("id", ""), "to": attrs.get("from") or SERVER_JID, "class": node.tag}
    if error:
        out["error"] = str(error)
    for name in ("participant", "recipient", "type"):
        value = attrs.get(name)
        if value:
            out[name] = value
    if node.tag == "message" and me:
        out["from"] = me
    return Node("ack", out)
