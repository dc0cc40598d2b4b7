"""The clock interface the rest of evolink depends on.

``Clock.now()`` is aware UTC. ``CorrectedClock`` applies the best known offset (host -> true time);
the engine feeds it the server's ``t`` from ``success``/``pair-success`` through
``report_upstream``. The offset *estimation* (NTP, HTTP Date, verdicts) lives in sibling modules
and sets the offset through ``set_offset``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, overload


@overload
def iso_utc(value: datetime) -> str: ...
@overload
def iso_utc(value: None) -> None: ...
def iso_utc(value: datetime | None) -> str | None:
    """JavaScript's ``Date.toISOString()`` form (``2024-05-01T12:00:00.123Z``), as Evolution emits times."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _elapsed_clock() -> Callable[[], float]:
    boottime = getattr(time, "CLOCK_BOOTTIME", None)
    if boottime is None:
        return time.monotonic
    try:
        time.clock_gettime(boottime)
    except OSError:  # a kernel or sandbox without it
        return time.monotonic
    return functools.partial(time.clock_gettime, boottime)


elapsed: Callable[[], float] = _elapsed_clock()
"""Seconds on a clock that is never stepped and keeps counting while the system is suspended
(``CLOCK_BOOTTIME`` on Linux, ``time.monotonic`` elsewhere). Use it to measure real durations: a
pairing code's remaining life, the gap between two step-detector ticks. ``CLOCK_MONOTONIC`` stops
during suspend, so a resumed laptop or VM would look like a forward wall-clock step to it."""


class Clock(Protocol):
    def now(self) -> datetime:
        """Aware UTC datetime."""
        ...

    def time(self) -> float:
        """Unix seconds (float)."""
        ...


class SystemClock:
    """The host clock as is."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def time(self) -> float:
        return time.time()


@dataclass(frozen=True, slots=True)
class UpstreamSample:
    """One observation of upstream (server) time against the host clock.

    ``offset`` = true - host, in seconds; ``uncertainty`` is the half-width of the error bound.
    """

    source: str
    offset: float
    uncertainty: float
    observed_at: float  # host unix time when observed

    def shifted(self, step: float) -> UpstreamSample:
        """The same observation after the host clock was stepped by ``step`` seconds."""
        return UpstreamSample(self.source, self.offset - step, self.uncertainty, self.observed_at + step)


class CorrectedClock:
    """Host time plus the best known offset to true time. Thread-safe; cheap to call."""

    def __init__(self, offset: float = 0.0, uncertainty: float | None = None, source: str = "none") -> None:
        self._lock = threading.Lock()
        self._offset = offset
        self._uncertainty = uncertainty
        self._source = source
        self._upstream: dict[str, UpstreamSample] = {}
        self._recorded: dict[str, float] = {}  # monotonic time each sample was recorded

    @property
    def offset(self) -> float:
        return self._offset

    @property
    def uncertainty(self) -> float | None:
        return self._uncertainty

    @property
    def source(self) -> str:
        return self._source

    def set_offset(self, offset: float, uncertainty: float | None, source: str) -> None:
        with self._lock:
            self._offset = offset
            self._uncertainty = uncertainty
            self._source = source

    def report_upstream(self, source: str, server_unix: float, host_unix: float | None = None,
                        uncertainty: float = 1.0) -> UpstreamSample:
        """Record upstream time (e.g. the ``t`` attribute of ``success``, whole seconds -> ±1 s)."""
        host = time.time() if host_unix is None else host_unix
        sample = UpstreamSample(source, server_unix - host, uncertainty, host)
        with self._lock:
            self._upstream[source] = sample
            self._recorded[source] = time.monotonic()
        return sample

    def shift_upstream(self, step: float, window: float) -> None:
        """The host clock was stepped by ``step`` seconds, at most ``window`` seconds ago. Samples
        recorded before that still describe true time: their offsets (true − host) drop by the step
        and their host timestamps move with it. One recorded inside the window may be on either side
        of the step and is dropped."""
        cutoff = time.monotonic() - window
        with self._lock:
            self._upstream = {k: s.shifted(step) for k, s in self._upstream.items()
                              if self._recorded.get(k, 0.0) <= cutoff}

    def upstream(self) -> dict[str, UpstreamSample]:
        with self._lock:
            return dict(self._upstream)

    def time(self) -> float:
        return time.time() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)
