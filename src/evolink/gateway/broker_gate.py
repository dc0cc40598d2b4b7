"""One broker connection at a time, never a queue of lanes waiting on it, and one log line per outage.

The delivery worker runs many lanes at once; each may find the broker connection missing. The gate
lets one of them (re)connect; the others wait at most `wait` seconds for it and otherwise answer
"unreachable" (their lanes back off), so a broker that accepts TCP but never answers ties up one
worker slot, not all of them. After a failed connect, no new one is tried for `reconnect_gap`
seconds. The outage is logged once when it starts and once when it ends (the URI with its password
masked), not at every retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator


class ConnectGate:
    def __init__(self, name: str, shown_uri: str, log: logging.Logger, *, reconnect_gap: float = 0.5,
                 wait: float = 1.0) -> None:
        self.name = name
        self.shown = shown_uri
        self.lock = asyncio.Lock()
        self._log = log
        self._gap = reconnect_gap
        self._wait = wait
        self._retry_at = 0.0
        self._last_error = ""
        self._down = False

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        try:
            await asyncio.wait_for(self.lock.acquire(), self._wait)
        except TimeoutError:
            raise ConnectionError(f"{self.name} at {self.shown}: still connecting") from None
        try:
            yield
        finally:
            self.lock.release()

    def check(self) -> None:
        """Raise the last error while the previous connect failed less than `reconnect_gap` ago."""
        if time.monotonic() < self._retry_at:
            raise ConnectionError(self._last_error)

    def failed(self, exc: BaseException) -> ConnectionError:
        self._retry_at = time.monotonic() + self._gap
        self._last_error = f"{self.name} at {self.shown} unreachable: {type(exc).__name__}: {exc}"
        if not self._down:
            self._down = True
            self._log.warning("%s unreachable; events wait in the outbox", self.name,
                              extra={"uri": self.shown, "reason": str(exc)[:200]})
        return ConnectionError(self._last_error)

    def connected(self) -> None:
        self._log.info("%s connected", self.name, extra={"uri": self.shown, "after_outage": self._down})
        self._down = False
