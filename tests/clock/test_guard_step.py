"""ClockGuard + step watcher on loopback: a host clock stepped while the guard runs.

The guard's wall clock is injected (real time plus a shift we change); the SNTP responders and the
elapsed clock are real, so a change of the shift is exactly what `date -s` does to a process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from clock_helpers import HttpDateServer, Responders, synced_kernel

from evolink import metrics
from evolink.clock import ClockConfig, ClockGuard, CorrectedClock, NtpServer, SkewPolicy
from evolink.clock.step import StepDirection, StepReport

TICK = 0.05


class Wall:
    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.time() + self.shift


class HostClock(CorrectedClock):
    """A CorrectedClock on the injected (steppable) host clock."""

    def __init__(self, wall: Callable[[], float]) -> None:
        super().__init__()
        self._wall = wall

    def time(self) -> float:
        return self._wall() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)


class Mono:
    """The guard's monotonic clock (poll discipline), advanced by hand to let min-poll elapse."""

    def __init__(self) -> None:
        self.extra = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.extra


def _steps(direction: str) -> float:
    return metrics.REGISTRY.get_sample_value("evolink_clock_steps_total", {"direction": direction}) or 0.0


async def _servers(responders: Responders) -> tuple[list[NtpServer], list[object]]:
    started = [await responders.start(skew=0.0) for _ in range(3)]
    return [s for s, _ in started], [b for _, b in started]


@pytest.fixture
async def rig(responders: Responders) -> AsyncIterator[tuple[ClockGuard, Wall, Mono, list[object],
                                                             asyncio.Queue[StepReport]]]:
    servers, behaviours = await _servers(responders)
    wall, mono = Wall(), Mono()
    cfg = ClockConfig(ntp_servers=tuple(servers), upstream_http_url=None, ntp_packets=1,
                      ntp_packet_spacing_seconds=0, ntp_timeout_seconds=0.5, check_interval_seconds=3600)
    guard = ClockGuard(cfg, HostClock(wall), wall=wall, monotonic=mono, kernel_reader=synced_kernel,
                       env={"TZ": "UTC"}, step_tick=TICK)
    reports: asyncio.Queue[StepReport] = asyncio.Queue()
    guard.add_step_listener(reports.put_nowait)
    guard.start()
    await guard.wait_first(5)
    yield guard, wall, mono, behaviours, reports
    await guard.stop()


async def _remeasured(guard: ClockGuard, within: float = 5.0) -> None:
    assert await guard.wait_remeasured(within), "no re-measure after the step"


async def test_forward_step_corrects_at_once_and_remeasures(rig: tuple) -> None:  # type: ignore[type-arg]
    guard, wall, mono, behaviours, reports = rig
    assert guard.status is not None and abs(guard.status.offset or 0) < 0.05
    before = _steps("forward")
    mono.extra += 20  # the servers may be polled again: the re-measure asks them afresh
    polled = [b.received for b in behaviours]  # type: ignore[attr-defined]

    stepped = time.monotonic()
    wall.shift = 7200.0
    report = await asyncio.wait_for(reports.get(), 2.0)
    assert time.monotonic() - stepped < 1.0
    assert report.step.direction is StepDirection.FORWARD
    assert report.step.seconds == pytest.approx(7200.0, abs=0.2)
    assert report.estimated_offset == pytest.approx(-7200.0, abs=0.25)
    # compensate: true time is right at detection, before any packet went out
    assert abs(guard.clock.time() - time.time()) < 0.25
    assert _steps("forward") == before + 1
    data = report.to_dict()
    assert data["direction"] == "forward" and data["policy"] == "compensate" and data["thresholdSeconds"] == 2.0

    await _remeasured(guard)
    assert guard.status is not None and guard.status.offset == pytest.approx(-7200.0, abs=0.05)
    assert guard.clock.offset == pytest.approx(-7200.0, abs=0.05)
    assert all(b.received > p for b, p in zip(behaviours, polled, strict=True))  # type: ignore[attr-defined]
    assert metrics.REGISTRY.get_sample_value("evolink_clock_offset_seconds", {"source": "applied"}) == \
        pytest.approx(-7200.0, abs=0.05)


