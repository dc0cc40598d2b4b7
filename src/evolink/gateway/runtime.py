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
from typing import Any

from evolink.clock import Clock
from evolink.clock.base import elapsed as default_elapsed
from evolink.gateway import lifecycle as lc_
from evolink.gateway import runtime_views as views
from evolink.gateway.creds import SqlCredsStore
from evolink.gateway.inputs import InvalidNumber, phone_number
from evolink.gateway.lifecycle import (
    QR_LIMIT_MESSAGE,
    STATUS_CODES,
    Effect,
    Lifecycle,
    LinkMode,
)
from evolink.gateway.messages import InstanceMessages, MessageHub
from evolink.gateway.observe import LinkGuard, allow_all
from evolink.gateway.ports import EngineFactory, EnginePort
from evolink.gateway.proxy import ProxySpec, ProxyUnavailable
from evolink.gateway.runtime_effects import EffectRunner, InstanceFence, LeaseHeld, RuntimeHooks
from evolink.gateway.runtime_events import LIFECYCLE_EVENTS, EventContext, bare_jid
from evolink.gateway.runtime_views import QrObject
from evolink.gateway.sending import InstanceSender
from evolink.gateway.webhooks import EventPublisher, InstanceRef
from evolink.store import Store
from evolink.wa.events import (
    CallEvent,
    CloseEvent,
    ConnectionState,
    EngineEvent,
    MessageEvent,
    OpenEvent,
    ReceiptEvent,
)

log = logging.getLogger("evolink.gateway.instance")

__all__ = ["QR_LIMIT_MESSAGE", "STATUS_CODES", "InstanceRuntime", "InvalidNumber", "LeaseHeld", "NotConnected", "PresenceError",
           "QrObject", "RuntimeOptions", "bare_jid", "normalise_number"]


class NotConnected(Exception):
    """logout/setPresence on an instance that is not connected."""


class PresenceError(Exception):
    """The engine could not send the presence update."""


def normalise_number(number: str | None) -> str | None:
    """Digits only (Baileys/WhatsApp need them bare); see `evolink.gateway.inputs.phone_number`."""
    if number is None or not number.strip():
        return None
    return phone_number(number)


@dataclass(slots=True)
class RuntimeOptions:
    """Per-instance settings (from env, see docs/gateway.md).

    `qrcode_limit`: QRs shown per registration socket before it is closed (Evolution's
    QRCODE_LIMIT); `qrcode_color`: the PNG's colour; `connect_wait`: how long `connect`/`restart`
    wait for the first QR or server-confirmed code before answering with a timeout message."""

    qrcode_limit: int = 30
    qrcode_color: str = "#198754"
    connect_wait: float = 10.0


