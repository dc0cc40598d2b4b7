"""One instance at run time: the async shell around its pure lifecycle (`gateway/lifecycle.py`).

The fix over Evolution (see docs/gateway.md):
- `connect` on a closed instance starts the engine and waits (bounded) for the first QR or, with a
  number, for the server-confirmed pairing code, so the first answer carries it;
- the code is requested once per connection and survives QR rotations; it changes only when the
  connection is lost (a new registration socket gets a new code, announced by events);
- `connect?number=` on a QR-mode connection switches that connection to code mode;
- concurrent `connect` calls share one attempt (one engine start, one code request).

Every state change is `lifecycle.transition(record, event)`; this module only turns API calls and
engine events into lifecycle events and carries out the effects it returns, in order. Engine events
are queued by a sync callback and handled by a single task per instance (`_handle`, the one place
they are dispatched), so state changes, database writes and webhooks keep the engine's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from evolink.clock import Clock
from evolink.clock.base import elapsed as default_elapsed
from evolink.clock.base import iso_utc
from evolink.gateway import lifecycle as lc_
from evolink.gateway.creds import SqlCredsStore
from evolink.gateway.inputs import InvalidNumber, phone_number
from evolink.gateway.lifecycle import (
    QR_LIMIT_MESSAGE,
    STATUS_CODES,
    Effect,
    Lifecycle,
    LinkMode,
    status_code,
)
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
    ConnectingEvent,
    ConnectionState,
    EngineEvent,
    LoggedOutEvent,
    MessageEvent,
    OpenEvent,
    PairingCodeEvent,
    PushNameEvent,
    QrEvent,
    ReceiptEvent,
)

log = logging.getLogger("evolink.gateway.instance")

__all__ = ["QR_LIMIT_MESSAGE", "STATUS_CODES", "InstanceRuntime", "InvalidNumber", "LeaseHeld", "NotConnected", "PresenceError",
           "QrObject", "RuntimeOptions", "bare_jid", "normalise_number"]


class NotConnected(Exception):
    """logout/setPresence on an instance that is not connected."""


class PresenceError(Exception):
    """The engine could not send the presence update."""


class LeaseHeld(Exception):
    """Cluster mode: another node holds this instance's lease; this node must not connect it."""


class InstanceFence(Protocol):
    """Cluster mode (`gateway/cluster.py`): may this node act for the instance?"""

    def holds(self) -> bool: ...

    @property
    def token(self) -> int | None: ...

    async def claim(self) -> bool: ...

    async def write(self, values: dict[str, Any]) -> bool: ...


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
    """A read-only view of the QR/code part of the lifecycle (what the API and the console show)."""

    count: int = 0
    code: str | None = None
    base64: str | None = None
    pairing_code: str | None = None
    code_issued_at: datetime | None = None  # as announced (corrected clock at issue)
    code_expires_at: datetime | None = None
    # The code's life on the elapsed clock (never stepped): what the API reports is derived from these.
    code_issued_elapsed: float | None = None
    code_deadline_elapsed: float | None = None


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, StrEnum) else value


