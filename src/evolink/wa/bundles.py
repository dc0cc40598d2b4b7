"""Key bundles of peer devices: ``<iq xmlns="encrypt" type="get"><key><user jid/>…</key></iq>``.

Answers are matched by the echoed ``jid``; a ``<user>`` with an ``<error>`` or with wrong key sizes
is skipped (that device gets no copy, as whatsmeow does; Baileys would fail the whole send).
"""

from __future__ import annotations

import dataclasses
import logging

from evolink.wa import jids
from evolink.wa.connection import Connection
from evolink.wa.e2e import Bundle
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.errors import DecodeError

log = logging.getLogger("evolink.wa.bundles")


def query(device_jids: list[str], *, reason: str | None = None) -> Node:
    attrs = {"reason": reason} if reason else {}
    return Node("iq", {"to": SERVER_JID, "type": "get", "xmlns": "encrypt"}, [
        Node("key", {}, [Node("user", {"jid": j, **attrs}) for j in device_jids]),
    ])


def _bytes(node: Node | None, tag: str, size: int) -> bytes | None:
    child = node.child(tag) if node is not None else None
    if child is None or not isinstance(child.content, bytes) or len(child.content) != size:
        return None
    return child.content


def parse_bundle(node: Node) -> Bundle | None:
    """One ``<user>`` (or a retry receipt's ``<keys>``) → Bundle; None when incomplete or malformed."""
    if node.child("error") is not None:
        return None
    reg = node.child("registration")
    reg_bytes = reg.content if reg is not None and isinstance(reg.content, bytes) else None
    identity = _bytes(node, "identity", 32)
    skey = node.child("skey")
    spk_id, spk, sig = _bytes(skey, "id", 3), _bytes(skey, "value", 32), _bytes(skey, "signature", 64)
    if identity is None or spk_id is None or spk is None or sig is None:
        return None
    key = node.child("key")
    pk_id, pk = _bytes(key, "id", 3), _bytes(key, "value", 32)
    return Bundle(
        registration_id=int.from_bytes(reg_bytes, "big") if reg_bytes and len(reg_bytes) <= 4 else 0,
        identity=identity, signed_pre_key_id=int.from_bytes(spk_id, "big"), signed_pre_key=spk,
        signed_pre_key_signature=sig,
        pre_key_id=int.from_bytes(pk_id, "big") if pk_id is not None and pk is not None else None,
        pre_key=pk if pk_id is not None else None,
    )


def parse(reply: Node) -> dict[str, Bundle]:
    lst = reply.child("list")
    out: dict[str, Bundle] = {}
    for user in lst.children("user") if lst is not None else []:
        jid = user.attrs.get("jid", "")
        keys = user.child("keys")
        bundle = parse_bundle(keys if keys is not None else user)
        if bundle is None or "@" not in jid:
            log.warning("key bundle refused", extra={"jid": jid})
            continue
        try:
            device = jids.parse(jid).device
        except DecodeError:
            continue
        out[jid] = dataclasses.replace(bundle, device_id=device)
    return out


async def fetch(conn: Connection, device_jids: list[str], *, reason: str | None = None) -> dict[str, Bundle]:
    if not device_jids:
        return {}
    return parse(await conn.query(query(device_jids, reason=reason)))