async def test_step_within_min_poll_moves_the_cached_samples_and_asks_no_server(rig: tuple) -> None:  # type: ignore[type-arg]
    guard, wall, mono, behaviours, reports = rig
    mono.extra += 1.0  # the last samples are a second old: clearly from before the step
    polled = [b.received for b in behaviours]  # type: ignore[attr-defined]
    wall.shift = -1800.0
    report = await asyncio.wait_for(reports.get(), 2.0)
    assert report.step.direction is StepDirection.BACKWARD
    await _remeasured(guard)
    # RFC 4330: no server polled twice within 15 s; the cached samples moved with the host clock.
    assert [b.received for b in behaviours] == polled  # type: ignore[attr-defined]
    assert guard.status is not None and guard.status.offset == pytest.approx(1800.0, abs=0.25)
    assert guard.status.servers and all(r.cached for r in guard.status.servers)
    assert abs(guard.clock.time() - time.time()) < 0.25


async def test_no_detection_on_a_steady_clock(rig: tuple) -> None:  # type: ignore[type-arg]
    guard, _wall, _mono, _b, reports = rig
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reports.get(), 1.0)
    assert guard.steps_detected == 0 and guard.watcher.ticks >= 10 and not guard.stale


async def test_refuse_blocks_links_after_an_unsafe_step_until_remeasured_safe(responders: Responders) -> None:
    servers, _ = await _servers(responders)
    wall = Wall()
    cfg = ClockConfig(ntp_servers=tuple(servers), upstream_http_url=None, ntp_packets=1,
                      ntp_packet_spacing_seconds=0, ntp_timeout_seconds=0.5, skew_policy=SkewPolicy.REFUSE,
                      check_interval_seconds=3600)
    clock = HostClock(wall)
    guard = ClockGuard(cfg, clock, wall=wall, kernel_reader=synced_kernel, env={"TZ": "UTC"}, step_tick=TICK)
    reports: asyncio.Queue[StepReport] = asyncio.Queue()
    guard.add_step_listener(reports.put_nowait)
    guard.start()
    try:
        await guard.wait_first(5)
        ok = await guard.authorize_link("code", "acme")
        assert ok.allowed and "lastStep" not in ok.clock

        wall.shift = 7600.0  # not a whole number of hours: the diagnosis is plain skew
        await asyncio.wait_for(reports.get(), 2.0)
        assert clock.offset == 0.0  # refuse never corrects: evolink stays on host time
        refused = await guard.authorize_link("code", "acme")  # waits for the re-measure if it is running
        assert not refused.allowed and refused.reason == "skew_exceeds_max"
        assert refused.clock["offsetSeconds"] == pytest.approx(-7600.0, abs=0.25)
        step = refused.clock["lastStep"]
        assert isinstance(step, dict) and step["direction"] == "forward" and step["remeasured"] is True
        assert "wall clock stepped forward by 2h06m40.0s" in refused.message, refused.message

        wall.shift = 0.0  # the operator fixes the clock: detected, re-measured, safe again
        await asyncio.wait_for(reports.get(), 2.0)
        again = await guard.authorize_link("code", "acme")
        assert again.allowed and again.reason == "ok", again.message
        assert again.clock["lastStep"]["direction"] == "backward"  # type: ignore[index]
    finally:
        await guard.stop()


async def test_http_date_sample_moves_with_the_step() -> None:
    """NTP unreachable: the upstream Date fallback, probed < 15 s ago, is moved by the step."""
    server = HttpDateServer()
    url = await server.start()
    wall, mono = Wall(), Mono()
    cfg = ClockConfig(ntp_servers=(), upstream_http_url=url, check_interval_seconds=3600)
    guard = ClockGuard(cfg, HostClock(wall), wall=wall, monotonic=mono, kernel_reader=synced_kernel, env={"TZ": "UTC"},
                       step_tick=TICK)
    reports: asyncio.Queue[StepReport] = asyncio.Queue()
    guard.add_step_listener(reports.put_nowait)
    guard.start()
    try:
        await guard.wait_first(5)
        mono.extra += 1.0  # the probe is a second old: clearly from before the step
        probes = server.requests
        wall.shift = 3600.0
        await asyncio.wait_for(reports.get(), 2.0)
        await _remeasured(guard)
        assert server.requests == probes
        assert guard.status is not None and guard.status.offset == pytest.approx(-3600.0, abs=1.5)
    finally:
        await guard.stop()
        await server.close()
