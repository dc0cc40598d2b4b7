"""The effect executors of an instance's lifecycle: what `lifecycle.transition` asks for, done.

`gateway/runtime.py` applies lifecycle events and hands each returned effect to `EffectRunner.execute`,
in order. The runner owns the engine slot (the running engine, its subscription, its generation and
its pending code request) and does the I/O: start/stop the engine, request a pairing code, renew the
registration socket, clear creds, persist the instance row, emit events, record pairing attempts, log.
It receives what it needs from the runtime as explicit hooks (`RuntimeHooks`) instead of reaching
into it.

Caveats carried here:
- WhatsApp allows one socket per linked device (a second one gets the first closed with 440,
  "replaced"): the runner holds at most one engine, and bumps the generation on every start/stop so
  events a replaced engine still emits are dropped by the runtime's consumer.
- In cluster mode (`gateway/cluster.py`) every write and event goes through the fence: once another
  node owns the instance this one writes and announces nothing.
- Persist/emit/record failures are logged, never raised: the lifecycle has moved on already and a
  database hiccup must not leave the instance half-transitioned. Only `StartEngine` raises
  (`ProxyUnavailable`, `LeaseHeld`); the runtime turns that into `StartFailed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from evolink.clock import Clock
from evolink.gateway import lifecycle as lc_
from evolink.gateway.creds import SqlCredsStore
from evolink.gateway.lifecycle import Effect, Lifecycle
from evolink.gateway.message_store import SqlMessageStore
from evolink.gateway.observe import record_pairing_attempt
from evolink.gateway.ports import EngineFactory, EnginePort, EngineRequest
from evolink.gateway.proxy import ProxySpec, ProxyUnavailable
from evolink.gateway.webhooks import EventPublisher, InstanceRef
from evolink.store import Store
from evolink.wa.events import EngineEvent, PairingCodeEvent

if TYPE_CHECKING:
    from evolink.gateway.messages import InstanceMessages

log = logging.getLogger("evolink.gateway.instance")

__all__ = ["EffectRunner", "InstanceFence", "LeaseHeld", "RuntimeHooks", "pairing_code"]


class LeaseHeld(Exception):
    """Cluster mode: another node holds this instance's lease; this node must not connect it."""


class InstanceFence(Protocol):
    """Cluster mode (`gateway/cluster.py`): may this node act for the instance?"""

    def holds(self) -> bool: ...

    @property
    def token(self) -> int | None: ...

    async def claim(self) -> bool: ...

    async def write(self, values: dict[str, Any]) -> bool: ...


@dataclass(frozen=True, slots=True)
class RuntimeHooks:
    """What the runner needs from the runtime that owns it."""

    lifecycle: Callable[[], Lifecycle]  # the current record (read-only here)
    ref: Callable[[], InstanceRef]  # who the emitted events are about
    apply: Callable[[lc_.Event], list[Effect]]  # apply an event now (its effects are not run)
    enqueue: Callable[[int, EngineEvent], None]  # the ordered engine-event queue, tagged with a generation
    start_consumer: Callable[[], None]  # make sure the queue is being consumed
    renew: Callable[[int], Awaitable[None]]  # renew the registration socket of that generation


def plain(value: Any) -> Any:
    """A StrEnum as its string (for the database and log fields)."""
    return value.value if isinstance(value, StrEnum) else value


def pairing_code(ev: PairingCodeEvent, clock: Clock, elapsed: Callable[[], float]) -> lc_.PairingCode:
    """The code with its life measured on the elapsed clock from now (immune to clock steps)."""
    now, at = clock.now(), elapsed()
    return lc_.PairingCode(ev.code, ev.phone, ev.issued_at, ev.expires_at,
                           issued_elapsed=at - max(0.0, (now - ev.issued_at).total_seconds()),
                           deadline_elapsed=at + (ev.expires_at - now).total_seconds())


def server_time(clock: Clock, system_now: datetime) -> datetime | None:
    """The WhatsApp server's time now, from the clock's freshest upstream sample (None if unknown)."""
    upstream = getattr(clock, "upstream", None)
    if not callable(upstream):
        return None
    samples = list(upstream().values())
    if not samples:
        return None
    best = max(samples, key=lambda s: s.observed_at)
    return system_now + timedelta(seconds=best.offset)


