"""The wall-clock step detector, row by row, plus long synthetic runs and the real-time shell."""

from __future__ import annotations

import asyncio
import math
import random
import time

import pytest

from evolink.clock.config import ClockConfig, ClockConfigError
from evolink.clock.step import (
    TRANSITIONS,
    ClockStep,
    DetectorState,
    StepDetector,
    StepDirection,
    StepWatcher,
    Tick,
)

U, T = DetectorState.UNANCHORED, DetectorState.TRACKING
WALL0, EL0 = 1_800_000_000.0, 1000.0


# --- the transition table, row by row ------------------------------------------------------------


def test_every_state_and_tick_pair_is_either_a_row_or_impossible() -> None:
    # UNANCHORED never classifies a reading as STEADY or STEP (there is nothing to compare with).
    impossible = {(U, Tick.STEADY), (U, Tick.STEP), (T, Tick.ANCHOR)}
    assert set(TRANSITIONS) | impossible == {(s, t) for s in DetectorState for t in Tick}
    assert not set(TRANSITIONS) & impossible


# Each row: (readings fed before, the reading under test, expected tick, next state, step seconds or None)
ROWS = [
    pytest.param([], (WALL0, EL0), Tick.ANCHOR, T, None, id="unanchored+anchor->tracking"),
    pytest.param([], (math.nan, EL0), Tick.INVALID, U, None, id="unanchored+nan->unanchored"),
    pytest.param([], (WALL0, math.inf), Tick.INVALID, U, None, id="unanchored+inf->unanchored"),
    pytest.param([(WALL0, EL0)], (WALL0 + 0.5, EL0 + 0.5), Tick.STEADY, T, None, id="tracking+steady"),
    pytest.param([(WALL0, EL0)], (WALL0 + 2.5, EL0 + 0.5), Tick.STEADY, T, None, id="tracking+2.0s-exactly-steady"),
    pytest.param([(WALL0, EL0)], (WALL0 + 2.5001, EL0 + 0.5), Tick.STEP, T, 2.0001, id="tracking+just-above->step"),
    pytest.param([(WALL0, EL0)], (WALL0 + 7200.5, EL0 + 0.5), Tick.STEP, T, 7200.0, id="tracking+2h-forward"),
    pytest.param([(WALL0, EL0)], (WALL0 - 1799.5, EL0 + 0.5), Tick.STEP, T, -1800.0, id="tracking+30min-backward"),
    pytest.param([(WALL0, EL0)], (WALL0 + 30.0, EL0 + 30.0), Tick.STEADY, T, None, id="tracking+late-tick-steady"),
    pytest.param([(WALL0, EL0)], (WALL0 + 0.5, EL0 - 1.0), Tick.INVALID, U, None, id="tracking+elapsed-backwards"),
    pytest.param([(WALL0, EL0)], (math.nan, EL0 + 0.5), Tick.INVALID, U, None, id="tracking+nan->unanchored"),
    pytest.param([(WALL0, EL0), (math.nan, EL0 + 0.5)], (WALL0 + 9999.0, EL0 + 1.0), Tick.ANCHOR, T, None,
                 id="re-anchor-after-invalid-reports-nothing"),
]


@pytest.mark.parametrize(("before", "reading", "tick", "state", "seconds"), ROWS)
def test_row(before: list[tuple[float, float]], reading: tuple[float, float], tick: Tick,
             state: DetectorState, seconds: float | None) -> None:
    d = StepDetector(2.0)
    for wall, el in before:
        d.feed(wall, el)
    assert d.classify(*reading) is tick
    step = d.feed(*reading)
    assert d.state is state
    if seconds is None:
        assert step is None
    else:
        assert step is not None and step.seconds == pytest.approx(seconds, abs=1e-6)
        assert step.direction is (StepDirection.FORWARD if seconds > 0 else StepDirection.BACKWARD)
        assert step.size == pytest.approx(abs(seconds), abs=1e-6)
        assert (step.wall_before, step.wall_after) == (before[-1][0], reading[0])
        assert step.gap == pytest.approx(reading[1] - before[-1][1])


def test_after_a_step_the_new_wall_clock_is_the_reference() -> None:
    d = StepDetector(2.0)
    d.feed(WALL0, EL0)
    assert d.feed(WALL0 + 7200.5, EL0 + 0.5) is not None
    assert d.feed(WALL0 + 7201.0, EL0 + 1.0) is None  # the stepped clock simply runs on
    assert d.feed(WALL0 + 7201.5, EL0 + 1.5) is None


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="> 0"):
        StepDetector(0)


