"""All instances of this installation (`DATABASE_CONNECTION_CLIENT_NAME`): create, load, resume, delete."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from evolink.clock import Clock
from evolink.gateway import names, observe
from evolink.gateway.cluster import ClusterNode
from evolink.gateway.messages import MessageHub
from evolink.gateway.observe import LinkGuard, allow_all
from evolink.gateway.ports import EngineFactory
from evolink.gateway.proxy import ProxySpec, resolve_proxy
from evolink.gateway.runtime import InstanceRuntime, NotConnected, RuntimeOptions
from evolink.gateway.webhooks import EventPublisher, WebhookTarget
from evolink.store import Store
from evolink.store.models import Instance
from evolink.wa.events import ConnectionState, EngineEvent

log = logging.getLogger("evolink.gateway")


@dataclass(slots=True)
class CreateRequest:
    name: str
    token: str | None = None
    integration: str = "WHATSAPP-BAILEYS"
    number: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    webhook: dict[str, Any] | None = None  # Webhook column values
    # Stores the instance's other per-instance settings (event transports) before INSTANCE_CREATE is
    # published, so those transports get it too (Evolution's order); called with the new instance id.
    prepare: Callable[[str], Awaitable[None]] | None = None


class InstanceManager:
    def __init__(self, *, store: Store, publisher: EventPublisher, clock: Clock, engine_factory: EngineFactory,
                 options: RuntimeOptions, client_name: str, link_guard: LinkGuard = allow_all,
                 del_instance_after: float | None = None, proxy_fallback: ProxySpec | None = None,
                 messages: MessageHub | None = None, cluster: ClusterNode | None = None) -> None:
        self.store = store
        self.publisher = publisher
        self.clock = clock
        self.engine_factory = engine_factory
        self.options = options
        self.client_name = client_name
        self.link_guard = link_guard
        self.del_instance_after = del_instance_after  # seconds (DEL_INSTANCE minutes x 60)
        self.proxy_fallback = proxy_fallback  # PROXY_* for instances without an enabled proxy of their own
        self.runtimes: dict[str, InstanceRuntime] = {}
        self.messages = messages  # messaging pipeline shared by every instance (observers live here)
        # Cluster mode (docs/cluster.md): instances are resumed by lease takeover, not all by `load`.
        self.cluster = cluster
        if cluster is not None:
            cluster.bind(self._take_over, self._lease_lost, self._movable)
        self.event_hooks: list[Callable[[InstanceRuntime, EngineEvent], Awaitable[None]]] = []  # every runtime
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _runtime(self, row: Instance) -> InstanceRuntime:
        rt = self.runtimes.get(row.name)
        if rt is None or rt.instance_id != row.id:
            rt = InstanceRuntime(name=row.name, instance_id=row.id, token=row.token, store=self.store,
                                 publisher=self.publisher, clock=self.clock, engine_factory=self.engine_factory,
                                 options=self.options, link_guard=self.link_guard,
                                 wuid=row.owner_jid, profile_name=row.profile_name,
                                 on_state=lambda _rt: self.publish_states(),
                                 proxy_lookup=self._proxy_lookup(row.id), messages=self.messages,
                                 fence=self.cluster.fence(row.id) if self.cluster is not None else None)
            rt.event_hooks = self.event_hooks  # shared list: hooks added later apply to every runtime
            self.runtimes[row.name] = rt
            self.publish_states()
        return rt

    def _proxy_lookup(self, instance_id: str) -> Callable[[], Awaitable[ProxySpec | None]]:
        async def lookup() -> ProxySpec | None:
            return await resolve_proxy(self.store, instance_id, self.proxy_fallback)

        return lookup

    def running(self, name: str) -> InstanceRuntime | None:
        """The runtime whose state is authoritative here: any loaded one on a single node; in cluster
        mode only one this node holds the lease of (another node's instance may have a stale, closed
        runtime here, e.g. created here and connected elsewhere, or handed over by rebalancing)."""
        rt = self.runtimes.get(name)
        if rt is None or self.cluster is None:
            return rt
        return rt if rt.instance_id in self.cluster.book.tokens else None

    def states(self) -> dict[str, str]:
        """{instance name: open|connecting|close} of the instances this process runs (see `running`)."""
        return {name: rt.state.value for name in self.runtimes if (rt := self.running(name)) is not None}

    def publish_states(self) -> None:
        observe.publish_instance_states(self.states())

    async def load(self) -> int:
        """Load this installation's instances; reconnect those that were open or connecting.

        In cluster mode nothing is resumed here: the lease keeper takes over this node's fair share."""
        if self.cluster is not None:
            self.cluster.start()
            return 0
        resumed = 0
        for row in await self.store.list_instances(client_name=self.client_name):
            rt = self._runtime(row)
            if row.connection_status in (ConnectionState.OPEN, ConnectionState.CONNECTING):
                try:
                    await rt.resume()
                    resumed += 1
                except Exception:
                    log.exception("could not resume instance", extra={"instance": row.name})
        return resumed

    async def get(self, name: str) -> InstanceRuntime | None:
        rt = self.runtimes.get(name)
        if rt is not None:
            return rt
        row = await self.store.get_instance(name)
        return None if row is None else self._runtime(row)

    async def create(self, req: CreateRequest) -> tuple[Instance, InstanceRuntime]:
        instance_id = str(uuid.uuid4())
        token = req.token if req.token else str(uuid.uuid4()).upper()
        row = await self.store.create_instance(instance_id=instance_id, name=req.name, token=token,
                                               integration=req.integration, number=req.number,
                                               client_name=self.client_name, settings=req.settings,
                                               webhook=req.webhook)
        if req.prepare is not None:
            await req.prepare(row.id)
        rt = self._runtime(row)
        await self.publisher.publish(rt.ref, names.INSTANCE_CREATE, {"instanceName": row.name, "instanceId": row.id})
        self._arm_del_timer(row.name, row.id)
        return row, rt

    async def delete(self, name: str) -> None:
        rt = await self.get(name)
        if rt is None:
            return
        if rt.state is not ConnectionState.CLOSE:
            try:
                await rt.logout()
            except NotConnected:
                pass
            except Exception:  # Evolution 2.3.x aborts here with "[object Object]"; we carry on
                log.exception("logout before delete failed; deleting anyway", extra={"instance": name})
        await rt.shutdown()
        # Its deliveries end here: what is still queued (perhaps behind a dead or poisoned destination)
        # goes; only the farewell events below are sent, under the usual bounded retry policy.
        dropped = await self.store.drop_pending_outbox(rt.name)
        if dropped:
            log.info("dropped pending webhook events of a deleted instance",
                     extra={"instance": name, "events": dropped})
        ref = rt.ref
        await self.publisher.publish(ref, names.INSTANCE_DELETE, {"instanceName": rt.name, "instanceId": rt.instance_id})
        await self.publisher.publish(ref, names.REMOVE_INSTANCE, None)
        # Synchronous cleanup (Evolution does it after replying): the name is reusable at once.
        await self.store.delete_instance(rt.instance_id)
        self.runtimes.pop(name, None)
        self.publish_states()
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def announce_clock_step(self, data: dict[str, Any]) -> asyncio.Task[None]:
        """`CLOCK_STEP` to every loaded instance (delivered only where subscribed, see webhooks)."""
        refs = [rt.ref for rt in self.runtimes.values()]

        async def publish() -> None:
            for ref in refs:
                try:
                    await self.publisher.publish(ref, names.CLOCK_STEP, data)
                except Exception:
                    log.exception("could not store the clock.step event", extra={"instance": ref.name})

        task = asyncio.get_running_loop().create_task(publish(), name="clock-step-event")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def shutdown(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self.cluster is not None:  # close the sockets, then hand the leases over at once
            await self.cluster.stop(self._shutdown_runtimes)
        else:
            await self._shutdown_runtimes()

    async def _shutdown_runtimes(self) -> None:
        await asyncio.gather(*(rt.shutdown() for rt in list(self.runtimes.values())), return_exceptions=True)

    # --- cluster hooks ---------------------------------------------------------------------------

    def _by_id(self, instance_id: str) -> InstanceRuntime | None:
        return next((rt for rt in self.runtimes.values() if rt.instance_id == instance_id), None)

    def _movable(self, instance_id: str) -> bool:
        """Rebalancing moves only open instances: a link in progress (QR, code) would be lost."""
        rt = self._by_id(instance_id)
        return rt is not None and rt.state is ConnectionState.OPEN

    async def _take_over(self, instance_id: str) -> None:
        """This node now holds the lease: log the instance in from its stored creds (no new link)."""
        rows = await self.store.list_instances(instance_id=instance_id)
        if not rows:
            return
        old = self._by_id(instance_id)
        if old is not None and old.lifecycle.stopping:
            self.runtimes.pop(old.name, None)  # a runtime closed by an earlier lease loss is not reused
        await self._runtime(rows[0]).resume()

    async def _lease_lost(self, instance_id: str) -> None:
        """Another node owns the instance: close its socket now and forget the runtime."""
        rt = self._by_id(instance_id)
        if rt is None:
            return
        await rt.lease_lost()
        if self.runtimes.get(rt.name) is rt:
            del self.runtimes[rt.name]
        self.publish_states()

    def _arm_del_timer(self, name: str, instance_id: str) -> None:
        if not self.del_instance_after:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(name, None)
            rt = self.runtimes.get(name)
            if rt is not None and rt.instance_id == instance_id and rt.state is not ConnectionState.OPEN:
                task = loop.create_task(self.delete(name))
                task.add_done_callback(_log_failure)

        self._timers[name] = loop.call_later(self.del_instance_after, fire)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("DEL_INSTANCE delete failed", exc_info=task.exception())


async def stored_webhook(store: Store, instance_id: str) -> WebhookTarget | None:
    row = await store.get_webhook(instance_id)
    if row is None:
        return None
    return WebhookTarget(url=row.url, by_events=row.webhook_by_events, headers=row.headers, events=row.events,
                         enabled=row.enabled)
