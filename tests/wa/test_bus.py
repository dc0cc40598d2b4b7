from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from evolink.wa.bus import EventBus
from evolink.wa.events import ConnectingEvent, EngineEvent, QrEvent


async def test_iterators_and_callbacks_receive_events_in_order() -> None:
    bus = EventBus(8)
    seen_sync: list[EngineEvent] = []
    seen_async: list[EngineEvent] = []

    async def acb(ev: EngineEvent) -> None:
        seen_async.append(ev)

    bus.subscribe(seen_sync.append)
    unsub = bus.subscribe(acb)
    received: list[EngineEvent] = []

    async def consume() -> None:
        async for ev in bus.stream():
            received.append(ev)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)  # let the consumer register its queue
    for i in range(3):
        bus.emit(ConnectingEvent(i))
    bus.end_streams()
    await asyncio.wait_for(task, 1)
    assert received == [ConnectingEvent(0), ConnectingEvent(1), ConnectingEvent(2)]
    assert seen_sync == received
    await asyncio.sleep(0)
    assert seen_async == received
    unsub()


async def test_full_queue_drops_oldest_and_counts() -> None:
    bus = EventBus(2)
    it = bus.stream().__aiter__()
    first = asyncio.ensure_future(it.__anext__())
    await asyncio.sleep(0)
    bus.emit(ConnectingEvent(0))
    assert await asyncio.wait_for(first, 1) == ConnectingEvent(0)
    now = datetime.now(UTC)
    for i in range(5):
        bus.emit(QrEvent(f"q{i}", i, 5, now))
    assert bus.dropped == 3
    assert (await it.__anext__()).index == 3  # type: ignore[union-attr]
    assert (await it.__anext__()).index == 4  # type: ignore[union-attr]


async def test_failing_callback_does_not_break_others() -> None:
    bus = EventBus()
    got: list[EngineEvent] = []

    def boom(ev: EngineEvent) -> None:
        raise RuntimeError("consumer bug")

    bus.subscribe(boom)
    bus.subscribe(got.append)
    bus.emit(ConnectingEvent(1))
    assert got == [ConnectingEvent(1)]