class InstanceRuntime:
    """One WhatsApp instance in this process: its lifecycle record, its engine events and its API operations.

    The async shell of `gateway/lifecycle.py`: API calls and engine events become lifecycle events;
    the effects they return are carried out in order by `EffectRunner` (gateway/runtime_effects.py),
    and the API bodies are read-only views of the record (gateway/runtime_views.py).

    Caveats:
    - WhatsApp allows one socket per linked device: a second one gets the first closed with 440
      ("replaced"), so this class never runs two engines at once (the runner's engine generation
      drops events of a replaced engine) and a terminal close is final until the next `connect`.
    - API operations that start or stop the engine run under one lock, so concurrent `connect`
      calls share one attempt; they wait for the server (QR, code) outside the lock, bounded by
      `RuntimeOptions.connect_wait`. `lease_lost` alone skips the lock: a stuck connect must not
      delay fencing.
    - Engine events are handled by one task per instance, in the engine's order; `settle` waits
      (bounded) for the ones received so far.
    - In cluster mode (`fence` set) a node that lost the lease writes and announces nothing.
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
        self.creds = SqlCredsStore(store, instance_id)
        self._lc = Lifecycle(name=name, qrcode_limit=options.qrcode_limit, wuid=wuid, profile_name=profile_name)

        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._queue: asyncio.Queue[tuple[int, EngineEvent]] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._on_state = on_state
        # Messaging (gateway/messages.py, gateway/sending.py): None in tests that only link.
        self.messages = InstanceMessages(messages, self) if messages is not None else None
        self.sender = InstanceSender(self.messages) if self.messages is not None else None
        self._after_open: asyncio.Task[None] | None = None
        # Called after each engine event is handled, in order (e.g. gateway/groups.py: GROUPS_UPSERT).
        self.event_hooks: list[Callable[[InstanceRuntime, EngineEvent], Awaitable[None]]] = []
        # The effect executors and the engine slot (gateway/runtime_effects.py).
        self._runner = EffectRunner(
            name=name, instance_id=instance_id, store=store, publisher=publisher, clock=clock, creds=self.creds,
            engine_factory=engine_factory, elapsed=elapsed, fence=fence, proxy_lookup=proxy_lookup,
            messages=self.messages,
            hooks=RuntimeHooks(lifecycle=lambda: self._lc, ref=lambda: self.ref, apply=self._apply,
                               enqueue=self._enqueue, start_consumer=self._start_consumer, renew=self._renew))
        # Engine events outside the lifecycle: the messaging pipeline's (gateway/messages.py, sending.py).
        self._message_events: dict[type, Callable[[Any], Awaitable[None]]] = {
            MessageEvent: self._ev_message, ReceiptEvent: self._ev_message, CallEvent: self._ev_call,
        }

    # --- the lifecycle record and its views ----------------------------------------------------

    @property
    def lifecycle(self) -> Lifecycle:
        """The current record (immutable: every transition replaces it, so a read is a snapshot)."""
        return self._lc

    @property
    def state(self) -> ConnectionState:
        """Evolution's connection state (`open`, `connecting`, `close`)."""
        return self._lc.state

    @property
    def mode(self) -> LinkMode:
        """How the current attempt links: by QR, or by pairing code (`connect?number=`)."""
        return self._lc.mode

    @property
    def phone(self) -> str | None:
        """The number a pairing code was requested for (digits only), if any."""
        return self._lc.phone

    @property
    def wuid(self) -> str | None:
        """The linked account's bare JID (Evolution's `wuid`); known once the instance opened."""
        return self._lc.wuid

    @property
    def profile_name(self) -> str | None:
        """The account's push name, as the server last told it (fetchInstances' `profileName`)."""
        return self._lc.profile_name

    @property
    def last_close(self) -> CloseEvent | None:
        """The close that ended the last connection for good (no reconnect follows), if any."""
        return self._lc.last_close

    @property
    def last_retry(self) -> CloseEvent | None:
        """The latest close the engine is recovering from (e.g. a refused server certificate): only
        for the connect timeout message, so a caller learns why no code/QR arrives."""
        return self._lc.last_retry

    @property
    def qr(self) -> QrObject:
        """The QR/code part of the record as a snapshot (a new object each read)."""
        return views.qr_object(self._lc)

    @property
    def engine(self) -> EnginePort | None:
        """The running engine, None while closed (it changes on every start: don't keep it)."""
        return self._runner.engine

    @property
    def proxy_shown(self) -> str | None:
        """Redacted URL of the proxy the current (or last) engine uses; None without a proxy."""
        return self._runner.proxy_shown

    @property
    def ref(self) -> InstanceRef:
        """Who events are about (name, id, token, wuid) as of now."""
        return InstanceRef(self.name, self.instance_id, self.token, self.wuid)

    # --- public operations -----------------------------------------------------------------------

    def state_body(self) -> dict[str, Any]:
        """Evolution's `connectionState` body."""
        return views.state_body(self.name, self.state)

    def last_disconnect_body(self) -> dict[str, Any] | None:
        """Why a not-open instance is not open (additive to connectionState): the close the engine is
        retrying after (e.g. a proxy that refuses), or the final one; None when there is nothing to say."""
        return views.last_disconnect_body(self._lc, self.proxy_shown)

    async def connect(self, number: str | None = None) -> dict[str, Any]:
        """Evolution's `GET /instance/connect` body (always HTTP 200).

        Starts the engine if needed and waits (bounded by `connect_wait`) for the first QR or, with
        `number`, the server-confirmed pairing code, so the first answer carries it. A number on a
        QR-mode connection switches it to code mode; a code is requested once per connection. Open
        instances answer their state. Raises `InvalidNumber` for a number that is not one."""
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
        """The `connect`/`restart` answer for the record as it is now (see `runtime_views.connect_body`)."""
        return views.connect_body(self._lc, self.name, self.options.connect_wait, self.code_times)

    def qr_body(self) -> dict[str, Any]:
        """Evolution's QR body, with the pending code's issue/expiry in code mode (additive)."""
        return views.qr_body(self._lc, self.code_times)

    def code_times(self) -> views.CodeTimes:
        """(issued at, expires at, seconds left) of the pending code, on the corrected clock *now*.

        The code's life is kept on the elapsed clock, so a wall-clock step neither shortens nor
        lengthens it; the instants are re-derived from the current corrected time, so after a step
        (once the guard has corrected the clock) they are the same true instants as before it."""
        q = self._lc.code
        if q is None:
            return None, None, None
        return views.code_times(q, self.clock.now(), self._elapsed)

    async def restart(self) -> dict[str, Any]:
        """Evolution's `restart`: close the socket and start a fresh engine in the same mode (code
        mode requests a new code); answers like `connect`, after the same bounded wait. A closed
        instance answers an error body ("not connected")."""
        async with self._lock:
            reply = await self._step(lc_.Restart())
            if reply is not None:
                return {"error": True, "message": reply}
        await self._wait(self._ready, self.options.connect_wait)
        await self._settle_after_code_failure()
        return self.connect_body()

    async def logout(self) -> None:
        """Unlink the device on the server (bounded; closing the socket is what matters if the server
        does not answer), wipe the creds and forget the push name (the next link may be another
        account); the instance ends closed. Raises `NotConnected` when there is nothing to log out of."""
        async with self._lock:
            if not lc_.can_logout(self._lc):
                raise NotConnected(f'The "{self.name}" instance is not connected')
            await self._step(lc_.Logout(self.clock.now()))

    async def set_presence(self, presence: str) -> None:
        """Send a global presence (`available`/`unavailable`). Raises `NotConnected` unless open, and
        `PresenceError` with the socket's error text when the engine could not send it."""
        engine = self._runner.engine
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
                await self._runner.execute(effect)
            except (ProxyUnavailable, LeaseHeld) as exc:  # only StartEngine raises them: the rest is void
                return await self._step(lc_.StartFailed(f'Instance "{self.name}" did not connect: {exc}'))
        return reply

    def _enqueue(self, gen: int, ev: EngineEvent) -> None:
        self._queue.put_nowait((gen, ev))

    def _start_consumer(self) -> None:
        if self._consumer is None or self._consumer.done():
            self._consumer = asyncio.create_task(self._consume(), name=f"instance-{self.name}")

    async def _renew(self, gen: int) -> None:
        """The registration socket of engine generation `gen` ran out of QRs/time: open a new one,
        unless connect/logout/restart/shutdown replaced that engine meanwhile."""
        async with self._lock:
            if gen != self._runner.gen or self._lc.stopping:
                return  # connect/logout/restart replaced the engine meanwhile
            if await self._step(lc_.Renew()) is not None:
                return  # logged by the engine start; the instance stays closed
        log.info("registration socket renewed", extra={"instance": self.name, "mode": self.mode,
                                                       "qr_count": self._lc.qr_count})

    # --- waiting ---------------------------------------------------------------------------------

    def _ready(self) -> bool:
        return views.ready(self._lc)

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

    # --- engine events: the one place they are dispatched ---------------------------------------

    async def _consume(self) -> None:
        while True:
            gen, ev = await self._queue.get()
            try:
                if gen == self._runner.gen:
                    await self._handle(ev)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("handling engine event failed", extra={"instance": self.name,
                                                                     "event": type(ev).__name__})
            finally:
                self._queue.task_done()

    async def _handle(self, ev: EngineEvent) -> None:
        # Engine events -> lifecycle events (gateway/runtime_events.py). The one dispatch point of
        # engine events: events not in that table (messages, receipts …) are not part of the lifecycle.
        translate = LIFECYCLE_EVENTS.get(type(ev))
        if translate is not None:
            await self._step(await translate(ev, self._lc, EventContext(self.clock, self._elapsed,
                                                                        self.options.qrcode_color)))
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
