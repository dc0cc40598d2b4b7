"""One-time pre-keys: ask the server how many it holds, upload a batch when it runs low."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable

from evolink.wa.connection import Connection
from evolink.wa.creds import Creds
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.crypto import KeyPair

log = logging.getLogger("evolink.wa.prekeys")

MAX_PRE_KEY_ID = (1 << 24) - 1  # ids travel as 3 bytes

SaveCreds = Callable[[Creds], Awaitable[None]]


def count_query() -> Node:
    return Node("iq", {"to": SERVER_JID, "type": "get", "xmlns": "encrypt"}, [Node("count")])


def parse_count(reply: Node) -> int:
    count = reply.child("count")
    value = count.attrs.get("value", "") if count is not None else ""
    if not value.isdigit():
        raise ValueError(f"pre-key count reply without a numeric value: {value!r}")
    return int(value)


def generate(creds: Creds, n: int) -> list[tuple[int, KeyPair]]:
    """Fresh key pairs with ids following the last uploaded one (wrapping inside 24 bits)."""
    keys = []
    next_id = creds.next_pre_key_id
    for _ in range(n):
        keys.append((next_id, KeyPair.generate()))
        next_id = next_id + 1 if next_id < MAX_PRE_KEY_ID else 1
    return keys


# One generator at a time per event loop (see generate_cooperatively).
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


async def generate_cooperatively(creds: Creds, n: int, chunk: int = 8) -> list[tuple[int, KeyPair]]:
    """``generate`` in small chunks, yielding to the loop in between.

    Key generation holds the GIL (~40 µs per pair), so a worker thread would only fight the loop for
    it. Chunks keep each step short, and a per-loop lock lets only one engine generate at a time:
    when hundreds of devices log in together, their batches queue up instead of all landing in the
    same loop iteration (same total CPU, no 100 ms stalls).
    """
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    keys: list[tuple[int, KeyPair]] = []
    async with lock:
        next_id = creds.next_pre_key_id
        while len(keys) < n:
            for _ in range(min(chunk, n - len(keys))):
                keys.append((next_id, KeyPair.generate()))
                next_id = next_id + 1 if next_id < MAX_PRE_KEY_ID else 1
            await asyncio.sleep(0)
    return keys


def upload_node(creds: Creds, keys: list[tuple[int, KeyPair]]) -> Node:
    return Node("iq", {"to": SERVER_JID, "type": "set", "xmlns": "encrypt"}, [
        Node("registration", {}, creds.registration_id.to_bytes(4, "big")),
        Node("type", {}, b"\x05"),
        Node("identity", {}, creds.identity_public),
        Node("list", {}, [
            Node("key", {}, [Node("id", {}, kid.to_bytes(3, "big")), Node("value", {}, kp.public)])
            for kid, kp in keys
        ]),
        Node("skey", {}, [
            Node("id", {}, creds.signed_pre_key_id.to_bytes(3, "big")),
            Node("value", {}, creds.signed_pre_key_public),
            Node("signature", {}, creds.signed_pre_key_signature),
        ]),
    ])


async def ensure_uploaded(conn: Connection, creds: Creds, *, min_count: int, upload_count: int,
                          save: SaveCreds | None = None) -> int:
    """Upload ``upload_count`` pre-keys if the server holds fewer than ``min_count``; returns the number
    uploaded (see ``upload`` for ``save``)."""
    server_count = parse_count(await conn.query(count_query()))
    if server_count >= min_count:
        return 0
    uploaded = await upload(conn, creds, upload_count, save)
    log.info("uploaded pre-keys", extra={"count": uploaded, "server_had": server_count})
    return uploaded


async def upload(conn: Connection, creds: Creds, n: int, save: SaveCreds | None = None) -> int:
    """Generate and upload ``n`` pre-keys; the private halves go to ``creds``.

    Crash safety: ``save`` (the engine's creds persistence) runs *before* the upload query, so the
    server can never hand out a public key whose private half died with the process (a peer's
    first message on it would be undecryptable). A failed upload leaves unused keys in ``creds``,
    which is harmless: ids only grow, and the next upload uses fresh ones.
    """
    if n <= 0:
        return 0
    keys = await generate_cooperatively(creds, n)
    for kid, kp in keys:
        creds.pre_keys[kid] = kp.private
    creds.next_pre_key_id = keys[-1][0] + 1 if keys[-1][0] < MAX_PRE_KEY_ID else 1
    if save is not None:
        await save(creds)
    await conn.query(upload_node(creds, keys))
    return len(keys)


def digest_query() -> Node:
    return Node("iq", {"to": SERVER_JID, "type": "get", "xmlns": "encrypt"}, [Node("digest")])


async def check_digest(conn: Connection, creds: Creds, upload_count: int, save: SaveCreds | None = None,
                       lock: asyncio.Lock | None = None) -> int:
    """Ask the server for its digest of our key bundle (as Baileys does after login); a reply without
    ``<digest>`` means the server lost our bundle, so a fresh batch is uploaded. Returns keys uploaded.
    ``lock`` (the engine's pre-key lock) is held for the upload only, not across the digest query."""
    reply = await conn.query(digest_query())
    if reply.child("digest") is not None:
        return 0
    log.warning("encrypt digest reply has no digest node; re-uploading pre-keys")
    if lock is None:
        return await upload(conn, creds, upload_count, save)
    async with lock:
        return await upload(conn, creds, upload_count, save)