class InstanceRuntime:
    """One WhatsApp instance in this process: its engine, its lifecycle record and its API operations.

    WhatsApp allows one socket per linked device: a second one gets the first closed with 440
    ("replaced"), so this class never runs two engines at once (`_gen` drops events of a replaced
    engine) and a terminal close is final until the next `connect`.
    """

    def __init__(self, *, name: str, instance_id: str, token: str, store: Store, publisher: EventPublisher,
                 clock: Clock, engine_factory: EngineFactory, options: RuntimeOptions,
                 link_guard: LinkGuard = allow_all, wuid: str | None = None, profile_name: str | None = None,
                 on_state: Callable[[InstanceRuntime], None] | None = None,
                 proxy_lookup: Callable[[], Awaitable[ProxySpec | None]] | None = None,
                 elapsed: Callable[[], float] = default_elapsed, fence: InstanceFence | None = None,
                 messages: MessageHub | None = None) -> None:
        self.name = name
        self.instance_id = instance_id
        self.token = token
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.options = options
        self.link_guard = link_guard
        self._elapsed = elapsed
        self.fence = fence  # None: single process, this node always owns the instance
        self._factory = engine_factory
        self.creds = SqlCredsStore(store, instance_id)
        self._lc = Lifecycle(name=name, qrcode_limit=options.qrcode_limit, wuid=wuid, profile_name=profile_name)

        self._engine: EnginePort | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._gen = 0  # engine generation: events of a replaced engine are ignored
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._queue: asyncio.Queue[tuple[int, EngineEvent]] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._code_task: asyncio.Task[None] | None = None
        self._persisted_status: str | None = None
        self._on_state = on_state
        self._proxy_lookup = proxy_lookup
        self.proxy_shown: str | None = None  # redacted URL of the proxy the current engine uses
        # Messaging (gateway/messages.py, gateway/sending.py): None in tests that only link.
        self.messages = InstanceMessages(messages, self) if messages is not None else None
        self.sender = InstanceSender(self.messages) if self.messages is not None else None
        self._after_open: asyncio.Task[None] | None = None
        # Called after each engine event is handled, in order (e.g. gateway/groups.py: GROUPS_UPSERT).
        self.event_hooks: list[Callable[[InstanceRuntime, EngineEvent], Awaitable[None]]] = []
        self._effects: dict[type, Callable[[Any], Awaitable[None]]] = {
            lc_.StartEngine: self._do_start_engine, lc_.StopEngine: self._do_stop_engine,
            lc_.RequestCode: self._do_request_code, lc_.RenewRegistration: self._do_renew,
            lc_.ClearCreds: self._do_clear_creds, lc_.Persist: self._do_persist, lc_.Emit: self._do_emit,
            lc_.RecordAttempt: self._do_record_attempt, lc_.FinishAttempts: self._do_finish_attempts,
            lc_.Log: self._do_log,
        }
        # Engine events -> lifecycle events. The one dispatch point of engine events: events not in
        # this map (messages, receipts …) are not part of the lifecycle.
        self._engine_events: dict[type, Callable[[Any], Awaitable[lc_.Event | None]]] = {
            ConnectingEvent: self._ev_connecting, QrEvent: self._ev_qr, PairingCodeEvent: self._ev_code,
            OpenEvent: self._ev_open, CloseEvent: self._ev_close, LoggedOutEvent: self._ev_logged_out,
            PushNameEvent: self._ev_push_name,
        }
        # Engine events outside the lifecycle: the messaging pipeline's (gateway/messages.py, sending.py).
        self._message_events: dict[type, Callable[[Any], Awaitable[None]]] = {
            MessageEvent: self._ev_message, ReceiptEvent: self._ev_message, CallEvent: self._ev_call,
        }

    # --- the lifecycle record and its views ----------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        return self._lc

    @property
    def state(self) -> ConnectionState:
        return self._lc.state

    @property
    def mode(self) -> LinkMode:
        return self._lc.mode

    @property
    def phone(self) -> str | None:
        return self._lc.phone

    @property
    def wuid(self) -> str | None:
        return self._lc.wuid

    @property
    def profile_name(self) -> str | None:
        return self._lc.profile_name

    @property
    def last_close(self) -> CloseEvent | None:
        return self._lc.last_close

    @property
    def last_retry(self) -> CloseEvent | None:
        """The latest close the engine is recovering from (e.g. a refused server certificate): only
        for the connect timeout message, so a caller learns why no code/QR arrives."""
        return self._lc.last_retry

    @property
    def qr(self) -> QrObject:
        lc, code = self._lc, self._lc.code
        if code is None:
            return QrObject(lc.qr_count, lc.qr_code, lc.qr_base64)
        return QrObject(lc.qr_count, lc.qr_code, lc.qr_base64, code.code, code.issued_at, code.expires_at,
                        code.issued_elapsed, code.deadline_elapsed)

    @property
    def engine(self) -> EnginePort | None:
        return self._engine

    @property
    def ref(self) -> InstanceRef:
        return InstanceRef(self.name, self.instance_id, self.token, self.wuid)

    # --- public operations -----------------------------------------------------------------------

    def state_body(self) -> dict[str, Any]:
        return {"instance": {"instanceName": self.name, "state": self.state}}

    def last_disconnect_body(self) -> dict[str, Any] | None:
        """Why a not-open instance is not open (additive to connectionState): the close the engine is
        retrying after (e.g. a proxy that refuses), or the final one; None when there is nothing to say."""
        if self.state is ConnectionState.OPEN:
            return None
        ev = self.last_retry if self.state is ConnectionState.CONNECTING else self.last_close
        if ev is None:
            return None
        return {"reason": ev.reason.value, "statusReason": status_code(ev), "message": ev.message,
                "willReconnect": ev.will_reconnect, "proxy": self.proxy_shown}

    async def connect(self, number: str | None = None) -> dict[str, Any]:
        """Evolution's `GET /instance/connect` body (always HTTP 200)."""
        phone = normalise_number(number)
        async with self._lock:
            if self.state is ConnectionState.OPEN:
                return self.state_body()
            method = lc_.link_method(self._lc, phone)
            if method is not None:
                refusal = await self.link_guard(method)
                if refusal is not None:
                    await self._step(lc_.ConnectRefused(method, refusal.message))
                    body: dict[str, Any] = {"error": True, "message": refusal.message}
                    if refusal.clock:
                        body["clock"] = refusal.clock
                    return body
            reply = await self._step(lc_.Connect(phone))
            if reply is not None:
                return {"error": True, "message": reply}
        await self._wait(self._ready, self.options.connect_wait)
        await self._settle_after_code_failure()
        return self.connect_body()

    async def _settle_after_code_failure(self) -> None:
        """A failed code request is applied at once; the engine's own events (e.g. the final close that
        explains it: 405, a retired WA Web version) come through the ordered queue. Let them land
        (bounded) so the answer names the cause, not only "the engine is not running"."""
        if self._lc.code_error:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), 1.0)

    def connect_body(self) -> dict[str, Any]:
        lc = self._lc
        if lc.state is ConnectionState.OPEN:
            return self.state_body()
        final = lc.last_close
        if lc.state is ConnectionState.CLOSE and final is not None and not final.will_reconnect \
                and lc.qr_code is None:
            # a final close (e.g. 405, retired WA Web version) says what to fix; a code request only
            # saw that the engine stopped
            return {"error": True, "message": self._close_message(final)}
        if lc.mode is LinkMode.CODE and lc.code is None and lc.code_error:
            return {"error": True, "message": lc.code_error}
        if not self._ready():
            if lc.mode is LinkMode.CODE and lc.code is not None:
                return self.qr_body()  # the code is what matters; the QR image follows by webhook
            return {"error": True, "message": self._timeout_message()}
        if lc.state is ConnectionState.CLOSE and lc.last_close is not None and lc.qr_code is None:
            return {"error": True, "message": self._close_message(lc.last_close)}
        return self.qr_body()

    def qr_body(self) -> dict[str, Any]:
        lc = self._lc
        code = lc.code.code if lc.code is not None and lc.mode is LinkMode.CODE else None
        body: dict[str, Any] = {"pairingCode": code}
        if lc.qr_code is not None:
            body["code"] = lc.qr_code
        if lc.qr_base64 is not None:
            body["base64"] = lc.qr_base64
        body["count"] = lc.qr_count
        if code is not None:
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
        q = self._lc.code
        if q is None:
            return None, None, None
        if q.deadline_elapsed is None or q.issued_elapsed is None:
            return q.issued_at, q.expires_at, (q.expires_at - self.clock.now()).total_seconds()
        now, at = self.clock.now(), self._elapsed()
        left = q.deadline_elapsed - at
        return (now - timedelta(seconds=at - q.issued_elapsed), now + timedelta(seconds=left), left)

    async def restart(self) -> dict[str, Any]:
        async with self._lock:
            reply = await self._step(lc_.Restart())
            if reply is not None:
                return {"error": True, "message": reply}
        await self._wait(self._ready, self.options.connect_wait)
        await self._settle_after_code_failure()
        return self.connect_body()

    async def logout(self) -> None:
        async with self._lock:
            if not lc_.can_logout(self._lc):
                raise NotConnected(f'The "{self.name}" instance is not connected')
            await self._step(lc_.Logout(self.clock.now()))

    async def set_presence(self, presence: str) -> None:
        engine = self._engine
        if self.state is not ConnectionState.OPEN or engine is None:
            raise NotConnected(f'The "{self.name}" instance is not connected')
        try:
            await engine.send_presence(presence)
        except Exception as exc:  # Evolution answers 400 with the socket's error text ("Error: …")
            raise PresenceError(f"Error: {exc}") from exc

    async def resume(self) -> None:
        """Reconnect after a process restart (status was open/connecting): straight login from creds."""
        async with self._lock:
            await self._step(lc_.Resume())

    async def settle(self, within: float = 5.0) -> None:
        """Wait (bounded) until every engine event received so far has been handled and stored."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), within)

    async def shutdown(self) -> None:
        """Process shutdown: close the socket, keep status and creds so the next start resumes."""
        self._apply(lc_.ShutdownRequested())  # from now on nothing new starts (e.g. a renewal)
        async with self._lock:
            await self.settle()  # an `open` that just arrived is persisted before we go
            if self.messages is not None:
                await self.messages.flush()  # announced marks written: no re-announce after a clean stop
            await self._step(lc_.Shutdown())
        await self._stop_consumer()

    async def lease_lost(self) -> None:
        """Cluster mode: another node owns this instance now. Close the socket at once (fencing: the
        new owner must not find this one still connected), write nothing."""
        self._apply(lc_.ShutdownRequested())
        await self._step(lc_.LeaseLost())  # not under the lock: a stuck connect must not delay it
        await self._stop_consumer()

    async def _stop_consumer(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer

    # --- the shell: apply a lifecycle event, carry out its effects -------------------------------

    def _apply(self, event: lc_.Event) -> list[Effect]:
        old = self._lc
        self._lc, effects = lc_.transition(old, event)
        if self._lc.state is not old.state and self._on_state is not None:
            self._on_state(self)
        self._notify()
        return effects

    async def _step(self, event: lc_.Event) -> str | None:
        """Apply `event` and carry out its effects; returns the API error message, if any."""
        return await self._run(self._apply(event))

    async def _run(self, effects: list[Effect]) -> str | None:
        reply: str | None = None
        for effect in effects:
            if isinstance(effect, lc_.Reply):
                reply = effect.message
                continue
            try:
                await self._effects[type(effect)](effect)
            except (ProxyUnavailable, LeaseHeld) as exc:  # only StartEngine raises them: the rest is void
                return await self._step(lc_.StartFailed(f'Instance "{self.name}" did not connect: {exc}'))
        return reply

    async def _do_start_engine(self, effect: lc_.StartEngine) -> None:
        if self.fence is not None and not await self.fence.claim():
            raise LeaseHeld("another gateway node owns this instance")
        try:
            spec = await self._proxy_lookup() if self._proxy_lookup is not None else None
        except ProxyUnavailable as exc:
            log.error("instance not started: %s", exc, extra={"instance": self.name})
            raise
        self.proxy_shown = spec.redacted() if spec is not None else None
        if spec is not None:
            log.info("connecting through proxy %s", self.proxy_shown, extra={"instance": self.name})
        self._gen += 1
        gen = self._gen
        msg_store = (SqlMessageStore(self.store.db, self.store.cipher, self.instance_id,
                                     on_incoming=self.messages.row_hook) if self.messages is not None else None)
        engine = self._factory(EngineRequest(self.name, self.instance_id, self.creds, effect.mode, self.clock,
                                             proxy=spec.url() if spec is not None else None,
                                             message_store=msg_store, push_name=self.profile_name))
        self._engine = engine
        self._unsubscribe = engine.subscribe(lambda ev: self._queue.put_nowait((gen, ev)))
        if self._consumer is None or self._consumer.done():
            self._consumer = asyncio.create_task(self._consume(), name=f"instance-{self.name}")
        await engine.start()

    async def _do_stop_engine(self, effect: lc_.StopEngine) -> None:
        engine, self._engine = self._engine, None
        self._gen += 1  # anything the old engine still emits is ignored
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._code_task is not None:
            self._code_task.cancel()
            self._code_task = None
        if engine is None:
            return
        try:
            if effect.logout:
                await asyncio.wait_for(engine.logout(), timeout=15)
        except Exception as exc:  # not registered, socket gone...: closing is what matters
            log.info("engine logout did not complete: %s", exc, extra={"instance": self.name})
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(engine.close(), timeout=15)

    async def _do_request_code(self, effect: lc_.RequestCode) -> None:
        gen, phone, engine = self._gen, effect.phone, self._engine
        if engine is None:
            return

        async def request() -> None:
            try:
                ev = await engine.request_pairing_code(phone)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if gen == self._gen:
                    self._apply(lc_.CodeFailed(str(exc)))
                return
            if gen == self._gen:
                self._apply(lc_.CodeConfirmed(self._code_info(ev)))
                self._queue.put_nowait((gen, ev))  # announce through the ordered event path

        self._code_task = asyncio.create_task(request(), name=f"pairing-code-{self.name}")

    async def _do_renew(self, _effect: lc_.RenewRegistration) -> None:
        gen = self._gen
        async with self._lock:
            if gen != self._gen or self._lc.stopping:
                return  # connect/logout/restart replaced the engine meanwhile
            if await self._step(lc_.Renew()) is not None:
                return  # logged by the engine start; the instance stays closed
        log.info("registration socket renewed", extra={"instance": self.name, "mode": self.mode,
                                                       "qr_count": self._lc.qr_count})

    async def _do_clear_creds(self, effect: lc_.ClearCreds) -> None:
        with contextlib.suppress(Exception):  # the engine wipes them too on logout
            if not effect.only_unregistered or not await self.creds.has_registered():
                await self.creds.clear()

    async def _do_emit(self, effect: lc_.Emit) -> None:
        if self.fence is not None and not self.fence.holds():
            log.info("event dropped: lease not held", extra={"instance": self.name, "event": effect.event})
            return
        try:
            await self.publisher.publish(self.ref, effect.event, effect.data)
        except Exception:
            log.exception("could not store event %s", effect.event, extra={"instance": self.name})

    async def _do_persist(self, effect: lc_.Persist) -> None:
        values = {k: _plain(v) for k, v in effect.values.items()}
        status = values.get("connection_status")
        if set(values) == {"connection_status"} and status == self._persisted_status:
            return
        try:
            if self.fence is None:
                await self.store.update_instance(self.instance_id, **values)
            elif not await self.fence.write(values):  # fenced: refused once another node owns it
                log.info("state not stored: lease not held", extra={"instance": self.name})
                return
            if status is not None:
                self._persisted_status = status
        except Exception:
            log.exception("could not persist instance state", extra={"instance": self.name})

    async def _do_log(self, effect: lc_.Log) -> None:
        log.info(effect.message, extra={"instance": self.name, **{k: _plain(v) for k, v in effect.fields.items()}})

    async def _do_record_attempt(self, effect: lc_.RecordAttempt) -> None:
        system_now = datetime.now(UTC)
        try:
            await self.store.add_pairing_attempt(
                instance_id=self.instance_id, method=str(_plain(effect.method)), code=effect.code,
                issued_at_system=system_now, issued_at_corrected=self.clock.now(),
                issued_at_server=self._server_time(system_now), expires_at=effect.expires_at,
                outcome=effect.outcome)
        except Exception:
            log.exception("could not record pairing attempt", extra={"instance": self.name,
                                                                     "outcome": effect.outcome})

    async def _do_finish_attempts(self, effect: lc_.FinishAttempts) -> None:
        try:
            rows = await self.store.finish_pairing_attempts(self.instance_id, effect.outcome, self.clock.now())
        except Exception:
            log.exception("could not close pairing attempts", extra={"instance": self.name})
            return
        for row in rows:
            record_pairing_attempt(row.method, effect.outcome, row.duration_seconds)

    def _server_time(self, system_now: datetime) -> datetime | None:
        upstream = getattr(self.clock, "upstream", None)
        if not callable(upstream):
            return None
        samples = list(upstream().values())
        if not samples:
            return None
        best = max(samples, key=lambda s: s.observed_at)
        return system_now + timedelta(seconds=best.offset)

    def _code_info(self, ev: PairingCodeEvent) -> lc_.PairingCode:
        """The code with its life measured on the elapsed clock from now (immune to clock steps)."""
        now, at = self.clock.now(), self._elapsed()
        return lc_.PairingCode(ev.code, ev.phone, ev.issued_at, ev.expires_at,
                               issued_elapsed=at - max(0.0, (now - ev.issued_at).total_seconds()),
                               deadline_elapsed=at + (ev.expires_at - now).total_seconds())

    # --- waiting ---------------------------------------------------------------------------------

    def _ready(self) -> bool:
        lc = self._lc
        if lc.state is ConnectionState.OPEN or (lc.state is ConnectionState.CLOSE and lc.last_close is not None):
            return True
        if lc.mode is LinkMode.CODE:
            # The code is confirmed after pair-device, whose QR may still be rendering: wait for both.
            return (lc.code is not None and lc.qr_code is not None) or lc.code_error is not None
        return lc.qr_code is not None

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
        if self.mode is LinkMode.CODE:
            return (f"No pairing code within {wait}: the WhatsApp server has not confirmed the code request for "
                    f"instance \"{self.name}\" yet (state {self.state}){detail}; call connect again to get it")
        return (f"No QR code within {wait}: the WhatsApp server has not sent pair-device to instance "
                f"\"{self.name}\" yet (state {self.state}){detail}; call connect again to get it")

    @staticmethod
    def _close_message(ev: CloseEvent) -> str:
        return f"connection closed ({ev.reason.value}, {status_code(ev)}): {ev.message}"

    # --- engine events: the one place they are dispatched ---------------------------------------

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
        translate = self._engine_events.get(type(ev))
        if translate is not None:
            event = await translate(ev)
            if event is not None:
                await self._step(event)
            if isinstance(ev, OpenEvent) and self.state == ConnectionState.OPEN and self.sender is not None:
                # alwaysOnline, crash leftovers (announce, resend once)
                self._after_open = asyncio.create_task(self.sender.after_open(), name=f"after-open-{self.name}")
        else:
            handler = self._message_events.get(type(ev))
            if handler is not None:
                await handler(ev)
        for hook in self.event_hooks:  # after the event is handled, in order (e.g. GROUPS_UPSERT)
            await hook(self, ev)

    async def _ev_message(self, ev: MessageEvent | ReceiptEvent) -> None:
        if self.messages is not None:
            await self.messages.on_event(ev)

    async def _ev_call(self, ev: CallEvent) -> None:
        if self.sender is not None:
            await self.sender.on_call(ev)

    async def _ev_connecting(self, _ev: ConnectingEvent) -> lc_.Event:
        return lc_.EngineConnecting()

    async def _ev_qr(self, ev: QrEvent) -> lc_.Event:
        code = evolution_code(ev.qr)  # the PNG encodes `code` itself, as Evolution's does (phones accept it)
        if self._lc.qr_count >= self._lc.qrcode_limit:
            return lc_.QrShown(code, "", ev.index, ev.expires_at)  # refused by the table: no image needed
        png = await asyncio.to_thread(render_png_data_url, code, self.options.qrcode_color)
        return lc_.QrShown(code, png, ev.index, ev.expires_at)

    async def _ev_code(self, ev: PairingCodeEvent) -> lc_.Event:
        return lc_.CodeIssued(self._code_info(ev))

    async def _ev_open(self, ev: OpenEvent) -> lc_.Event:
        return lc_.Opened(bare_jid(ev.jid), ev.push_name)

    async def _ev_close(self, ev: CloseEvent) -> lc_.Event:
        return lc_.Closed(ev, self.clock.now())

    async def _ev_logged_out(self, _ev: LoggedOutEvent) -> lc_.Event:
        return lc_.LoggedOutUpstream()

    async def _ev_push_name(self, ev: PushNameEvent) -> lc_.Event:
        return lc_.PushNameLearned(ev.name)  # the account told its name: fetchInstances' profileName
