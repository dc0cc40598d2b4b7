"""ClockGuard end to end on loopback: majority, falseticker, silent source, fallbacks, policy, metrics."""

from __future__ import annotations

import asyncio
import time

import pytest
from clock_helpers import HttpDateServer, Responders, synced_kernel, unused_udp_port

from evolink import metrics
from evolink.clock import ClockConfig, ClockGuard, CorrectedClock, NtpServer, SkewPolicy, VerdictCode
from evolink.clock.sntp import ServerStatus


def _config(servers: list[NtpServer], **kw: object) -> ClockConfig:
    base: dict[str, object] = dict(ntp_servers=tuple(servers), upstream_http_url=None, ntp_packets=3,
                                   ntp_packet_spacing_seconds=0.005, ntp_timeout_seconds=0.4,
                                   http_timeout_seconds=2.0)
    base.update(kw)
    return ClockConfig(**base)  # type: ignore[arg-type]


def _sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


async def test_majority_falseticker_and_silent_source(responders: Responders) -> None:
    good = [await responders.start(skew=s) for s in (0.2, 0.21, 0.19)]
    liar, _ = await responders.start(skew=40.0)
    silent, silent_b = await responders.start(silent=True)
    servers = [s for s, _ in good] + [liar, silent]
    clock = CorrectedClock()
    guard = ClockGuard(_config(servers), clock, kernel_reader=synced_kernel, env={"TZ": "UTC"})
    started = time.monotonic()
    status = await guard.check()
    elapsed = time.monotonic() - started

    # Truth: the true-time sources serve true time + ~0.2 s; the host clock is the real clock.
    truth = sum(b.replies[-1] for _, b in good) / 3
    assert status.offset is not None and abs(status.offset - truth) < 0.05
    assert status.trusted and status.source == "ntp"
    assert status.selection is not None and status.selection.falsetickers == (str(liar),)
    assert status.selection.agreeing == 3
    assert str(silent) in status.silent_servers() and silent_b.received >= 1
    assert status.verdict.code is VerdictCode.OK
    text = status.describe_sources()
    assert "ntp 3/5 agreeing" in text and f"rejected falsetickers [{liar}]" in text and f"silent [{silent}]" in text
    # compensate: the corrected clock now runs on the measured offset
    assert clock.offset == pytest.approx(status.offset) and clock.source == "ntp"
    assert abs(clock.time() - (time.time() + truth)) < 0.05
    assert elapsed < 3.0  # the silent server costs two reply timeouts
    assert _sample("evolink_clock_ntp_sources_agreeing") == 3
    assert _sample("evolink_clock_sync_ok") == 1
    assert _sample("evolink_clock_offset_seconds", source="ntp") == pytest.approx(status.offset)
    assert _sample("evolink_clock_ntp_sources", status="silent") == 1


async def test_jitter_of_100ms_raises_no_false_alarm(responders: Responders) -> None:
    servers = [(await responders.start(skew=0.0, jitter=0.1, seed=seed))[0] for seed in (11, 12, 13, 14)]
    for _ in range(3):
        guard = ClockGuard(_config(servers, ntp_packets=2), kernel_reader=synced_kernel, env={"TZ": "UTC"})
        status = await guard.check()
        assert status.verdict.code is VerdictCode.OK, status.verdict.reason
        assert status.selection is not None and status.selection.falsetickers == ()
        assert status.offset is not None and abs(status.offset) <= 0.1


async def test_no_majority_is_reported(responders: Responders) -> None:
    a, _ = await responders.start(skew=0.0)
    b, _ = await responders.start(skew=50.0)
    guard = ClockGuard(_config([a, b]), kernel_reader=synced_kernel, env={"TZ": "UTC"})
    status = await guard.check()
    assert status.verdict.code is VerdictCode.NO_MAJORITY
    assert status.offset is None and not status.trusted
    assert "largest agreeing group 1 of 2" in status.verdict.reason


async def test_ntp_unreachable_falls_back_to_http_date(responders: Responders) -> None:
    silent, _ = await responders.start(silent=True)
    refused = NtpServer("127.0.0.1", unused_udp_port())
    http = HttpDateServer(skew=0.0)
    url = await http.start()
    try:
        clock = CorrectedClock()
        guard = ClockGuard(_config([silent, refused], upstream_http_url=url), clock, kernel_reader=synced_kernel,
                           env={"TZ": "UTC"})
        status = await guard.check()
    finally:
        await http.close()
    assert status.verdict.code is VerdictCode.NTP_UNREACHABLE
    assert "upstream fallback used (upstream_http)" in status.verdict.reason
    assert status.source == "upstream_http" and status.offset is not None
    assert abs(status.offset) <= 1.0 and status.uncertainty is not None and status.uncertainty >= 0.5
    assert http.requests == 1
    statuses = {r.server: r.status for r in status.servers}
    assert statuses[silent] is ServerStatus.SILENT
    assert statuses[refused] in (ServerStatus.UNREACHABLE, ServerStatus.SILENT)
    assert _sample("evolink_clock_offset_seconds", source="upstream_http") == pytest.approx(status.offset)
    # The coarse source agrees with the host within its own error: no correction by noise.
    assert clock.offset == 0.0 and clock.source == "host (agrees with upstream_http)"


