"""One instance at run time: its engine, connection state, QR object and the connect logic.

The fix over Evolution (see docs/gateway.md):
- `connect` on a closed instance starts the engine and waits (bounded) for the first QR or, with a
  number, for the server-confirmed pairing code, so the first answer carries it;
- the code is requested once per connection and survives QR rotations; it changes only when the
  connection is lost (a new registration socket gets a new code, announced by events);
- `connect?number=` on a QR-mode connection switches that connection to code mode;
- concurrent `connect` calls share one attempt (one engine start, one code request).

Engine events are queued by a sync callback and handled by a single task per instance, so state
changes, database writes and webhooks keep the engine's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from evolink.clock import Clock
from evolink.clock.base import elapsed as default_elapsed
from evolink.clock.base import iso_utc
from evolink.gateway import names
from evolink.gateway.creds import SqlCredsStore
from evolink.gateway.inputs import phone_number
from evolink.gateway.message_store import SqlMessageStore
from evolink.gateway.messages import InstanceMessages, MessageHub
from evolink.gateway.observe import LinkGuard, allow_all, record_pairing_attempt
from evolink.gateway.ports import EngineFactory, EnginePort, EngineRequest
from evolink.gateway.proxy import ProxySpec, ProxyUnavailable
from evolink.gateway.qr import evolution_code, render_png_data_url
from evolink.gateway.sending import InstanceSender
from evolink.gateway.webhooks import EventPublisher, InstanceRef
from evolink.store import Store
from evolink.wa.events import (
    CallEvent,
    CloseEvent,
    CloseReason,
    ConnectingEvent,
    EngineEvent,
    LoggedOutEvent,
    MessageEvent,
    OpenEvent,
    PairingCodeEvent,
    QrEvent,
    ReceiptEvent,
)

log = logging.getLogger("evolink.gateway.instance")

QR_LIMIT_MESSAGE = "QR code limit reached, please login again"

# Evolution's `statusReason` numbers (Baileys DisconnectReason) for the engine's typed reasons.
STATUS_CODES: dict[CloseReason, int] = {
    CloseReason.LOGGED_OUT: 401, CloseReason.FORBIDDEN: 403, CloseReason.REPLACED: 440,
    CloseReason.RESTART_REQUIRED: 515, CloseReason.QR_REFS_ENDED: 408, CloseReason.TIMED_OUT: 408,
    CloseReason.CONNECTION_CLOSED: 428, CloseReason.BAD_SESSION: 500, CloseReason.UNAVAILABLE: 503,
    CloseReason.CERTIFICATE: 495, CloseReason.PROTOCOL: 500, CloseReason.CONNECT_FAILED: 503,
    CloseReason.CLOCK: 425, CloseReason.CLOSED_BY_USER: 428,
}
_ATTEMPT_OUTCOME: dict[CloseReason, str] = {
    CloseReason.CLOCK: "refused_clock", CloseReason.QR_REFS_ENDED: "expired",
}


class NotConnected(Exception):
    """logout/setPresence on an instance that is not connected."""


class PresenceError(Exception):
    """The engine could not send the presence update."""


def normalise_number(number: str | None) -> str | None:
    """Digits only (Baileys/WhatsApp need them bare); see `evolink.gateway.inputs.phone_number`."""
    if number is None or not number.strip():
        return None
    return phone_number(number)


def bare_jid(jid: str) -> str:
    """`5511...:12@s.whatsapp.net` -> `5511...@s.whatsapp.net` (Evolution's `wuid`)."""
    user, _, server = jid.partition("@")
    return f"{user.split(':', 1)[0]}@{server or 's.whatsapp.net'}"


@dataclass(slots=True)
class RuntimeOptions:
    qrcode_limit: int = 30
    qrcode_color: str = "#198754"
    connect_wait: float = 10.0


@dataclass(slots=True)
class QrObject:
    count: int = 0
    code: str | None = None
    base64: str | None = None
    pairing_code: str | None = None
    code_issued_at: datetime | None = None  # as announced (corrected clock at issue)
    code_expires_at: datetime | None = None
    # The code's life on the elapsed clock (never stepped): what the API reports is derived from these.
    code_issued_elapsed: float | None = None
    code_deadline_elapsed: float | None = None


class InstanceRuntime:
    def __init__(self, *, name: str, instance_id: str, token: str, store: Store, publisher: EventPublisher,
                 clock: Clock, engine_factory: EngineFactory, options: RuntimeOptions,
                 link_guard: LinkGuard = allow_all, wuid: str | None = None, profile_name: str | None = None,
                 on_state: Callable[[InstanceRuntime], None] | None = None,
                 proxy_lookup: Callable[[], Awaitable[ProxySpec | None]] | None = None,
                 elapsed: Callable[[], float] = default_elapsed, messages: MessageHub | None = None) -> None:
        self.name = name
        self.instance_id = instance_id
        self.token = token
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.options = options
        self.link_guard = link_guard
        self._elapsed = elapsed
        self._factory = engine_factory
        self.creds = SqlCredsStore(store, instance_id)

        self.state = "close"
        self.mode = "qr"
        self.phone: str | None = None
        self.qr = QrObject()
        self.wuid = wuid
        self.profile_name = profile_name
        self.last_close: CloseEvent | None = None
        # The latest close the engine is recovering from (e.g. a refused server certificate): only
        # for the connect timeout message, so a caller learns why no code/QR arrives.
        self.last_retry: CloseEvent | None = None

        self._engine: EnginePort | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._gen = 0  # engine generation: events of a replaced engine are ignored
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._queue: asyncio.Queue[tuple[int, EngineEvent]] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._code_task: asyncio.Task[None] | None = None
        self._code_error: str | None = None
        self._announced_code: str | None = None
        self._persisted_status: str | None = None
        self._closed = False
        # The phone accepted the code (pair-success, then the 515 restart): until `open` (or a close),
        # no new code is requested, whatever `connect?number=` says (the engine is already linked).
        self._pair_accepted = False
        self._on_state = on_state
        self._proxy_lookup = proxy_lookup
        self.proxy_shown: str | None = None  # redacted URL of the proxy the current engine uses
        # Messaging (gateway/messages.py, gateway/sending.py): None in tests that only link.
        self.messages = InstanceMessages(messages, self) if messages is not None else None
        self.sender = InstanceSender(self.messages) if self.messages is not None else None
        self._after_open: asyncio.Task[None] | None = None

    # --- public operations -----------------------------------------------------------------------

    @property
    def engine(self) -> EnginePort | None:
        return self._engine

    @property
    def ref(self) -> InstanceRef:
        return InstanceRef(self.name, self.instance_id, self.token, self.wuid)

    def state_body(self) -> dict[str, Any]:
        return {"instance": {"instanceName": self.name, "state": self.state}}

    def last_disconnect_body(self) -> dict[str, Any] | None:
        """Why a not-open instance is not open (additive to connectionState): the close the engine is
        retrying after (e.g. a proxy that refuses), or the final one; None when there is nothing to say."""
        if self.state == "open":
            return None
        ev = self.last_retry if self.state == "connecting" else self.last_close
        if ev is None:
            return None
        return {"reason": ev.reason.value, "statusReason": ev.code if ev.code is not None else
                STATUS_CODES.get(ev.reason, 500), "message": ev.message, "willReconnect": ev.will_reconnect,
                "proxy": self.proxy_shown}

    async def connect(self, number: str | None = None) -> dict[str, Any]:
        """Evolution's `GET /instance/connect` body (always HTTP 200)."""
        phone = normalise_number(number)
        async with self._lock:
            if self.state == "open":
                return self.state_body()
            starting = self._engine is None or self.state == "close"
            switching = phone is not None and self.mode != "code"
            if starting or switching:
                method = "code" if (phone or (not starting and self.mode == "code")) else "qr"
                refusal = await self.link_guard(method)
                if refusal is not None:
                    # Counted in metrics by the clock guard itself; here only the audit row.
                    await self._record_attempt(method, None, None, outcome="refused_clock")
                    body: dict[str, Any] = {"error": True, "message": refusal.message}
                    if refusal.clock:
                        body["clock"] = refusal.clock
                    return body
            if not starting and phone is not None and self.mode == "code" and self.phone not in (None, phone):
                return {"error": True, "message": (
                    f'Instance "{self.name}" is linking number ...{(self.phone or "")[-4:]} with a pairing code; '
                    "log out first to link a different number")}
            if starting:
                if self._engine is not None:
                    await self._stop_engine(logout=False)
                self.mode = "code" if phone else "qr"
                self.phone = phone
                try:
                    await self._start_engine()
                except ProxyUnavailable as exc:
                    return {"error": True, "message": f'Instance "{self.name}" did not connect: {exc}'}
            if phone is not None and self.mode != "code":
                self.mode, self.phone = "code", phone  # switch this live connection to code mode
            if self.mode == "code" and self.phone and self._code_task is None and self.qr.pairing_code is None \
                    and not self._pair_accepted:
                self._code_error = None
                self._start_code_request()
        await self._wait(self._ready, self.options.connect_wait)
        return self.connect_body()

    def connect_body(self) -> dict[str, Any]:
        if self.state == "open":
            return self.state_body()
        if self.mode == "code" and self.qr.pairing_code is None and self._code_error:
            return {"error": True, "message": self._code_error}
        if not self._ready():
            if self.mode == "code" and self.qr.pairing_code is not None:
                return self.qr_body()  # the code is what matters; the QR image follows by webhook
            return {"error": True, "message": self._timeout_message()}
        if self.state == "close" and self.last_close is not None and self.qr.code is None:
            return {"error": True, "message": self._close_message(self.last_close)}
        return self.qr_body()

    def qr_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"pairingCode": self.qr.pairing_code if self.mode == "code" else None}
        if self.qr.code is not None:
            body["code"] = self.qr.code
        if self.qr.base64 is not None:
            body["base64"] = self.qr.base64
        body["count"] = self.qr.count
        if self.mode == "code" and self.qr.pairing_code is not None:
            issued, expires, left = self.code_times()
            body["pairingCodeIssuedAt"] = iso_utc(issued)
            body["pairingCodeExpiresAt"] = iso_utc(expires)
            body["pairingCodeExpiresIn"] = None if left is None else max(0, int(left))
        return body

    def code_times(self) -> tuple[datetime | None, datetime | None, float | None]:
        """(issued at, expires at, seconds left) of the pending code, on the corrected clock *now*.

        The code's life is kept on the elapsed clock, so a wall-clock step neither shortens nor
        lengthens it; the instants are re-derived from the current corrected time, so after a step
        (once the guard has corrected the clock) they are the same true instants as before it."""
        q = self.qr
        if q.code_deadline_elapsed is None or q.code_issued_elapsed is None:
            left = None if q.code_expires_at is None else (q.code_expires_at - self.clock.now()).total_seconds()
            return q.code_issued_at, q.code_expires_at, left
        now, at = self.clock.now(), self._elapsed()
        left = q.code_deadline_elapsed - at
        return (now - timedelta(seconds=at - q.code_issued_elapsed), now + timedelta(seconds=left), left)

    async def restart(self) -> dict[str, Any]:
        async with self._lock:
            if self.state == "close":
                return {"error": True, "message": f'The "{self.name}" instance is not connected'}
            await self._stop_engine(logout=False)
            try:
                await self._start_engine()
            except ProxyUnavailable as exc:
                return {"error": True, "message": f'Instance "{self.name}" did not connect: {exc}'}
            if self.mode == "code" and self.phone:
                self._start_code_request()
        await self._wait(self._ready, self.options.connect_wait)
        return self.connect_body()

    async def logout(self) -> None:
        async with self._lock:
            if self.state == "close" and self._engine is None:
                raise NotConnected(f'The "{self.name}" instance is not connected')
            await self._stop_engine(logout=True)
            with contextlib.suppress(Exception):
                await self.creds.clear()  # the engine wipes them too; make sure nothing survives
            self._set_state("close")
            now = self.clock.now()
            await self._finish_attempts("failed")
            await self._persist(connection_status="close", disconnection_reason_code=401, disconnection_at=now,
                                disconnection_object=json.dumps({"reason": "logged_out", "by": "api"}))
            await self._emit(names.STATUS_INSTANCE, self._status_instance(401, now, "logged out by API"))
            await self._emit(names.LOGOUT_INSTANCE, None)
            await self._emit(names.CONNECTION_UPDATE, {"instance": self.name, "state": "close", "statusReason": 401})
            self.wuid = None

    async def set_presence(self, presence: str) -> None:
        engine = self._engine
        if self.state != "open" or engine is None:
            raise NotConnected(f'The "{self.name}" instance is not connected')
        try:
            await engine.send_presence(presence)
        except Exception as exc:  # Evolution answers 400 with the socket's error text ("Error: …")
            raise PresenceError(f"Error: {exc}") from exc

    async def resume(self) -> None:
        """Reconnect after a process restart (status was open/connecting): straight login from creds."""
        async with self._lock:
            if self._engine is None:
                self.mode, self.phone = "qr", None
                await self._start_engine()

    async def settle(self, within: float = 5.0) -> None:
        """Wait (bounded) until every engine event received so far has been handled and stored."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), within)

    async def shutdown(self) -> None:
        """Process shutdown: close the socket, keep status and creds so the next start resumes."""
        self._closed = True
        async with self._lock:
            await self.settle()  # an `open` that just arrived is persisted before we go
            if self.messages is not None:
                await self.messages.flush()  # announced marks written: no re-announce after a clean stop
            await self._stop_engine(logout=False)
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer

    # --- engine lifecycle ------------------------------------------------------------------------

    async def _start_engine(self) -> None:
        try:
            spec = await self._proxy_lookup() if self._proxy_lookup is not None else None
        except ProxyUnavailable as exc:
            log.error("instance not started: %s", exc, extra={"instance": self.name})
            self._set_state("close")
            raise
        self.proxy_shown = spec.redacted() if spec is not None else None
        if spec is not None:
            log.info("connecting through proxy %s", self.proxy_shown, extra={"instance": self.name})
        self._gen += 1
        gen = self._gen
        self.qr.code = self.qr.base64 = None
        self._clear_code()
        self._pair_accepted = False
        self.last_close = self.last_retry = None
        msg_store = (SqlMessageStore(self.store.db, self.store.cipher, self.instance_id,
                                     on_incoming=self.messages.row_hook) if self.messages is not None else None)
        engine = self._factory(EngineRequest(self.name, self.instance_id, self.creds, self.mode, self.clock,
                                             proxy=spec.url() if spec is not None else None,
                                             message_store=msg_store))
        self._engine = engine
        self._unsubscribe = engine.subscribe(lambda ev: self._queue.put_nowait((gen, ev)))
        if self._consumer is None or self._consumer.done():
            self._consumer = asyncio.create_task(self._consume(), name=f"instance-{self.name}")
        self._set_state("connecting")
        await engine.start()

    async def _stop_engine(self, *, logout: bool) -> None:
        engine, self._engine = self._engine, None
        self._gen += 1  # anything the old engine still emits is ignored
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._code_task is not None:
            self._code_task.cancel()
        self._clear_code()
        if engine is None:
            return
        try:
            if logout:
                await asyncio.wait_for(engine.logout(), timeout=15)
        except Exception as exc:  # not registered, socket gone...: closing is what matters
            log.info("engine logout did not complete: %s", exc, extra={"instance": self.name})
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(engine.close(), timeout=15)

    def _start_code_request(self) -> None:
        gen, phone, engine = self._gen, self.phone, self._engine
        if engine is None or phone is None:
            return

        async def request() -> None:
            try:
                ev = await engine.request_pairing_code(phone)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if gen == self._gen:
                    self._code_error = f"The WhatsApp server did not confirm a pairing code: {exc}"
                    self._code_task = None
                    self._notify()
                return
            if gen == self._gen:
                self._set_code(ev)
                self._queue.put_nowait((gen, ev))  # announce through the ordered event path

        self._code_task = asyncio.create_task(request(), name=f"pairing-code-{self.name}")

    def _clear_code(self) -> None:
        self._code_task = None
        self._code_error = None
        self.qr.pairing_code = self.qr.code_issued_at = self.qr.code_expires_at = None
        self.qr.code_issued_elapsed = self.qr.code_deadline_elapsed = None

    def _set_code(self, ev: PairingCodeEvent) -> None:
        if self.qr.pairing_code == ev.code:
            return
        self.qr.pairing_code = ev.code
        self.qr.code_issued_at = ev.issued_at
        self.qr.code_expires_at = ev.expires_at
        now, at = self.clock.now(), self._elapsed()
        self.qr.code_issued_elapsed = at - max(0.0, (now - ev.issued_at).total_seconds())
        self.qr.code_deadline_elapsed = at + (ev.expires_at - now).total_seconds()
        self._notify()

    # --- waiting ---------------------------------------------------------------------------------

    def _ready(self) -> bool:
        if self.state == "open" or (self.state == "close" and self.last_close is not None):
            return True
        if self.mode == "code":
            # The code is confirmed after pair-device, whose QR may still be rendering: wait for both.
            return (self.qr.pairing_code is not None and self.qr.code is not None) or self._code_error is not None
        return self.qr.code is not None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, predicate: Callable[[], bool], seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return True

    def _timeout_message(self) -> str:
        wait = f"{self.options.connect_wait:g} s"
        detail = ""
        if self.last_close:
            detail = f" (last close: {self._close_message(self.last_close)})"
        elif self.last_retry:
            detail = f" (last attempt: {self._close_message(self.last_retry)}; retrying)"
        if self.mode == "code":
            return (f"No pairing code within {wait}: the WhatsApp server has not confirmed the code request for "
                    f"instance \"{self.name}\" yet (state {self.state}){detail}; call connect again to get it")
        return (f"No QR code within {wait}: the WhatsApp server has not sent pair-device to instance "
                f"\"{self.name}\" yet (state {self.state}){detail}; call connect again to get it")

    @staticmethod
    def _close_message(ev: CloseEvent) -> str:
        code = ev.code if ev.code is not None else STATUS_CODES.get(ev.reason, 500)
        return f"connection closed ({ev.reason.value}, {code}): {ev.message}"

    # --- events ----------------------------------------------------------------------------------

    async def _consume(self) -> None:
        while True:
            gen, ev = await self._queue.get()
            try:
                if gen == self._gen:
                    await self._handle(ev)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling engine event failed", extra={"instance": self.name,
                                                                     "event": type(ev).__name__})
            finally:
                self._queue.task_done()

    async def _handle(self, ev: EngineEvent) -> None:
        if isinstance(ev, ConnectingEvent):
            if self.state != "open":
                self._set_state("connecting")
            await self._persist(connection_status="connecting")
            await self._emit(names.CONNECTION_UPDATE, {"instance": self.name, "state": "connecting",
                                                      "statusReason": 200})
        elif isinstance(ev, QrEvent):
            await self._on_qr(ev)
        elif isinstance(ev, PairingCodeEvent):
            await self._on_code(ev)
        elif isinstance(ev, OpenEvent):
            await self._on_open(ev)
        elif isinstance(ev, CloseEvent):
            await self._on_close(ev)
        elif isinstance(ev, (MessageEvent, ReceiptEvent)):
            if self.messages is not None:
                await self.messages.on_event(ev)
        elif isinstance(ev, CallEvent):
            if self.sender is not None:
                await self.sender.on_call(ev)
        elif isinstance(ev, LoggedOutEvent):
            self._set_state("close")
            await self._persist(connection_status="close")
            await self._emit(names.LOGOUT_INSTANCE, None)

    async def _on_qr(self, ev: QrEvent) -> None:
        if self.qr.count >= self.options.qrcode_limit:
            await self._qr_limit()
            return
        self.qr.count += 1
        code = evolution_code(ev.qr)  # the PNG encodes `code` itself, as Evolution's does (phones accept it)
        png = await asyncio.to_thread(render_png_data_url, code, self.options.qrcode_color)
        self.qr.code, self.qr.base64 = code, png  # together: never a code without its image
        self._notify()
        if self.mode == "code" and self.phone and self.qr.pairing_code is None and self._code_task is None \
                and self._code_error is None and not self._pair_accepted:
            self._start_code_request()  # a new registration socket after a lost one: one new code
        if self.mode == "qr" and ev.index == 0:
            await self._record_attempt("qr", None, ev.expires_at)
        await self._persist(connection_status="connecting")
        await self._emit(names.QRCODE_UPDATED, {"qrcode": {"instance": self.name, "pairingCode": self.qr.pairing_code,
                                                           "code": self.qr.code, "base64": self.qr.base64}})

    async def _on_code(self, ev: PairingCodeEvent) -> None:
        if self.mode != "code":
            self.mode, self.phone = "code", ev.phone
        self._set_code(ev)
        if self._announced_code == ev.code:
            return
        self._announced_code = ev.code
        log.info("pairing code issued", extra={"instance": self.name, "code_suffix": ev.code[-2:],
                                               "expires_at": iso_utc(ev.expires_at)})
        await self._finish_attempts("superseded")
        await self._record_attempt("code", ev.code, ev.expires_at)
        await self._emit(names.QRCODE_UPDATED, {"qrcode": {"instance": self.name, "pairingCode": ev.code,
                                                           "code": self.qr.code, "base64": self.qr.base64}})
        await self._emit(names.CONNECTION_UPDATE, {"instance": self.name, "state": "connecting",
                                                  "statusReason": 200})

    async def _on_open(self, ev: OpenEvent) -> None:
        self.wuid = bare_jid(ev.jid)
        self.profile_name = ev.push_name
        self.last_close = self.last_retry = None
        self._pair_accepted = False
        self._set_state("open")
        self._clear_code()
        await self._finish_attempts("success")
        await self._persist(connection_status="open", owner_jid=self.wuid, profile_name=ev.push_name,
                            disconnection_reason_code=None, disconnection_object=None, disconnection_at=None)
        await self._emit(names.CONNECTION_UPDATE, {"instance": self.name, "wuid": self.wuid,
                                                  "profileName": ev.push_name, "profilePictureUrl": None,
                                                  "state": "open", "statusReason": 200})
        if self.sender is not None:  # alwaysOnline, crash leftovers (announce, resend once)
            self._after_open = asyncio.create_task(self.sender.after_open(), name=f"after-open-{self.name}")

    async def _on_close(self, ev: CloseEvent) -> None:
        status = ev.code if ev.code is not None else STATUS_CODES.get(ev.reason, 500)
        self.qr.code = self.qr.base64 = None  # both were bound to the socket that just closed
        lost_code = self.qr.pairing_code is not None
        self._clear_code()
        # 515 right after pair-success is the success path (login follows); anything else kills the code.
        if lost_code and ev.reason == CloseReason.RESTART_REQUIRED:
            self._pair_accepted = True
        if lost_code and ev.reason != CloseReason.RESTART_REQUIRED:
            await self._finish_attempts(_ATTEMPT_OUTCOME.get(ev.reason, "failed"))
        if ev.will_reconnect:
            # Evolution sends no CONNECTION_UPDATE for a close it recovers from; consumers see `connecting`.
            self.last_retry = ev
            self._set_state("connecting")
            return
        if ev.reason == CloseReason.QR_REFS_ENDED and not self._closed:
            # The engine leaves this to us: like Evolution, open a new registration socket (new QRs,
            # and in code mode one new code, announced) until QRCODE_LIMIT says `refused`.
            await self._finish_attempts("expired")
            if self.qr.count >= self.options.qrcode_limit:
                await self._qr_limit()
            else:
                await self._renew_registration(self._gen)
            return
        self.last_close = ev
        self._pair_accepted = False
        self._set_state("close")
        now = self.clock.now()
        await self._finish_attempts(_ATTEMPT_OUTCOME.get(ev.reason, "failed"))
        await self._persist(connection_status="close", disconnection_reason_code=status, disconnection_at=now,
                            disconnection_object=json.dumps({"reason": ev.reason.value, "message": ev.message}))
        await self._emit(names.STATUS_INSTANCE, self._status_instance(status, now, ev.message))
        await self._emit(names.CONNECTION_UPDATE, {"instance": self.name, "state": "close", "statusReason": status})

    async def _renew_registration(self, gen: int) -> None:
        self._set_state("connecting")
        async with self._lock:
            if gen != self._gen or self._closed:
                return  # connect/logout/restart replaced the engine meanwhile
            await self._stop_engine(logout=False)
            try:
                await self._start_engine()
            except ProxyUnavailable:
                return  # logged by _start_engine; the instance stays closed
        log.info("registration socket renewed", extra={"instance": self.name, "mode": self.mode,
                                                       "qr_count": self.qr.count})

    async def _qr_limit(self) -> None:
        # In-memory state first, so a client reacting to the webhook already sees `close`.
        await self._stop_engine(logout=False)
        with contextlib.suppress(Exception):
            if not await self.creds.has_registered():
                await self.creds.clear()
        self.qr = QrObject()
        self.last_close = CloseEvent(CloseReason.QR_REFS_ENDED, 428, False, QR_LIMIT_MESSAGE)
        self._set_state("close")
        await self._emit(names.QRCODE_UPDATED, {"message": QR_LIMIT_MESSAGE, "statusCode": 500})
        await self._emit(names.CONNECTION_UPDATE, {"instance": self.name, "state": "refused", "statusReason": 428,
                                                  "wuid": self.wuid, "profileName": self.profile_name,
                                                  "profilePictureUrl": None})
        await self._finish_attempts("expired")
        await self._persist(connection_status="close")

    # --- bookkeeping -----------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self._on_state is not None:
                self._on_state(self)
        self._notify()

    def _status_instance(self, code: int, at: datetime, message: str) -> dict[str, Any]:
        return {"instance": self.name, "status": "closed", "disconnectionAt": iso_utc(at),
                "disconnectionReasonCode": code, "disconnectionObject": json.dumps({"message": message})}

    async def _emit(self, event: str, data: Any) -> None:
        try:
            await self.publisher.publish(self.ref, event, data)
        except Exception:
            log.exception("could not store event %s", event, extra={"instance": self.name})

    async def _persist(self, **values: Any) -> None:
        status = values.get("connection_status")
        if set(values) == {"connection_status"} and status == self._persisted_status:
            return
        try:
            await self.store.update_instance(self.instance_id, **values)
            if status is not None:
                self._persisted_status = status
        except Exception:
            log.exception("could not persist instance state", extra={"instance": self.name})

    def _server_time(self, system_now: datetime) -> datetime | None:
        upstream = getattr(self.clock, "upstream", None)
        if not callable(upstream):
            return None
        samples = list(upstream().values())
        if not samples:
            return None
        best = max(samples, key=lambda s: s.observed_at)
        return system_now + timedelta(seconds=best.offset)

    async def _record_attempt(self, method: str, code: str | None, expires_at: datetime | None, *,
                              outcome: str = "pending") -> None:
        system_now = datetime.now(UTC)
        try:
            await self.store.add_pairing_attempt(
                instance_id=self.instance_id, method=method, code=code, issued_at_system=system_now,
                issued_at_corrected=self.clock.now(), issued_at_server=self._server_time(system_now),
                expires_at=expires_at, outcome=outcome)
        except Exception:
            log.exception("could not record pairing attempt", extra={"instance": self.name, "outcome": outcome})

    async def _finish_attempts(self, outcome: str) -> None:
        try:
            rows = await self.store.finish_pairing_attempts(self.instance_id, outcome, self.clock.now())
        except Exception:
            log.exception("could not close pairing attempts", extra={"instance": self.name})
            return
        for row in rows:
            record_pairing_attempt(row.method, outcome, row.duration_seconds)
