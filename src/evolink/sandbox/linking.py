"""Registration sockets: QR refs, pairing codes, and linking a companion to a phone.

A registration ClientPayload (no username) makes the server send ``pair-device`` with its refs; the
phone then either scans a QR (:meth:`Linker.scan`) or its user types a pairing code
(:meth:`Linker.enter_code`, after the companion's ``companion_hello``). Both end in
:meth:`Linker.link_device`: ``pair-success`` → verified ``pair-device-sign`` → device stored →
``stream:error 515``. What the phone computes is in ``phone.py``.

Caveat: the real server's close of a registration socket whose refs all expired is unknown; the
sandbox sends ``stream:error 408``, mirroring Baileys' own "QR refs attempts ended".
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError as PbDecodeError
from websockets.exceptions import ConnectionClosed

from evolink.sandbox import stanzas
from evolink.sandbox.errors import AdminError
from evolink.sandbox.host import Host
from evolink.sandbox.phone import (
    DeviceIdentity,
    LinkRefused,
    PrimaryHello,
    build_device_identity,
    finish_code_pairing,
    primary_hello,
    verify_device_sign,
)
from evolink.sandbox.store import PHONE_RE, DeviceRecord, PhoneRecord
from evolink.sandbox.transport import Gone, Link
from evolink.wire import crypto
from evolink.wire.binary import SERVER_JID, Node
from evolink.wire.crypto import KeyPair
from evolink.wire.proto import wa_pb2

log = logging.getLogger("evolink.sandbox.linking")

MAX_WRONG_CODES = 5  # wrong pairing-code attempts before the registration is dropped


class ProtocolViolation(Exception):
    """The client sent something the server refuses; the socket is closed."""


@dataclass(slots=True)
class QrRef:
    ref: str
    expires_at: float  # sandbox time


@dataclass(slots=True)
class Registration:
    """What a registration ClientPayload told us about the would-be companion."""

    identity_public: bytes
    registration_id: int
    platform: str
    refs: list[QrRef]
    started_at: float


@dataclass(slots=True)
class CodeRegistration:
    """A pending pairing-code registration; bound to its socket and dies with it."""

    phone: str
    ref: bytes
    wrapped_companion: bytes
    platform_id: str
    platform_display: str
    created_at: float
    expires_at: float
    wrong_attempts: int = 0


class Linker:
    """The registration half of one connection.

    ``close(code, reason)`` ends the socket with ``stream:error code``; ``spawn`` runs a task that
    dies with the socket; ``on_linked(phone, device)`` tells the connection who it now is.
    """

    def __init__(self, host: Host, link: Link, conn_id: str, client_static: bytes, *,
                 close: Callable[[int, str], Coroutine[Any, Any, None]],
                 spawn: Callable[[Coroutine[Any, Any, None]], None],
                 on_linked: Callable[[str, int], None]) -> None:
        self.host = host
        self.link = link
        self.id = conn_id
        self.client_static = client_static
        self._close = close
        self._spawn = spawn
        self._on_linked = on_linked
        self.opened_at = host.clock.time()
        self.registration: Registration | None = None
        self.code_registration: CodeRegistration | None = None
        self._finish_waiter: asyncio.Future[Node] | None = None
        self._linking = False

    # --------------------------------------------------------------------- registration
    async def register(self, payload: wa_pb2.ClientPayload) -> bool:
        """Answer a registration payload with ``pair-device``; False if it was refused (closing)."""
        data = payload.devicePairingData
        if len(data.eIdent) != 32 or len(data.eSkeyVal) != 32 or len(data.eRegid) != 4:
            raise ProtocolViolation("malformed devicePairingData")
        if not crypto.verify(data.eIdent, b"\x05" + data.eSkeyVal, data.eSkeySig):
            # The real service refuses a registration whose signed pre-key does not verify.
            self.link.begin_close(1000, "bad signed pre-key signature", Node("failure", {"reason": "400"}))
            await self.link.wait_closed()
            return False
        platform = "unknown"
        if data.deviceProps:
            with contextlib.suppress(PbDecodeError):
                props = wa_pb2.DeviceProps.FromString(data.deviceProps)
                platform = props.os or platform
        cfg = self.host.config
        now = self.host.clock.time()
        refs = []
        for i in range(cfg.qr_ref_count):
            ttl = cfg.qr_first_ttl + cfg.qr_next_ttl * i
            refs.append(QrRef("2@" + base64.b64encode(secrets.token_bytes(48)).decode(), now + ttl))
        self.registration = Registration(
            identity_public=bytes(data.eIdent),
            registration_id=int.from_bytes(data.eRegid, "big"),
            platform=platform,
            refs=refs,
            started_at=now,
        )
        node = Node(
            "iq",
            {"from": SERVER_JID, "type": "set", "id": stanzas.new_id(), "xmlns": "md"},
            [Node("pair-device", {}, [Node("ref", {}, r.ref.encode()) for r in refs])],
        )
        await self.link.send_node(node)
        self._spawn(self._registration_expiry())
        return True

    def _registration_deadline(self) -> float:
        assert self.registration is not None
        deadline = self.registration.refs[-1].expires_at if self.registration.refs else self.opened_at
        if self.code_registration is not None:
            deadline = max(deadline, self.code_registration.expires_at)
        return deadline + self.host.config.qr_close_grace

    async def _registration_expiry(self) -> None:
        """Close the registration socket once its refs (and any pairing code) have run out."""
        while True:
            remaining = self._registration_deadline() - self.host.clock.time()
            if remaining <= 0 and not self._linking:
                break
            # Re-evaluate at least every second: the sandbox clock may be moved by the admin.
            await asyncio.sleep(min(max(remaining, 0.05), 1.0))
        log.info("registration refs exhausted", extra={"conn": self.id})
        # 408 mirrors what Baileys reports when it runs out of refs itself ("QR refs attempts ended").
        await self._close(408, "qr refs exhausted")

    def has_ref(self, ref: str) -> bool:
        return self.registration is not None and any(r.ref == ref for r in self.registration.refs)

    def current_ref_valid(self, ref: str) -> bool:
        assert self.registration is not None
        now = self.host.clock.time()
        return any(r.ref == ref and now <= r.expires_at for r in self.registration.refs)

    def forget(self) -> None:
        """The socket is gone: a pairing-code registration dies with it."""
        self.code_registration = None
        if self._finish_waiter is not None and not self._finish_waiter.done():
            self._finish_waiter.set_exception(Gone())

    # -------------------------------------------------------------------------- linking
    async def link_device(self, phone: PhoneRecord, *, identity_public: bytes, adv_secret: bytes,
                          method: str, platform: str) -> DeviceRecord:
        """pair-success → verified pair-device-sign → device stored → stream:error 515.

        Callers (:meth:`scan`, :meth:`enter_code`) hold the socket's ``_linking`` flag.
        """
        if self.registration is None or self.link.transport is None:
            raise AdminError(409, "not_registering", "connection is not a registration connection")
        host = self.host
        account = KeyPair.from_private(phone.identity_private)
        device = host.store.allocate_device(phone.phone)
        now = host.clock.unix()
        identity: DeviceIdentity = build_device_identity(
            account, identity_public, adv_secret, key_index=device, timestamp=now
        )
        node = Node(
            "iq",
            {"from": SERVER_JID, "type": "set", "id": stanzas.new_id(), "xmlns": "md", "t": str(now)},
            [Node("pair-success", {}, [
                Node("device-identity", {}, identity.container),
                Node("platform", {"name": host.config.phone_platform}),
                Node("device", {"jid": f"{phone.phone}:{device}@s.whatsapp.net", "lid": f"{phone.lid}:{device}@lid"}),
            ])],
        )
        try:
            reply = await self.link.request(node, host.config.link_timeout)
        except TimeoutError as exc:
            raise AdminError(504, "client_timeout", "the companion did not answer pair-success") from exc
        except (Gone, ConnectionClosed) as exc:
            raise AdminError(409, "connection_closed", "the companion closed the socket (it refused pair-success)") from exc
        if reply.attrs.get("type") != "result":
            err = next((c for c in stanzas.children(reply) if c.tag == "error"), None)
            text = f"{err.attrs.get('code')} {err.attrs.get('text')}" if err else "error"
            raise AdminError(409, "companion_refused", f"the companion refused pair-success: {text}")
        sign = next((c for c in stanzas.children(reply) if c.tag == "pair-device-sign"), None)
        ident = next((c for c in stanzas.children(sign) if c.tag == "device-identity"), None) if sign else None
        if ident is None or not isinstance(ident.content, bytes):
            await self._close(500, "bad pair-device-sign")
            raise AdminError(400, "bad_device_identity", "pair-device-sign without a device-identity")
        try:
            verify_device_sign(ident.content, ident.attrs.get("key-index"), identity, account.public,
                               identity_public)
        except LinkRefused:
            await self._close(500, "bad pair-device-sign")
            raise
        record = host.store.add_device(
            phone.phone, device, noise_key=self.client_static, identity_key=identity_public,
            registration_id=self.registration.registration_id, key_index=device, method=method,
            platform=platform, now=host.clock.unix(),
        )
        log.info("device linked", extra={"conn": self.id, "phone": phone.phone, "device": device, "method": method})
        self._on_linked(phone.phone, device)
        host.router.device_linked(phone.phone, device)
        self._spawn(self._close(515, "paired: restart required"))
        return record

    async def scan(self, phone: PhoneRecord, noise_public: bytes, identity_public: bytes,
                   adv_secret: bytes, platform_id: str | None) -> DeviceRecord:
        if self.registration is None:
            raise AdminError(409, "not_registering", "connection is not a registration connection")
        if noise_public != self.client_static:
            raise AdminError(400, "noise_key_mismatch", "QR noise key is not the socket's static key")
        if identity_public != self.registration.identity_public:
            raise AdminError(400, "identity_mismatch", "QR identity key differs from the registration")
        if self._linking:
            raise AdminError(409, "link_in_progress", "a link is already in progress on this socket")
        self._linking = True
        try:
            platform = f"{self.registration.platform} (platform id {platform_id or '?'})"
            return await self.link_device(phone, identity_public=identity_public, adv_secret=adv_secret,
                                          method="qr", platform=platform)
        finally:
            self._linking = False

    # --------------------------------------------------------------------- pairing code
    async def on_link_code_iq(self, iq: Node, reg: Node) -> None:
        """``<iq><link_code_companion_reg stage=…>`` from the companion (hello or finish)."""
        stage = reg.attrs.get("stage")
        if stage == "companion_hello":
            await self._companion_hello(iq, reg)
        elif stage == "companion_finish":
            await self._companion_finish(iq)
        else:
            await self.link.send_node(stanzas.error(iq, 400, "bad-request"))

    async def _companion_hello(self, iq: Node, reg: Node) -> None:
        refused = self.host.faults.companion_hello_error
        if refused is not None:  # fault: the server refuses every code request (rate limit…)
            await self.link.send_node(stanzas.error(iq, refused.code, refused.text))
            return
        if self.registration is None:
            await self.link.send_node(stanzas.error(iq, 400, "bad-request"))
            return
        jid = reg.attrs.get("jid", "")
        user = jid.split("@", 1)[0]
        wrapped = stanzas.child_bytes(reg, "link_code_pairing_wrapped_companion_ephemeral_pub")
        auth_key = stanzas.child_bytes(reg, "companion_server_auth_key_pub")
        if not PHONE_RE.match(user) or wrapped is None or len(wrapped) != 80:
            await self.link.send_node(stanzas.error(iq, 400, "bad-request"))
            return
        if auth_key != self.client_static:
            await self.link.send_node(stanzas.error(iq, 401, "not-authorized"))
            return
        now = self.host.clock.time()
        ref = ("2@" + base64.b64encode(secrets.token_bytes(24)).decode()).encode()
        self.code_registration = CodeRegistration(
            phone=user,
            ref=ref,
            wrapped_companion=wrapped,
            platform_id=stanzas.child_text(reg, "companion_platform_id") or "",
            platform_display=stanzas.child_text(reg, "companion_platform_display") or "",
            created_at=now,
            expires_at=now + self.host.config.pairing_code_ttl,
        )
        log.info("pairing-code registration", extra={"conn": self.id, "phone": user})
        await self.link.send_node(stanzas.result(iq, [
            Node("link_code_companion_reg", {}, [Node("link_code_pairing_ref", {}, ref)])
        ]))

    async def _companion_finish(self, iq: Node) -> None:
        waiter = self._finish_waiter
        if waiter is None or waiter.done():
            await self.link.send_node(stanzas.error(iq, 400, "bad-request"))
            return
        waiter.set_result(iq)

    async def enter_code(self, phone: PhoneRecord, code: str) -> DeviceRecord:
        """The phone's user typed ``code``: primary_hello → companion_finish → pair-success."""
        reg = self.code_registration
        if reg is None or reg.phone != phone.phone:
            raise AdminError(404, "no_pending_registration", f"no pairing-code registration for {phone.phone}")
        if self.host.clock.time() > reg.expires_at:
            raise AdminError(410, "expired", "the pairing code has expired")
        if self._linking:
            raise AdminError(409, "link_in_progress", "a link is already in progress on this socket")
        assert self.registration is not None
        self._linking = True
        try:
            return await self._enter_code(phone, code, reg)
        except (Gone, ConnectionClosed) as exc:
            raise AdminError(409, "connection_closed", "the companion's socket is closing") from exc
        finally:
            self._linking = False

    async def _enter_code(self, phone: PhoneRecord, code: str, reg: CodeRegistration) -> DeviceRecord:
        assert self.registration is not None
        account = KeyPair.from_private(phone.identity_private)
        # Two PBKDF2 runs (131072 rounds each): keep them off the event loop.
        hello: PrimaryHello = await asyncio.to_thread(primary_hello, code, reg.wrapped_companion)
        self._finish_waiter = asyncio.get_running_loop().create_future()
        await self.link.send_node(Node(
            "notification",
            {"from": SERVER_JID, "type": "link_code_companion_reg", "id": stanzas.new_id(),
             "t": str(self.host.clock.unix())},
            [Node("link_code_companion_reg", {"stage": "primary_hello"}, [
                Node("link_code_pairing_wrapped_primary_ephemeral_pub", {}, hello.wrapped_primary),
                Node("primary_identity_pub", {}, account.public),
                Node("link_code_pairing_ref", {}, reg.ref),
            ])],
        ))
        try:
            finish = await asyncio.wait_for(self._finish_waiter, self.host.config.link_timeout)
        except TimeoutError as exc:
            raise AdminError(504, "client_timeout", "the companion did not send companion_finish") from exc
        except Gone as exc:
            raise AdminError(409, "connection_closed", "the companion closed the socket") from exc
        finally:
            self._finish_waiter = None
        lc = next((c for c in stanzas.children(finish) if c.tag == "link_code_companion_reg"), None)
        bundle = stanzas.child_bytes(lc, "link_code_pairing_wrapped_key_bundle")
        companion_identity = stanzas.child_bytes(lc, "companion_identity_public")
        try:
            if stanzas.child_bytes(lc, "link_code_pairing_ref") != reg.ref:
                raise LinkRefused(400, "ref_mismatch", "companion_finish carries another ref")
            if bundle is None or companion_identity is None:
                raise LinkRefused(400, "bad_companion_finish", "companion_finish lacks bundle or identity")
            if companion_identity != self.registration.identity_public:
                raise LinkRefused(400, "identity_mismatch", "companion identity differs from the registration")
            adv_secret = finish_code_pairing(hello, account, bundle, companion_identity)
        except LinkRefused as exc:
            reg.wrong_attempts += 1
            if reg.wrong_attempts >= MAX_WRONG_CODES:
                self.code_registration = None
            await self.link.send_node(stanzas.error(finish, 400, "bad-request"))
            log.info("pairing code refused", extra={"conn": self.id, "error": exc.error,
                                                    "code_tail": code[-2:]})
            raise
        await self.link.send_node(stanzas.result(finish))
        self.code_registration = None
        platform = reg.platform_display or self.registration.platform
        return await self.link_device(phone, identity_public=companion_identity, adv_secret=adv_secret,
                                      method="code", platform=platform)
