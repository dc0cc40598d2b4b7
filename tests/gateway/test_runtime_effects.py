"""gateway/runtime_effects.py: the effect executors on fakes (no database, no engine)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from evolink.gateway import lifecycle as lc_
from evolink.gateway.lifecycle import Lifecycle, LinkMode
from evolink.gateway.ports import EngineRequest
from evolink.gateway.runtime_effects import EffectRunner, LeaseHeld, RuntimeHooks
from evolink.gateway.webhooks import InstanceRef
from evolink.wa.events import ConnectionState, EngineEvent

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


class Fence:
    def __init__(self, holds: bool) -> None:
        self.held = holds
        self.writes: list[dict[str, Any]] = []

    def holds(self) -> bool:
        return self.held

    @property
    def token(self) -> int | None:
        return 1

    async def claim(self) -> bool:
        return self.held

    async def write(self, values: dict[str, Any]) -> bool:
        if self.held:
            self.writes.append(values)
        return self.held


class Engine:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.listener: Any = None

    async def start(self) -> None:
        self.calls.append("start")

    def subscribe(self, callback: Any) -> Any:
        self.listener = callback
        return lambda: self.calls.append("unsubscribe")

    async def logout(self) -> None:
        self.calls.append("logout")

    async def close(self) -> None:
        self.calls.append("close")


def runner(fence: Fence | None = None) -> tuple[EffectRunner, SimpleNamespace]:
    seen = SimpleNamespace(updates=[], published=[], queued=[], consumers=0, requests=[], engines=[])

    async def update_instance(_id: str, **values: Any) -> None:
        seen.updates.append(values)

    async def publish(ref: InstanceRef, event: str, data: Any) -> None:
        seen.published.append((ref.name, event, data))

    def factory(request: EngineRequest) -> Engine:
        seen.requests.append(request)
        engine = Engine()
        seen.engines.append(engine)
        return engine

    def start_consumer() -> None:
        seen.consumers += 1

    async def renew(_gen: int) -> None:
        return None

    def enqueue(gen: int, ev: EngineEvent) -> None:
        seen.queued.append((gen, ev))

    hooks = RuntimeHooks(lifecycle=lambda: Lifecycle(name="a", profile_name="Ana"),
                         ref=lambda: InstanceRef("a", "id-a", "tok", None), apply=lambda _ev: [],
                         enqueue=enqueue, start_consumer=start_consumer, renew=renew)
    store = SimpleNamespace(update_instance=update_instance)
    rn = EffectRunner(name="a", instance_id="id-a", store=store, publisher=SimpleNamespace(publish=publish),  # type: ignore[arg-type]
                      clock=SimpleNamespace(now=lambda: NOW), creds=SimpleNamespace(),  # type: ignore[arg-type]
                      engine_factory=factory, hooks=hooks, elapsed=lambda: 0.0, fence=fence)  # type: ignore[arg-type]
    return rn, seen


def test_persist_skips_an_unchanged_status_only() -> None:
    rn, seen = runner()

    async def go() -> None:
        await rn.execute(lc_.Persist({"connection_status": ConnectionState.OPEN}))
        await rn.execute(lc_.Persist({"connection_status": ConnectionState.OPEN}))  # same status: no write
        await rn.execute(lc_.Persist({"connection_status": ConnectionState.OPEN, "profile_name": "Ana"}))

    asyncio.run(go())
    assert seen.updates == [{"connection_status": "open"}, {"connection_status": "open", "profile_name": "Ana"}]


def test_fenced_runner_writes_and_emits_nothing_once_the_lease_is_gone() -> None:
    fence = Fence(holds=False)
    rn, seen = runner(fence)

    async def go() -> None:
        await rn.execute(lc_.Persist({"connection_status": ConnectionState.CLOSE}))
        await rn.execute(lc_.Emit("connection.update", {"state": "close"}))
        with pytest.raises(LeaseHeld):
            await rn.execute(lc_.StartEngine(LinkMode.QR))
        fence.held = True  # refused writes were not remembered: the same status is written now
        await rn.execute(lc_.Persist({"connection_status": ConnectionState.CLOSE}))
        await rn.execute(lc_.Emit("connection.update", {"state": "close"}))

    asyncio.run(go())
    assert seen.updates == [] and seen.requests == []
    assert fence.writes == [{"connection_status": "close"}]
    assert seen.published == [("a", "connection.update", {"state": "close"})]


def test_engine_slot_generations() -> None:
    rn, seen = runner()

    async def go() -> None:
        await rn.execute(lc_.StartEngine(LinkMode.QR))
        first = rn.engine
        assert first is seen.engines[0] and rn.gen == 1 and seen.consumers == 1
        assert seen.requests[0].push_name == "Ana" and seen.requests[0].mode is LinkMode.QR
        first.listener("ev")  # events are tagged with the generation that emitted them
        await rn.execute(lc_.StopEngine(logout=True))
        assert rn.engine is None and rn.gen == 2
        assert first.calls == ["start", "unsubscribe", "logout", "close"]
        await rn.execute(lc_.StopEngine(logout=False))  # nothing running: only the generation moves
        assert rn.gen == 3

    asyncio.run(go())
    assert seen.queued == [(1, "ev")]
