"""Events out: Evolution's webhook envelope, written to a durable outbox, delivered in order per lane.

`EventPublisher.publish` decides the destinations (instance webhook and/or global webhook), builds
the envelope with `date_time` from the corrected clock, and stores one outbox row per destination.
`DeliveryWorker` posts the rows with httpx. A lane is (instance, destination): the oldest pending
row of a lane blocks the younger ones, so a receiver sees each instance's events in order, and a
dead receiver does not hold up anyone else. Rows survive restarts; retries follow Evolution's
defaults (10 attempts, 5 s doubling to 300 s, jitter 0.2, no retry on 400/401/403/404/422).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from evolink.clock import Clock, SystemClock
from evolink.clock.base import iso_utc
from evolink.gateway.event_transports import Transport, TransportRouter, message_id, parse_url
from evolink.gateway.jwt import webhook_jwt
from evolink.gateway.names import event_key, event_suffix
from evolink.store import OutboxItem, Store
from evolink.store.models import OutboxEvent

if TYPE_CHECKING:
    from evolink.gateway.senders import EventSender

log = logging.getLogger("evolink.gateway.webhooks")

TRANSPORT_SCHEMES = frozenset(t.value for t in Transport)

# Events that exist only per instance (Evolution has no global env flag for them).
_PER_INSTANCE_ONLY = {"STATUS_INSTANCE", "REMOVE_INSTANCE", "LOGOUT_INSTANCE"}
# evolink extension events: an instance webhook gets them only when it lists them (an empty list,
# "all events" in Evolution, does not include them), the global webhook only with its env flag.
OPT_IN_EVENTS = {"CLOCK_STEP"}
IDLE_SLEEP = 30.0
EVENT_ID_HEADER = "X-Evolink-Event-Id"  # evolink addition: one id per event and destination
PRUNE_EVERY = 600.0  # seconds between clean-ups of finished rows (at most; half the shortest retention if less)
DELIVERED_RETENTION = 3_600.0  # delivered rows are kept an hour for inspection (EVOLINK_OUTBOX_DELIVERED_…)
FAILED_RETENTION = 604_800.0  # failed rows (dead letters) a week (EVOLINK_OUTBOX_FAILED_RETENTION_SECONDS)
BOOKKEEPING_BACKOFF = 1.0  # seconds a lane rests after its outcome could not be stored


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 10
    initial_delay: float = 5.0
    exponential: bool = True
    max_delay: float = 300.0
    jitter: float = 0.2
    non_retryable: frozenset[int] = frozenset({400, 401, 403, 404, 422})

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Wait after the n-th failed attempt (n >= 1): min(initial·2^(n-1), max) ± jitter, never < initial."""
        base = self.initial_delay * (2 ** (failures - 1)) if self.exponential else self.initial_delay
        base = min(base, self.max_delay)
        jittered = base * (1 + self.jitter * (2 * rand() - 1))
        return max(self.initial_delay, jittered)


@dataclass(slots=True)
class WebhookTarget:
    url: str
    by_events: bool
    headers: dict[str, Any] | None
    events: list[str] | None  # keys; empty/None = all
    enabled: bool = True


@dataclass(slots=True)
class GlobalWebhook:
    enabled: bool = False
    url: str | None = None
    by_events: bool = False
    events: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InstanceRef:
    name: str
    instance_id: str
    token: str
    wuid: str | None = None


def _valid_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("http://", "https://"))


def _lane(instance: str, destination: str) -> str:
    """Lane key = instance + destination base URL (hashed to bound its length): a dead old URL cannot
    hold up events for the new one, while one receiver still sees an instance's events in order."""
    return f"{instance}|{hashlib.sha256(destination.encode()).hexdigest()[:16]}"


def _join(url: str, suffix: str) -> str:
    return url.rstrip("/") + "/" + suffix


def _global_destination(global_url: str, suffix: str, webhook: WebhookTarget | None) -> str:
    """The `destination` field of a global webhook body, as Evolution 2.3.7 fills it (one body for
    both webhooks): the instance's own webhook URL when it has one (enabled or not), else the global
    URL with the `/<kebab-event>` suffix, whether or not `WEBHOOK_GLOBAL_WEBHOOK_BY_EVENTS` is on.
    Only the body says so: the POST goes to the global URL (suffixed only with by-events)."""
    if webhook is not None and webhook.url:
        return webhook.url
    return _join(global_url, suffix)


