"""After ``success``: server time, LID, pre-keys, passive=false, ``open``, then unified_session and the
key-bundle digest check (both after ``open``, so neither can delay it)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from evolink.wa import prekeys
from evolink.wa.connection import Connection, ConnectionLost, IqError, QueryTimeout
from evolink.wire.binary import SERVER_JID, Node

if TYPE_CHECKING:
    from evolink.wa.engine import Engine

log = logging.getLogger("evolink.wa.login")


async def handle_success(engine: Engine, conn: Connection, success: Node) -> None:
    engine.report_server_time(success.attrs.get("t"), "success")
    creds = conn.creds
    changed = False
    lid = success.attrs.get("lid")
    if lid and lid != creds.me_lid:
        creds.me_lid = lid
        changed = True
    cfg = engine.config
    try:
        async with engine.messaging.prekey_lock:
            await prekeys.ensure_uploaded(conn, creds, min_count=cfg.prekey_min_count,
                                          upload_count=cfg.prekey_upload_count, save=engine.save_creds)
    except (IqError, QueryTimeout, ValueError) as exc:
        # Not fatal for the link itself; retried on the next login.
        log.warning("pre-key check failed: %s", exc)
    if changed:
        await engine.save_creds(creds)
    try:
        await conn.query(Node("iq", {"to": SERVER_JID, "type": "set", "xmlns": "passive"}, [Node("active")]))
    except (IqError, QueryTimeout) as exc:
        log.warning("passive=false not acknowledged: %s", exc)
    engine.on_open(conn)
    await engine.send_unified_session(conn)
    try:
        await prekeys.check_digest(conn, creds, cfg.prekey_upload_count, save=engine.save_creds,
                                   lock=engine.messaging.prekey_lock)
    except ConnectionLost as exc:
        # The socket closed while the check was in flight (logout, close, replaced): nothing to warn about;
        # the check runs again on the next login.
        log.debug("key-bundle digest check abandoned: %s", exc)
    except (IqError, QueryTimeout) as exc:
        log.warning("key-bundle digest check failed: %s", exc)
