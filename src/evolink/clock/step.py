"""Wall-clock step detection: a pure detector and the thin timer that feeds it.

A step is a discontinuity of the host wall clock against a clock that is never stepped: a VM
restored from a snapshot, an operator's ``date -s``, NTP stepping instead of slewing. Each tick
reads both clocks once; between two ticks the wall clock must advance as much as the elapsed clock
(``evolink.clock.base.elapsed``, ``CLOCK_BOOTTIME``). A difference above the threshold
(``CLOCK_STEP_THRESHOLD_SECONDS``, default 2 s) is a step of that size.

Caveats that shaped it:
- Ticks are compared with the previous tick, not with a fixed anchor: a daemon slewing the clock
  (chrony slews up to 83 ms/s) moves it by a few tens of ms per tick and is never a "step", while
  a real step shows up whole between two ticks.
- A late tick (busy event loop, a SIGSTOP, a suspended process) is not a step: both clocks advance
  by the same gap. System suspend is not one either, because ``CLOCK_BOOTTIME`` keeps counting
  through it (``CLOCK_MONOTONIC`` does not, and would report the suspend as a forward step).
- A hypervisor pausing a VM stops both clocks; the guest's wall clock is behind after resume until
  something steps it, and that later step is what we detect.
- Non-finite readings and an elapsed clock that goes backwards (which it cannot, unless the input
  is wrong) drop the anchor; the next good tick re-anchors without reporting anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from evolink.clock.base import elapsed as default_elapsed
from evolink.clock.base import iso_utc
from evolink.clock.verdict import describe_duration

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5  # two clock reads per tick; a step is seen within one tick


class StepDirection(StrEnum):
    FORWARD = "forward"  # the wall clock jumped ahead
    BACKWARD = "backward"


@dataclass(frozen=True, slots=True)
class ClockStep:
    """One detected step. ``seconds`` is signed: the wall clock moved this much more than real time."""

    seconds: float
    wall_before: float  # host wall time at the previous tick
    wall_after: float  # host wall time at the detecting tick
    elapsed_at: float  # elapsed clock at the detecting tick
    gap: float  # elapsed time between the two ticks

    @property
    def direction(self) -> StepDirection:
        return StepDirection.FORWARD if self.seconds > 0 else StepDirection.BACKWARD

    @property
    def size(self) -> float:
        return abs(self.seconds)


@dataclass(frozen=True, slots=True)
class StepReport:
    """What the guard makes of a step: logged, counted, and sent as the ``CLOCK_STEP`` event."""

    step: ClockStep
    detected_at: float  # corrected unix time at detection (after the immediate correction)
    estimated_offset: float | None  # true − host after the step (last measured offset − step)
    policy: str
    threshold: float

    def describe(self) -> str:
        return f"wall clock stepped {self.step.direction} by {describe_duration(self.step.seconds)}"

    def to_dict(self) -> dict[str, object]:
        """The ``CLOCK_STEP`` event's ``data`` (and the ``lastStep`` of a link decision)."""
        est = self.estimated_offset
        return {
            "direction": str(self.step.direction),
            "stepSeconds": round(self.step.seconds, 3),
            "thresholdSeconds": self.threshold,
            "detectedAt": iso_utc(datetime.fromtimestamp(self.detected_at, UTC)),
            "hostTime": iso_utc(datetime.fromtimestamp(self.step.wall_after, UTC)),
            "estimatedOffsetSeconds": None if est is None else round(est, 3),
            "policy": self.policy,
        }


class DetectorState(StrEnum):
    UNANCHORED = "unanchored"  # no previous tick to compare with
    TRACKING = "tracking"


class Tick(StrEnum):
    """What one reading is, relative to the previous one."""

    ANCHOR = "anchor"  # valid, nothing to compare with
    STEADY = "steady"  # both clocks advanced alike (within the threshold)
    STEP = "step"  # they did not
    INVALID = "invalid"  # non-finite reading, or the elapsed clock went backwards


# (state, tick) -> (next state, report a step?)
TRANSITIONS: dict[tuple[DetectorState, Tick], tuple[DetectorState, bool]] = {
    (DetectorState.UNANCHORED, Tick.ANCHOR): (DetectorState.TRACKING, False),
    (DetectorState.UNANCHORED, Tick.INVALID): (DetectorState.UNANCHORED, False),
    (DetectorState.TRACKING, Tick.STEADY): (DetectorState.TRACKING, False),
    (DetectorState.TRACKING, Tick.STEP): (DetectorState.TRACKING, True),
    (DetectorState.TRACKING, Tick.INVALID): (DetectorState.UNANCHORED, False),
}


class StepDetector:
    """Pure: feed ``(wall, elapsed)`` readings, get a ``ClockStep`` when the wall clock jumped."""

    def __init__(self, threshold: float) -> None:
        if not threshold > 0:
            raise ValueError("step threshold must be > 0")
        self.threshold = threshold
        self.state = DetectorState.UNANCHORED
        self._last: tuple[float, float] | None = None

    def classify(self, wall: float, elapsed: float) -> Tick:
        if not (math.isfinite(wall) and math.isfinite(elapsed)):
            return Tick.INVALID
        if self.state is DetectorState.UNANCHORED or self._last is None:
            return Tick.ANCHOR
        last_wall, last_elapsed = self._last
        if elapsed < last_elapsed:
            return Tick.INVALID
        drift = (wall - last_wall) - (elapsed - last_elapsed)
        return Tick.STEP if abs(drift) > self.threshold else Tick.STEADY

    def feed(self, wall: float, elapsed: float) -> ClockStep | None:
        tick = self.classify(wall, elapsed)
        self.state, report = TRANSITIONS[(self.state, tick)]
        previous, self._last = self._last, ((wall, elapsed) if tick is not Tick.INVALID else None)
        if not report or previous is None:
            return None
        last_wall, last_elapsed = previous
        gap = elapsed - last_elapsed
        return ClockStep(wall - last_wall - gap, last_wall, wall, elapsed, gap)


class StepWatcher:
    """The timer shell: one ``wall()`` and one ``elapsed()`` read per tick; ``on_step`` on a step.

    ``on_step`` runs on the event loop, synchronously; an exception in it is logged and the watcher
    keeps ticking.
    """

    def __init__(self, threshold: float, on_step: Callable[[ClockStep], None], *, interval: float = TICK_SECONDS,
                 wall: Callable[[], float] = time.time, elapsed: Callable[[], float] = default_elapsed) -> None:
        self.detector = StepDetector(threshold)
        self.interval = interval
        self._on_step = on_step
        self._wall = wall
        self._elapsed = elapsed
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0

    def tick(self) -> ClockStep | None:
        self.ticks += 1
        step = self.detector.feed(self._wall(), self._elapsed())
        if step is not None:
            try:
                self._on_step(step)
            except Exception:
                log.exception("clock step handler failed")
        return step

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="clock-step-watcher")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(self.interval)  # the tick period, not a synchronisation
