"""Linking with a phone-number pairing code (wa-protocol §8).

Rules that make the code work on the first try:
- it is requested only on a registration socket that has received ``pair-device``;
- it is handed out only after the server confirmed it (``link_code_pairing_ref``); a refusal becomes
  ``PairingCodeRefused`` and no code is emitted;
- one code per connection: repeat calls (and QR rotations) return the same code until it expires;
- PBKDF2 (131072 rounds) runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from evolink.wa.connection import Connection, IqError, QueryTimeout
from evolink.wa.events import PairingCodeEvent
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.crypto import (
    KeyPair,
    derive_adv_secret,
    dh,
    encrypt_key_bundle,
    generate_pairing_code,
    unwrap_ephemeral,
    wrap_ephemeral,
)

if TYPE_CHECKING:
    from evolink.wa.engine import Engine

log = logging.getLogger("evolink.wa.pair_code")


class PairingError(Exception):
    """Base of every pairing-code failure."""


class InvalidPhoneNumber(PairingError, ValueError):
    pass


class AlreadyPaired(PairingError):
    """The engine's creds are already linked to an account."""


class PairingUnavailable(PairingError):
    """No registration socket with ``pair-device`` became available in time."""


class PairingCodeRefused(PairingError):
    """The server answered companion_hello with an error; no code was handed out."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"server refused the pairing code request: {code} {text}")
        self.code = code
        self.text = text


def normalize_phone(phone: str) -> str:
    """Digits only, international format without '+'; refuses obviously wrong numbers (as whatsmeow).
    ASCII digits only: `str.isdigit` would also keep Arabic-Indic or full-width digits."""
    digits = "".join(ch for ch in str(phone) if "0" <= ch <= "9")
    if len(digits) <= 6:
        raise InvalidPhoneNumber("phone number must have more than 6 digits (international format)")
    if digits.startswith("0"):
        raise InvalidPhoneNumber("phone number must be in international format (no leading 0)")
    if len(digits) > 15:
        raise InvalidPhoneNumber("phone number has more than 15 digits")
    return digits


def mask(code: str) -> str:
    return "******" + code[-2:]


@dataclass(slots=True)
class PendingCode:
    code: str
    phone: str
    ref: bytes
    ephemeral: KeyPair
    issued_at: datetime
    expires_at: datetime
    # Expiry on the elapsed clock (never stepped): a wall-clock step while the code is pending must
    # neither end the registration early nor keep a dead code alive. ``expires_at`` is only reported.
    deadline: float = math.inf  # on ``Engine.elapsed``
    adv_secret: bytes | None = None  # derived at companion_finish; used to check pair-success

    def event(self) -> PairingCodeEvent:
        return PairingCodeEvent(self.code, self.phone, self.issued_at, self.expires_at)


def _bytes_child(node: Node | None, tag: str) -> bytes | None:
    child = node.child(tag) if node is not None else None
    return child.content if child is not None and isinstance(child.content, bytes) else None


async def request_code(engine: Engine, conn: Connection, phone: str) -> PendingCode:
    cfg = engine.config
    code = generate_pairing_code()
    ephemeral = KeyPair.generate()
    wrapped = await asyncio.to_thread(wrap_ephemeral, code, ephemeral.public)
    jid = f"{phone}@s.whatsapp.net"
    hello = Node("iq", {"to": SERVER_JID, "type": "set", "id": conn.next_id(), "xmlns": "md"}, [
        Node("link_code_companion_reg",
             {"jid": jid, "stage": "companion_hello", "should_show_push_notification": "true"}, [
                 Node("link_code_pairing_wrapped_companion_ephemeral_pub", {}, wrapped),
                 Node("companion_server_auth_key_pub", {}, conn.creds.noise_public),
                 Node("companion_platform_id", {}, cfg.companion_platform_id),
                 Node("companion_platform_display", {}, cfg.platform_display),
                 Node("link_code_pairing_nonce", {}, "0"),
             ]),
    ])
    try:
        reply = await conn.query(hello)
    except IqError as exc:
        raise PairingCodeRefused(exc.code, exc.text) from None
    except QueryTimeout as exc:
        raise PairingCodeRefused(408, str(exc)) from None
    ref = _bytes_child(reply.child("link_code_companion_reg"), "link_code_pairing_ref")
    if not ref:
        raise PairingCodeRefused(0, "server reply has no link_code_pairing_ref")
    issued = engine.clock.now()
    pending = PendingCode(code, phone, ref, ephemeral, issued, issued + timedelta(seconds=cfg.pairing_code_ttl),
                          deadline=engine.elapsed() + cfg.pairing_code_ttl)
    log.info("pairing code confirmed by the server", extra={"code": mask(code), "conn": conn.number})
    return pending


async def handle_primary_hello(engine: Engine, conn: Connection, notification: Node) -> None:
    """The phone typed the code: unwrap its ephemeral, send companion_finish, derive the ADV secret."""
    reg = notification.child("link_code_companion_reg")
    pending: PendingCode | None = conn.pairing
    if pending is None:
        log.warning("primary_hello without a pending pairing code on this connection; ignored")
        return
    wrapped = _bytes_child(reg, "link_code_pairing_wrapped_primary_ephemeral_pub")
    primary_identity = _bytes_child(reg, "primary_identity_pub")
    ref = _bytes_child(reg, "link_code_pairing_ref")
    if wrapped is None or len(wrapped) < 80 or primary_identity is None or len(primary_identity) != 32:
        raise ValueError("primary_hello is missing the wrapped ephemeral or the primary identity")
    if ref is not None and not secrets.compare_digest(ref, pending.ref):
        raise ValueError("primary_hello refers to another pairing ref")
    primary_ephemeral = await asyncio.to_thread(unwrap_ephemeral, pending.code, wrapped[:80])
    eph_shared = dh(pending.ephemeral.private, primary_ephemeral)
    adv_random = secrets.token_bytes(32)
    bundle = conn.creds.identity_public + primary_identity + adv_random
    wrapped_bundle = encrypt_key_bundle(eph_shared, bundle)
    ident_shared = dh(conn.creds.identity_private, primary_identity)
    pending.adv_secret = derive_adv_secret(eph_shared, ident_shared, adv_random)
    finish = Node("iq", {"to": SERVER_JID, "type": "set", "id": conn.next_id(), "xmlns": "md"}, [
        Node("link_code_companion_reg", {"jid": f"{pending.phone}@s.whatsapp.net", "stage": "companion_finish"}, [
            Node("link_code_pairing_wrapped_key_bundle", {}, wrapped_bundle),
            Node("companion_identity_public", {}, conn.creds.identity_public),
            Node("link_code_pairing_ref", {}, pending.ref),
        ]),
    ])
    await conn.query(finish)
    log.info("companion_finish accepted", extra={"conn": conn.number})
