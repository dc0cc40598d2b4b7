"""The sandbox's own notion of time: host time plus an adjustable offset.

Tests shift it (``PUT /admin/clock``) to make "upstream" disagree with the host, the way a real
server would when the host clock is wrong. Everything the sandbox emits or checks against time
(``t`` attributes, certificate windows, pairing-code TTL, QR ref windows, HTTP ``Date``) uses it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from email.utils import formatdate


class SandboxClock:
    """Implements the ``evolink.clock.Clock`` protocol; thread-safe offset updates."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._offset = float(offset_seconds)

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset

    def set_offset(self, offset_seconds: float) -> None:
        with self._lock:
            self._offset = float(offset_seconds)

    def time(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def unix(self) -> int:
        """Whole unix seconds, as the server writes them into ``t`` attributes."""
        return int(self.time())

    def http_date(self) -> str:
        """RFC 9110 IMF-fixdate for the ``Date`` header."""
        return formatdate(self.time(), usegmt=True)