class EventPublisher:
    """Builds envelopes and enqueues them; never blocks on delivery."""

    def __init__(self, store: Store, clock: Clock, *, global_webhook: GlobalWebhook, server_url: str | None,
                 expose_apikey: bool, lookup_webhook: Callable[[str], Any]) -> None:
        self._store = store
        self._clock = clock
        self._global = global_webhook
        self._server_url = server_url
        self._expose = expose_apikey
        self._lookup_webhook = lookup_webhook  # async (instance_id) -> WebhookTarget | None
        self.wake: asyncio.Event = asyncio.Event()
        # In-process listeners (the web manager's live stream): called for every event, before the
        # outbox, with (instance, event, data, date_time); they must not block and must not raise.
        self.listeners: list[Callable[[InstanceRef, str, Any, str], None]] = []
        # WebSocket / RabbitMQ / NATS (issue 14): their rows go to the same outbox, body = the
        # webhook body without `destination`, stamped with the same `date_time`.
        self.transports: TransportRouter | None = None

    def envelope(self, inst: InstanceRef, event: str, data: Any, destination: str,
                 date_time: str | None = None) -> dict[str, Any]:
        env: dict[str, Any] = {
            "event": event,
            "instance": inst.name,
            "data": data,
            "destination": destination,
            # True UTC from the corrected clock (Evolution emits local wall time with a `Z`).
            "date_time": date_time or iso_utc(self._clock.now()),
        }
        if inst.wuid:
            env["sender"] = inst.wuid
        if self._server_url:
            env["server_url"] = self._server_url
        env["apikey"] = inst.token if self._expose else None
        return env

    async def publish(self, inst: InstanceRef, event: str, data: Any,
                      webhook: WebhookTarget | None = None, *, use_stored: bool = True) -> int:
        """Enqueue `event` for every destination that wants it; returns the number of rows stored."""
        if self.listeners:
            stamp = iso_utc(self._clock.now())
            for listener in self.listeners:
                try:
                    listener(inst, event, data, stamp)
                except Exception:  # a live view must never break delivery
                    log.exception("event listener failed", extra={"event": event})
        key = event_key(event)
        suffix = event_suffix(event)
        stamp = iso_utc(self._clock.now())
        if webhook is None and use_stored:
            webhook = await self._lookup_webhook(inst.instance_id)
        items: list[OutboxItem] = []
        if webhook is not None and webhook.enabled and _valid_url(webhook.url):
            wanted = webhook.events or []
            if key in wanted or (not wanted and key not in OPT_IN_EVENTS):
                url = _join(webhook.url, suffix) if webhook.by_events else webhook.url
                items.append(OutboxItem(lane=_lane(inst.name, webhook.url), instance_name=inst.name, event=event,
                                        url=url, payload=self.envelope(inst, event, data, webhook.url, stamp),
                                        headers=dict(webhook.headers or {}) or None))
        g = self._global
        if g.enabled and _valid_url(g.url) and key not in _PER_INSTANCE_ONLY and g.events.get(key, False):
            assert g.url is not None
            url = _join(g.url, suffix) if g.by_events else g.url
            items.append(OutboxItem(lane=_lane(inst.name, g.url), instance_name=inst.name, event=event, url=url,
                                    payload=self.envelope(inst, event, data, _global_destination(g.url, suffix,
                                                                                                 webhook), stamp),
                                    headers=None))
        if self.transports is not None:
            body = self.envelope(inst, event, data, "", stamp)
            del body["destination"]
            items.extend(await self.transports.items(inst.name, inst.instance_id, event, key, body))
        if items:
            await self._store.enqueue(items)
            self.wake.set()
        return len(items)


