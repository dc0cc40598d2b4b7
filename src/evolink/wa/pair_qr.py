"""QR linking: acknowledge ``pair-device``, then show its refs one after another.

The server sends all refs at once; the client decides how long each is shown (WA Web: first 60 s,
then 20 s). When the last one has expired the registration socket is closed with a typed
``QR_REFS_ENDED`` and no reconnect: showing QR codes forever nobody scans is the gateway's decision.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import TYPE_CHECKING

from evolink.wa.connection import Connection
from evolink.wa.events import CloseReason, QrEvent
from evolink.wa.stream_errors import Disconnect
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.qr import build_qr

if TYPE_CHECKING:
    from evolink.wa.engine import Engine


def refs_of(pair_device: Node) -> list[bytes]:
    refs: list[bytes] = []
    for ref in pair_device.children("ref"):
        if isinstance(ref.content, bytes) and ref.content:
            refs.append(ref.content)
        elif isinstance(ref.content, str) and ref.content:
            refs.append(ref.content.encode())
    return refs


async def handle_pair_device(engine: Engine, conn: Connection, iq: Node, pair_device: Node) -> None:
    await conn.send(Node("iq", {"to": SERVER_JID, "type": "result", "id": iq.attrs.get("id", "")}))
    refs = refs_of(pair_device)
    if not refs:
        conn.finish(Disconnect(CloseReason.PROTOCOL, None, "pair-device without refs", will_reconnect=True))
        return
    conn.pair_device_seen.set()
    engine.notify_connection_change()
    conn.spawn(rotate(engine, conn, refs), "qr-rotation")


async def rotate(engine: Engine, conn: Connection, refs: list[bytes]) -> None:
    cfg = engine.config
    creds = conn.creds
    for index, ref in enumerate(refs):
        ttl = cfg.qr_first_ttl if index == 0 else cfg.qr_next_ttl
        qr = build_qr(ref, creds.noise_public, creds.identity_public, creds.adv_secret, cfg.companion_platform_id)
        engine.emit(QrEvent(qr, index, len(refs), engine.clock.now() + timedelta(seconds=ttl)))
        await asyncio.sleep(ttl)
        if conn.pair_success_seen:
            return
    conn.qr_exhausted = True
    # A confirmed pairing code keeps the registration alive until it expires (the code is bound to
    # this socket); the server may still close earlier, which ends it the same way.
    while conn.pairing is not None and not conn.pair_success_seen:
        left = conn.pairing.deadline - engine.elapsed()  # never-stepped clock: a wall step cannot end it
        if left <= 0:
            break
        await asyncio.sleep(min(left, 1.0))
    if not conn.pair_success_seen:
        conn.finish(Disconnect(CloseReason.QR_REFS_ENDED, 408, "QR refs attempts ended", will_reconnect=False))