class EffectRunner:
    """Carries out lifecycle effects for one instance and owns its engine slot.

    Not thread-safe and not re-entrant by design: the runtime runs effects under its lock (or, for
    shutdown/lease loss, after marking the record as stopping so nothing new starts)."""

    def __init__(self, *, name: str, instance_id: str, store: Store, publisher: EventPublisher, clock: Clock,
                 creds: SqlCredsStore, engine_factory: EngineFactory, hooks: RuntimeHooks,
                 elapsed: Callable[[], float], fence: InstanceFence | None = None,
                 proxy_lookup: Callable[[], Awaitable[ProxySpec | None]] | None = None,
                 messages: InstanceMessages | None = None) -> None:
        self.name = name
        self.instance_id = instance_id
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.creds = creds
        self.fence = fence
        self._factory = engine_factory
        self._hooks = hooks
        self._elapsed = elapsed
        self._proxy_lookup = proxy_lookup
        self._messages = messages
        self.engine: EnginePort | None = None
        self.gen = 0  # engine generation: events of a replaced engine are ignored
        self.proxy_shown: str | None = None  # redacted URL of the proxy the current engine uses
        self._unsubscribe: Callable[[], None] | None = None
        self._code_task: asyncio.Task[None] | None = None
        self._persisted_status: str | None = None
        self._effects: dict[type, Callable[[Any], Awaitable[None]]] = {
            lc_.StartEngine: self._start_engine, lc_.StopEngine: self._stop_engine,
            lc_.RequestCode: self._request_code, lc_.RenewRegistration: self._renew,
            lc_.ClearCreds: self._clear_creds, lc_.Persist: self._persist, lc_.Emit: self._emit,
            lc_.RecordAttempt: self._record_attempt, lc_.FinishAttempts: self._finish_attempts,
            lc_.Log: self._log,
        }

    async def execute(self, effect: Effect) -> None:
        """Carry out one effect (not `Reply`, which the runtime answers itself). Raises only from
        `StartEngine`: `ProxyUnavailable` or `LeaseHeld`."""
        await self._effects[type(effect)](effect)

    async def _start_engine(self, effect: lc_.StartEngine) -> None:
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
        self.gen += 1
        gen, enqueue = self.gen, self._hooks.enqueue
        msg_store = (SqlMessageStore(self.store.db, self.store.cipher, self.instance_id,
                                     on_incoming=self._messages.row_hook) if self._messages is not None else None)
        engine = self._factory(EngineRequest(self.name, self.instance_id, self.creds, effect.mode, self.clock,
                                             proxy=spec.url() if spec is not None else None,
                                             message_store=msg_store,
                                             push_name=self._hooks.lifecycle().profile_name))
        self.engine = engine
        self._unsubscribe = engine.subscribe(lambda ev: enqueue(gen, ev))
        self._hooks.start_consumer()
        await engine.start()

    async def _stop_engine(self, effect: lc_.StopEngine) -> None:
        engine, self.engine = self.engine, None
        self.gen += 1  # anything the old engine still emits is ignored
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

    async def _request_code(self, effect: lc_.RequestCode) -> None:
        gen, phone, engine = self.gen, effect.phone, self.engine
        if engine is None:
            return
        hooks = self._hooks

        async def request() -> None:
            try:
                ev = await engine.request_pairing_code(phone)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if gen == self.gen:
                    hooks.apply(lc_.CodeFailed(str(exc)))
                return
            if gen == self.gen:
                hooks.apply(lc_.CodeConfirmed(pairing_code(ev, self.clock, self._elapsed)))
                hooks.enqueue(gen, ev)  # announce through the ordered event path

        self._code_task = asyncio.create_task(request(), name=f"pairing-code-{self.name}")

    async def _renew(self, _effect: lc_.RenewRegistration) -> None:
        await self._hooks.renew(self.gen)

    async def _clear_creds(self, effect: lc_.ClearCreds) -> None:
        with contextlib.suppress(Exception):  # the engine wipes them too on logout
            if not effect.only_unregistered or not await self.creds.has_registered():
                await self.creds.clear()

    async def _emit(self, effect: lc_.Emit) -> None:
        if self.fence is not None and not self.fence.holds():
            log.info("event dropped: lease not held", extra={"instance": self.name, "event": effect.event})
            return
        try:
            await self.publisher.publish(self._hooks.ref(), effect.event, effect.data)
        except Exception:
            log.exception("could not store event %s", effect.event, extra={"instance": self.name})

    async def _persist(self, effect: lc_.Persist) -> None:
        values = {k: plain(v) for k, v in effect.values.items()}
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

    async def _log(self, effect: lc_.Log) -> None:
        log.info(effect.message, extra={"instance": self.name, **{k: plain(v) for k, v in effect.fields.items()}})

    async def _record_attempt(self, effect: lc_.RecordAttempt) -> None:
        system_now = datetime.now(UTC)
        try:
            await self.store.add_pairing_attempt(
                instance_id=self.instance_id, method=str(plain(effect.method)), code=effect.code,
                issued_at_system=system_now, issued_at_corrected=self.clock.now(),
                issued_at_server=server_time(self.clock, system_now), expires_at=effect.expires_at,
                outcome=effect.outcome)
        except Exception:
            log.exception("could not record pairing attempt", extra={"instance": self.name,
                                                                     "outcome": effect.outcome})

    async def _finish_attempts(self, effect: lc_.FinishAttempts) -> None:
        try:
            rows = await self.store.finish_pairing_attempts(self.instance_id, effect.outcome, self.clock.now())
        except Exception:
            log.exception("could not close pairing attempts", extra={"instance": self.name})
            return
        for row in rows:
            record_pairing_attempt(row.method, effect.outcome, row.duration_seconds)
