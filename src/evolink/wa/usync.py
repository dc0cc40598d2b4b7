"""Device lists by ``usync`` (wa-messaging §4.2), cached for ``DEVICE_CACHE_TTL`` per user.

Query as Baileys 7 sends it: ``context="message" mode="query"``, ``<devices version="2"/>`` and
``<lid/>``. Parsing follows Baileys' rules: device 0 always, other devices only with a non-zero
``key-index`` (hosted devices are skipped); ``<lid val>`` teaches the PN↔LID pair.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from evolink.wa import jids
from evolink.wa.connection import Connection
from evolink.wire.binary import SERVER_JID, Node

if TYPE_CHECKING:
    from evolink.wa.messaging import Messaging

log = logging.getLogger("evolink.wa.usync")


class UsyncError(ValueError):
    pass


def query(users: list[str], sid: str) -> Node:
    return Node("iq", {"to": SERVER_JID, "type": "get", "xmlns": "usync"}, [
        Node("usync", {"context": "message", "mode": "query", "sid": sid, "last": "true", "index": "0"}, [
            Node("query", {}, [Node("devices", {"version": "2"}), Node("lid")]),
            Node("list", {}, [Node("user", {"jid": u}) for u in users]),
        ]),
    ])


def parse(reply: Node) -> dict[str, tuple[list[str], str | None]]:
    """user JID (as asked) → (device JIDs in the same namespace, LID user or None)."""
    usync = reply.child("usync")
    lst = usync.child("list") if usync is not None else None
    if lst is None:
        raise UsyncError("usync reply without usync/list")
    out: dict[str, tuple[list[str], str | None]] = {}
    for user in lst.children("user"):
        jid = user.attrs.get("jid", "")
        if "@" not in jid:
            continue
        devices: list[str] = []
        dev_node = user.child("devices")
        dl = dev_node.child("device-list") if dev_node is not None else None
        for d in dl.children("device") if dl is not None else []:
            did = d.attrs.get("id", "")
            if not did.isdigit():
                continue
            n = int(did)
            key_index = d.attrs.get("key-index", "")
            if n != 0 and (not key_index.isdigit() or int(key_index) == 0):
                continue  # Baileys drops companions without a key index
            if d.attrs.get("is_hosted") == "true":
                continue
            devices.append(jids.device_jid(jid, n))
        lid_node = user.child("lid")
        lid = lid_node.attrs.get("val") if lid_node is not None else None
        out[jids.non_ad(jid)] = (devices, lid if lid and "@" in lid else None)
    return out


async def devices(m: Messaging, conn: Connection, users: list[str]) -> list[str]:
    """All device JIDs of ``users`` (non-AD), from the cache or one usync query for the misses."""
    result: list[str] = []
    missing: list[str] = []
    for u in dict.fromkeys(users):
        cached = m.cached_devices(u)
        if cached is None:
            missing.append(u)
        else:
            result += cached
    if missing:
        reply = await conn.query(query(missing, conn.next_id()))
        answered = parse(reply)
        for u in missing:
            devs, lid = answered.get(u, ([], None))
            if lid is not None and not jids.is_lid(u):
                m.learn_pair(u, lid)
            m.cache_devices(u, devs)
            result += devs
    return result
