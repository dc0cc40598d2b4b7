"""Per-instance send pacing: one send on the wire at a time, at least ``min_gap`` seconds apart.

Operators get banned for bursts, so ``EVOLINK_SEND_MIN_GAP_MS`` (default 0 = off) spaces the sends
of one instance; other instances are never held up (each has its own queue). Waiters are served in
arrival order (``asyncio.Lock`` is FIFO). The gap is measured on the monotonic loop clock, so a wall
clock step neither bunches nor stalls sends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class SendQueue:
    def __init__(self, min_gap: float = 0.0) -> None:
        if min_gap < 0:
            raise ValueError("min_gap must be >= 0")
        self.min_gap = min_gap
        self._lock = asyncio.Lock()
        self._last: float | None = None
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold the instance's send slot; the body runs no sooner than ``min_gap`` after the last one."""
        self.waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self.waiting -= 1
        try:
            loop = asyncio.get_running_loop()
            if self._last is not None and self.min_gap > 0:
                wait = self._last + self.min_gap - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # pacing itself, not synchronisation
            try:
                yield
            finally:
                self._last = loop.time()
        finally:
            self._lock.release()
