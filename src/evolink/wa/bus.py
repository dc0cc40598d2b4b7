"""Fan-out of engine events to async iterators (bounded queues) and callbacks.

A slow consumer never blocks the engine: when its queue is full the *oldest* event is dropped and
counted (a stale QR is worthless next to a fresh one), with a warning in the log.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from evolink.wa.events import EngineEvent

log = logging.getLogger("evolink.wa.events")

Callback = Callable[[EngineEvent], Awaitable[None] | None]
_END = object()


class EventBus:
    def __init__(self, queue_size: int = 256) -> None:
        self._queue_size = queue_size
        self._queues: set[asyncio.Queue[Any]] = set()
        self._callbacks: list[Callback] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event (sync or async); returns an unsubscribe function."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    async def stream(self) -> AsyncIterator[EngineEvent]:
        """Events from now on, until ``end_streams`` (the engine calls it on ``close()``)."""
        queue: asyncio.Queue[Any] = asyncio.Queue(self._queue_size)
        self._queues.add(queue)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                yield item
        finally:
            self._queues.discard(queue)

    def emit(self, event: EngineEvent) -> None:
        for queue in self._queues:
            self._put(queue, event)
        for callback in list(self._callbacks):
            try:
                result = callback(event)
            except Exception:
                log.exception("event callback failed", extra={"event": type(event).__name__})
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._callback_done)

    def _put(self, queue: asyncio.Queue[Any], item: Any) -> None:
        while True:
            try:
                queue.put_nowait(item)
                return
            except asyncio.QueueFull:
                dropped = queue.get_nowait()
                self.dropped += 1
                log.warning("event queue full, dropped oldest event %s", type(dropped).__name__)

    def _callback_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async event callback failed", exc_info=task.exception())

    def end_streams(self) -> None:
        """End every current iterator (after the events already queued); callbacks stay subscribed."""
        for queue in self._queues:
            self._put(queue, _END)
        self._queues.clear()