def _request_headers(stored: dict[str, Any] | None, now: float) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in (stored or {}).items():
        if name.lower() == "jwt_key":
            if value:
                # iat/exp are checked by the receiver's clock: sign on corrected (true) time, not host time.
                headers["Authorization"] = f"Bearer {webhook_jwt(str(value), int(now))}"
            continue
        headers[str(name)] = str(value)
    return headers


class DeliveryWorker:
    """Delivers outbox rows: at most one in flight per lane, up to `concurrency` lanes at once."""

    def __init__(self, store: Store, policy: RetryPolicy, wake: asyncio.Event, *, timeout: float = 30.0,
                 concurrency: int = 32, client: httpx.AsyncClient | None = None,
                 retention: float = DELIVERED_RETENTION, failed_retention: float = FAILED_RETENTION,
                 clock: Clock | None = None, senders: Mapping[str, EventSender] | None = None,
                 claim_for: float | None = None) -> None:
        self._store = store
        # Non-HTTP transports by URL scheme (`rabbitmq:?…`); see gateway/event_transports.py.
        self.senders: dict[str, EventSender] = dict(senders or {})
        # Cluster mode: every node's worker reads the shared outbox; a row is claimed before delivery
        # (for `claim_for` seconds) so only one node sends it. None: single process, no claims.
        self._claim_for = claim_for
        self._clock: Clock = clock or SystemClock()
        self._retention = retention
        self._failed_retention = failed_retention
        self._prune_every = max(1.0, min(PRUNE_EVERY, retention / 2, failed_retention / 2))
        self._policy = policy
        self._wake = wake
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._own_client = client is None
        self._concurrency = concurrency
        self._inflight: set[str] = set()
        self._released: set[str] = set()  # lanes settled while `_pump` was reading (its rows may be stale)
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self.stats: Counter[str] = Counter()  # delivered / retry / failed / pruned rows, this process
        self.changed = asyncio.Event()

    def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="webhook-delivery")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._tasks:  # let requests already on the wire finish (fewer redeliveries after restart)
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_client:
            await self._client.aclose()

    async def _run(self) -> None:
        next_prune = time.monotonic()
        while not self._stopping:
            self._wake.clear()
            try:
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self._prune_every
                    now = datetime.now(UTC)
                    pruned = await self._store.prune_outbox(now - timedelta(seconds=self._retention),
                                                            now - timedelta(seconds=self._failed_retention))
                    if pruned:
                        self._settle("pruned", pruned)
                delay = await self._pump()
                delay = min(delay, max(0.0, next_prune - time.monotonic()))
            except Exception:
                log.exception("webhook outbox pump failed; retrying in 1 s")
                delay = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    async def _pump(self) -> float:
        """Start deliveries for due lane heads; return how long to sleep before looking again."""
        now = time.time()
        self._released.clear()
        for row in await self._store.due_heads(now, limit=self._concurrency * 4):
            if row.lane in self._released:
                continue  # read before its last outcome was stored (PostgreSQL): the wake re-reads it
            if row.lane in self._inflight or len(self._inflight) >= self._concurrency:
                continue
            if self._claim_for is not None and not await self._store.claim_outbox(
                    row.id, row.next_attempt_at, now + self._claim_for):
                continue  # another node is delivering it
            self._inflight.add(row.lane)
            task = asyncio.create_task(self._deliver(row))
            self._tasks.add(task)
            task.add_done_callback(self._done)
        if len(self._inflight) >= self._concurrency:
            return IDLE_SLEEP  # a finishing delivery wakes us
        next_due = await self._store.next_due_at(exclude_lanes=set(self._inflight))
        if next_due is None:
            return IDLE_SLEEP  # new events and finishing deliveries wake us
        # Capped so a stepped wall clock cannot strand a retry for long.
        return min(max(next_due - time.time(), 0.0), IDLE_SLEEP)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    def _settle(self, result: str, count: int = 1) -> None:
        self.stats[result] += count
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> None:
        """Wait (bounded) until `predicate()` holds after some delivery settled (tests, demo)."""
        async def loop() -> None:
            while not predicate():
                await self.changed.wait()

        await asyncio.wait_for(loop(), within)

    async def _deliver(self, row: OutboxEvent) -> None:
        rest = 0.0
        try:
            await self._attempt(row)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The outcome could not be stored (database trouble): the lane rests for a second rather
            # than handing the same due row straight back to the pump.
            log.exception("webhook delivery bookkeeping failed", extra={"lane": row.lane})
            rest = BOOKKEEPING_BACKOFF
        finally:
            if rest:
                asyncio.get_running_loop().call_later(rest, self._release, row.lane)
            else:
                self._release(row.lane)

    async def _attempt(self, row: OutboxEvent) -> None:
        scheme, address = parse_url(row.url)
        if scheme in TRANSPORT_SCHEMES:
            await self._attempt_transport(row, scheme, address)
            return
        attempts = row.attempts + 1
        status, error = await self._post(row)
        if status is not None and 200 <= status < 300:
            await self._store.mark_outbox(row.id, status="delivered", attempts=attempts)
            self._settle("delivered")
            return
        if status is not None and status in self._policy.non_retryable:
            log.warning("webhook refused, not retried", extra={"event": row.event, "status": status,
                                                                 "lane": row.lane})
            await self._store.mark_outbox(row.id, status="failed", attempts=attempts, error=error)
            self._settle("failed")
            return
        if attempts >= self._policy.max_attempts:
            log.error("webhook gave up after %d attempts", attempts, extra={"event": row.event, "lane": row.lane})
            await self._store.mark_outbox(row.id, status="failed", attempts=attempts, error=error)
            self._settle("failed")
            return
        next_at = time.time() + self._policy.delay(attempts)
        await self._store.mark_outbox(row.id, status="pending", attempts=attempts, next_attempt_at=next_at,
                                      error=error)
        self._settle("retry")

    async def _attempt_transport(self, row: OutboxEvent, scheme: str, address: dict[str, str]) -> None:
        """One publish through a broker/socket.io sender. Unreachable brokers are retried without limit
        (nothing is lost while one is down); refusals follow the sender's policy."""
        attempts = row.attempts + 1
        sender = self.senders.get(scheme)
        if sender is None:  # queued while the transport was on; it has been switched off since
            await self._store.mark_outbox(row.id, status="failed", attempts=attempts,
                                          error=f"{scheme} events are disabled")
            self._settle("failed")
            return
        result = await sender.send(address, row.event, row.payload, message_id(row.lane, row.id, row.created_at))
        if result.ok:
            await self._store.mark_outbox(row.id, status="delivered", attempts=attempts)
            self._settle("delivered")
            return
        if not result.transient and attempts >= sender.policy.max_attempts:
            log.error("%s publish gave up after %d attempts", scheme, attempts,
                      extra={"event": row.event, "lane": row.lane, "reason": result.error})
            await self._store.mark_outbox(row.id, status="failed", attempts=attempts, error=result.error)
            self._settle("failed")
            return
        next_at = time.time() + sender.policy.delay(min(attempts, 32))
        await self._store.mark_outbox(row.id, status="pending", attempts=attempts, next_attempt_at=next_at,
                                      error=result.error)
        self._settle("retry")

    def _release(self, lane: str) -> None:
        self._inflight.discard(lane)
        self._released.add(lane)
        self._wake.set()

    async def _post(self, row: OutboxEvent) -> tuple[int | None, str | None]:
        """One attempt. Every failure is an outcome (status None + a one-line reason), not an exception:
        httpx raises `UnicodeEncodeError` for a non-ASCII header, `ExceptionGroup` for a port past 65535,
        `InvalidURL`… and an exception that escaped here used to leave the row due again at once (a hot
        loop). Rows stored before `webhook_rules` existed can still carry such settings."""
        try:
            headers = _request_headers(row.headers, self._clock.time())
            # the outbox row id: the same on every retry and from every node (at-least-once dedup key)
            headers[EVENT_ID_HEADER] = str(row.id)
            resp = await self._client.post(row.url, json=row.payload, headers=headers)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, httpx.HTTPError):
                log.warning("webhook attempt failed before any response", extra={"lane": row.lane,
                                                                                 "reason": reason[:200]})
            return None, reason[:1000]
        return resp.status_code, None if resp.is_success else f"HTTP {resp.status_code}"
