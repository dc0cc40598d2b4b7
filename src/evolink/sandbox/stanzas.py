"""Builders for the server's stanzas and small helpers over ``evolink.wire.binary.Node``."""

from __future__ import annotations

import secrets

from evolink.wire.binary import SERVER_JID, Node


def new_id() -> str:
    """Server-side stanza id (digits; never collides with clients' ``a.b-N`` ids)."""
    return str(10**8 + secrets.randbelow(9 * 10**8))


def result(iq: Node, content: list[Node] | None = None, sender: str = SERVER_JID) -> Node:
    """``<iq type="result" id=… from="s.whatsapp.net">`` answering ``iq`` (``from`` = ``sender``)."""
    return Node("iq", {"from": sender, "type": "result", "id": iq.attrs.get("id", "")}, content)


def error(iq: Node, code: int, text: str) -> Node:
    return Node(
        "iq",
        {"from": SERVER_JID, "type": "error", "id": iq.attrs.get("id", "")},
        [Node("error", {"code": str(code), "text": text})],
    )


def stream_error(code: int) -> Node:
    """``stream:error`` for a kick/close code, shaped the way clients map it back to ``code``."""
    if code == 401:
        return Node("stream:error", {"code": "401"}, [Node("conflict", {"type": "device_removed"})])
    if code == 440:
        # No code attribute: a bare <conflict type="replaced"/> is what "replaced" looks like.
        return Node("stream:error", {}, [Node("conflict", {"type": "replaced"})])
    return Node("stream:error", {"code": str(code)})


def children(node: Node) -> list[Node]:
    return [c for c in node.content if isinstance(c, Node)] if isinstance(node.content, list) else []


def child_bytes(node: Node | None, tag: str) -> bytes | None:
    """Content of child ``tag`` as bytes (BINARY content; strings are encoded back as UTF-8)."""
    if node is None:
        return None
    for c in children(node):
        if c.tag == tag:
            if isinstance(c.content, bytes):
                return c.content
            if isinstance(c.content, str):
                return c.content.encode()
            return None
    return None


def child_text(node: Node | None, tag: str) -> str | None:
    raw = child_bytes(node, tag)
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def label(node: Node) -> str:
    """Short name for the per-connection stanza log.

    Top-level tag, except: ``presence`` carries its type (``presence:available``); an iq with a child is named by its first child (``ping``, ``count``,
    ``pair-device-sign``…), a ``link_code_companion_reg`` by its stage (``companion_hello``), an
    iq without children by ``iq:<type>`` plus ``:<xmlns>`` when it has one (``iq:get:blocklist``).
    """
    if node.tag == "presence":
        return f"presence:{node.attrs.get('type', 'available')}"
    if node.tag != "iq":
        return node.tag
    kids = children(node)
    if not kids:
        xmlns = node.attrs.get("xmlns")
        return f"iq:{node.attrs.get('type', '')}" + (f":{xmlns}" if xmlns else "")
    first = kids[0]
    if first.tag == "link_code_companion_reg":
        return first.attrs.get("stage") or first.tag
    return first.tag