async def test_http_fallback_detects_skew_and_compensate_refuses_beyond_max(responders: Responders) -> None:
    http = HttpDateServer(skew=120.0)
    url = await http.start()
    silent, _ = await responders.start(silent=True)
    try:
        guard = ClockGuard(_config([silent], upstream_http_url=url), kernel_reader=synced_kernel,
                           env={"TZ": "UTC"})
        before = _sample("evolink_pairing_attempts_total", method="qr", result="refused_clock") or 0.0
        decision = await guard.authorize_link("qr", instance="acme")
    finally:
        await http.close()
    status = guard.status
    assert status is not None and status.offset == pytest.approx(120.0, abs=1.5)
    assert status.verdict.code is VerdictCode.SKEWED
    assert not decision.allowed and decision.reason == "upstream_disagrees"
    assert "behind true time" in decision.message and "upstream_http" in decision.message
    assert _sample("evolink_pairing_attempts_total", method="qr", result="refused_clock") == before + 1
    assert (_sample("evolink_clock_link_decisions_total", policy="compensate", decision="refused",
                    reason="upstream_disagrees") or 0) >= 1


async def test_engine_reported_server_time_is_a_fallback(responders: Responders) -> None:
    silent, _ = await responders.start(silent=True)
    clock = CorrectedClock()
    clock.report_upstream("success", time.time() - 3600 - 15)  # server says: host is 1h ahead
    guard = ClockGuard(_config([silent]), clock, kernel_reader=synced_kernel, env={"TZ": "UTC"})
    status = await guard.check()
    assert status.source == "success"
    assert status.verdict.code is VerdictCode.LOCAL_TIME_RTC and status.verdict.zone_offset == "UTC+01:00"
    assert clock.offset == pytest.approx(-3615, abs=0.5)  # compensated with the coarse source
    assert _sample("evolink_clock_offset_seconds", source="upstream_stanza") == pytest.approx(-3615, abs=0.5)


async def test_refuse_policy_refuses_local_time_rtc_and_leaves_clock_alone(responders: Responders) -> None:
    servers = [(await responders.start(skew=0.0))[0] for _ in range(3)]
    clock = CorrectedClock()
    shifted = 3 * 3600 + 20.0
    guard = ClockGuard(_config(servers, skew_policy=SkewPolicy.REFUSE), clock,
                       wall=lambda: time.time() + shifted, kernel_reader=synced_kernel, env={"TZ": "UTC"})
    decision = await guard.authorize_link("code")
    assert not decision.allowed and decision.reason == "local_time_rtc"
    assert "RTC kept in local time, UTC+03:00" in decision.message
    assert decision.clock["offsetSeconds"] == pytest.approx(-shifted, abs=0.05)
    assert clock.offset == 0.0  # only `compensate` corrects the clock


async def test_ensure_fresh_reuses_recent_status_and_loop_runs(responders: Responders) -> None:
    server, b = await responders.start(skew=0.0)
    guard = ClockGuard(_config([server], check_interval_seconds=3600.0), kernel_reader=synced_kernel,
                       env={"TZ": "UTC"})
    guard.start()
    try:
        first = await guard.wait_first(5.0)
        assert first is not None
        assert await guard.ensure_fresh() is first
        assert b.received == 3
    finally:
        await guard.stop()
    assert guard._task is None


async def test_concurrent_checks_share_one_round(responders: Responders) -> None:
    server, b = await responders.start(skew=0.0)
    guard = ClockGuard(_config([server]), kernel_reader=synced_kernel, env={"TZ": "UTC"})
    a, c = await asyncio.gather(guard.check(), guard.check())
    assert a is c and b.received == 3


async def test_stale_ntp_offset_series_is_dropped_when_ntp_goes_away(responders: Responders) -> None:
    servers = [(await responders.start(skew=0.5))[0] for _ in range(3)]
    now = [0.0]
    guard = ClockGuard(_config(servers), kernel_reader=synced_kernel, env={"TZ": "UTC"},
                       monotonic=lambda: now[0])
    await guard.check()
    assert _sample("evolink_clock_offset_seconds", source="ntp") == pytest.approx(0.5, abs=0.05)
    checked = _sample("evolink_clock_last_check_timestamp_seconds", source="ntp")
    responders.close()  # NTP disappears (ICMP port unreachable)
    now[0] += 100.0  # past the 15 s minimum poll interval
    status = await guard.check()
    assert status.verdict.code is VerdictCode.NTP_UNREACHABLE
    assert _sample("evolink_clock_offset_seconds", source="ntp") is None
    assert _sample("evolink_clock_last_check_timestamp_seconds", source="ntp") == checked
    assert guard.clock.offset == pytest.approx(0.5, abs=0.05)  # last known correction is kept


async def test_stop_during_a_round_is_clean(responders: Responders) -> None:
    silent, b = await responders.start(silent=True)
    guard = ClockGuard(_config([silent], ntp_timeout_seconds=30.0), kernel_reader=synced_kernel,
                       env={"TZ": "UTC"})
    guard.start()
    await asyncio.wait_for(b.got_packet.wait(), 5.0)  # the round is now waiting for a reply
    await asyncio.wait_for(guard.stop(), 2.0)
    assert guard.status is None and guard._task is None
