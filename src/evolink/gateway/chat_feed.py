"""Feeds ``ChatBook`` with every message record the gateway publishes.

The publisher calls its in-process listeners synchronously for every event before it is stored in
the outbox; this one keeps the ``messages.upsert`` and ``send.message`` records (Evolution's message
record, whatever code built it) and the ``messages.update`` bodies, and hands them, in publish order,
to one background task that updates chats and contacts and publishes their events. So chats follow messages without the message
code knowing about them.

Chats are derived data: a record still queued when the process is killed is not replayed (the next
message of the chat brings its chat up to date again), and past ``MAX_QUEUED`` waiting records new
ones are dropped with a warning instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from evolink.gateway.chats import ChatBook
from evolink.gateway.webhooks import InstanceRef

log = logging.getLogger("evolink.gateway.chat_feed")

MESSAGE_EVENTS = frozenset({"messages.upsert", "send.message"})
UPDATE_EVENT = "messages.update"
MAX_QUEUED = 10_000


class ChatFeed:
    def __init__(self, book: ChatBook) -> None:
        self.book = book
        self._queue: asyncio.Queue[tuple[InstanceRef, str, dict[str, Any]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def listener(self, ref: InstanceRef, event: str, data: Any, _stamp: str) -> None:
        if (event not in MESSAGE_EVENTS and event != UPDATE_EVENT) or not isinstance(data, dict):
            return
        if self._queue.qsize() >= MAX_QUEUED:
            self.dropped += 1
            log.warning("chat bookkeeping queue full: a message record was not applied to its chat",
                        extra={"instance": ref.name})
            return
        self._queue.put_nowait((ref, event, data))

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="chat-feed")

    async def drain(self, within: float = 5.0) -> None:
        """Wait (bounded) until every record queued so far is applied."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), within)

    async def stop(self) -> None:
        await self.drain()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            ref, event, data = await self._queue.get()
            try:
                if event == UPDATE_EVENT:
                    await self.book.observe_update(ref, data)
                else:
                    await self.book.observe(ref, data)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("could not update the chat of a message", extra={"instance": ref.name})
            finally:
                self._queue.task_done()