def test_threshold_setting() -> None:
    assert ClockConfig.from_env({}).step_threshold_seconds == 2.0
    assert ClockConfig.from_env({"CLOCK_STEP_THRESHOLD_SECONDS": "5"}).step_threshold_seconds == 5.0
    with pytest.raises(ClockConfigError, match=r"^CLOCK_STEP_THRESHOLD_SECONDS: must be >= 0.5$"):
        ClockConfig.from_env({"CLOCK_STEP_THRESHOLD_SECONDS": "0.1"})
    with pytest.raises(ClockConfigError, match=r"^CLOCK_STEP_THRESHOLD_SECONDS: 'soon' is not a number$"):
        ClockConfig.from_env({"CLOCK_STEP_THRESHOLD_SECONDS": "soon"})


# --- long synthetic runs -------------------------------------------------------------------------


def _simulate(threshold: float, *, minutes: float = 10, jitter: float = 0.1, seed: int = 7,
              steps: dict[int, float] | None = None, slew_ppm: float = 0.0) -> list[ClockStep]:
    """Ticks every 0.5 s (with scheduler delays) for `minutes`; the wall reading jitters by ±`jitter`;
    `steps` maps a tick index to a wall-clock step applied just before it."""
    rng = random.Random(seed)
    d = StepDetector(threshold)
    found: list[ClockStep] = []
    el, wall_base = EL0, WALL0
    i = 0
    while el - EL0 < minutes * 60:
        gap = 0.5 + (rng.expovariate(1 / 0.02) if rng.random() > 0.01 else rng.uniform(1, 5))  # late ticks
        el += gap
        wall_base += gap * (1 + slew_ppm * 1e-6)
        wall_base += (steps or {}).get(i, 0.0)
        step = d.feed(wall_base + rng.uniform(-jitter, jitter), el)
        if step is not None:
            found.append(step)
        i += 1
    return found


def test_ten_minutes_of_100ms_jitter_raise_no_false_detection() -> None:
    for seed in range(5):
        assert _simulate(2.0, seed=seed) == []
    # The jitter is real: a detector too sensitive for it does fire on the same readings.
    assert _simulate(0.15, seed=0)


def test_slewing_clock_is_not_a_step() -> None:
    # chrony's maximum slew rate (83 ms/s) for 10 minutes moves the clock by 50 s, never in one tick.
    assert _simulate(2.0, slew_ppm=83_333) == []


def test_steps_inside_jitter_are_found_with_their_size() -> None:
    found = _simulate(2.0, steps={600: 7200.0, 840: -1800.0})
    assert [s.direction for s in found] == [StepDirection.FORWARD, StepDirection.BACKWARD]
    assert found[0].seconds == pytest.approx(7200.0, abs=0.25)
    assert found[1].seconds == pytest.approx(-1800.0, abs=0.25)


# --- the real-time shell -------------------------------------------------------------------------


class SteppableWall:
    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


async def test_watcher_on_real_clocks_sees_nothing_then_the_step_within_a_tick() -> None:
    wall = SteppableWall()
    seen: asyncio.Queue[tuple[ClockStep, float]] = asyncio.Queue()
    watcher = StepWatcher(2.0, lambda s: seen.put_nowait((s, time.monotonic())), interval=0.05, wall=wall)
    watcher.start()
    try:
        # A short quiet window on the real clocks: no detection.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(seen.get(), 1.0)
        assert watcher.ticks >= 10
        stepped_at = time.monotonic()
        wall.shift = 7200.0
        step, detected_at = await asyncio.wait_for(seen.get(), 2.0)
        assert step.direction is StepDirection.FORWARD and step.seconds == pytest.approx(7200.0, abs=0.5)
        assert detected_at - stepped_at < 1.0
        wall.shift = 5400.0
        step, _ = await asyncio.wait_for(seen.get(), 2.0)
        assert step.direction is StepDirection.BACKWARD and step.seconds == pytest.approx(-1800.0, abs=0.5)
    finally:
        await watcher.stop()
    assert not watcher.running


async def test_watcher_survives_a_failing_handler(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[ClockStep] = []

    def boom(step: ClockStep) -> None:
        calls.append(step)
        raise RuntimeError("handler bug")

    wall = SteppableWall()
    watcher = StepWatcher(2.0, boom, wall=wall)
    watcher.tick()
    wall.shift = 100.0
    assert watcher.tick() is not None
    wall.shift = 0.0
    assert watcher.tick() is not None
    assert len(calls) == 2 and "clock step handler failed" in caplog.text
