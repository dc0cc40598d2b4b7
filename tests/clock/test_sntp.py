"""SNTP client against loopback responders: checks, KoD, burst filtering, poll discipline."""

from __future__ import annotations

import statistics
import time

import pytest
from clock_helpers import Behaviour, Responders

from evolink.clock.sntp import (
    NtpPacket,
    SampleError,
    ServerStatus,
    SntpClient,
    build_request,
    decode_packet,
    ntp_to_unix,
    query_server,
    unix_to_ntp,
    validate_reply,
)

FAST = {"packets": 3, "spacing": 0.005, "reply_timeout": 1.0}  # generous: only silent servers wait


def test_timestamp_conversion_round_trip_and_2036_era() -> None:
    now = time.time()
    assert abs(ntp_to_unix(unix_to_ntp(now), now) - now) < 1e-6
    after_rollover = 2_085_978_496.0 + 1000  # 2036-02-07 + 1000 s: NTP era 1
    ts = unix_to_ntp(after_rollover)
    assert ts >> 32 < 2000  # wrapped seconds field
    assert abs(ntp_to_unix(ts, after_rollover - 5) - after_rollover) < 1e-6


def test_request_layout() -> None:
    raw = build_request(0x0123456789ABCDEF)
    assert len(raw) == 48 and raw[0] == 0x23  # LI 0, VN 4, mode 3
    assert decode_packet(raw).transmit_ts == 0x0123456789ABCDEF


def _reply(**kw: object) -> NtpPacket:
    base: dict[str, object] = dict(leap=0, version=4, mode=4, stratum=2, poll=4, precision=-20,
                                   root_delay=0.01, root_dispersion=0.01, ref_id=b"\x7f\0\0\1",
                                   reference_ts=1, origin_ts=42, receive_ts=5, transmit_ts=6)
    base.update(kw)
    return NtpPacket(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "status"), [
    ({"origin_ts": 43}, ServerStatus.BOGUS),
    ({"mode": 3}, ServerStatus.BOGUS),
    ({"version": 1}, ServerStatus.BOGUS),
    ({"transmit_ts": 0}, ServerStatus.BOGUS),
    ({"stratum": 16}, ServerStatus.UNSYNCED),
    ({"stratum": 0, "ref_id": b"\0\0\0\0"}, ServerStatus.UNSYNCED),
    ({"leap": 3}, ServerStatus.UNSYNCED),
    ({"stratum": 0, "ref_id": b"RATE"}, ServerStatus.KOD_RATE),
    ({"stratum": 0, "ref_id": b"DENY"}, ServerStatus.DENIED),
    ({"stratum": 0, "ref_id": b"RSTR"}, ServerStatus.DENIED),
    ({"root_dispersion": 20.0}, ServerStatus.BOGUS),
])
def test_validate_reply_rejects(kw: dict[str, object], status: ServerStatus) -> None:
    with pytest.raises(SampleError) as err:
        validate_reply(_reply(**kw), 42)
    assert err.value.status is status


def test_validate_reply_accepts_sane_reply() -> None:
    validate_reply(_reply(), 42)
    validate_reply(_reply(leap=1, stratum=15, version=3), 42)  # leap warning is not an alarm


async def test_measures_skew_of_one_server(responders: Responders) -> None:
    server, b = await responders.start(skew=-42.5)
    result = await query_server(server, **FAST)
    assert result.status is ServerStatus.OK and result.sample is not None
    assert result.sample.offset == pytest.approx(-42.5, abs=0.01)
    assert 0 < result.sample.delay < 0.1
    assert result.sent == 3 and result.replies == 3 and b.received == 3


async def test_host_clock_shift_is_measured(responders: Responders) -> None:
    server, _ = await responders.start(skew=0.0)
    result = await query_server(server, **FAST, wall=lambda: time.time() + 600.0)
    assert result.sample is not None
    assert result.sample.offset == pytest.approx(-600.0, abs=0.01)


@pytest.mark.parametrize(("behaviour", "status"), [
    (Behaviour(kod="RATE"), ServerStatus.KOD_RATE),
    (Behaviour(kod="DENY"), ServerStatus.DENIED),
    (Behaviour(kod="RSTR"), ServerStatus.DENIED),
    (Behaviour(leap=3), ServerStatus.UNSYNCED),
    (Behaviour(stratum=16), ServerStatus.UNSYNCED),
    (Behaviour(kod=""), ServerStatus.UNSYNCED),  # stratum 0 without a known code
])
async def test_kod_and_unsynced_replies_stop_the_burst(responders: Responders, behaviour: Behaviour,
                                                       status: ServerStatus) -> None:
    server, b = await responders.start(behaviour)
    result = await query_server(server, **FAST)
    assert result.status is status and result.sample is None
    assert b.received == 1  # KoD: no further packets (RFC 5905 §7.4)


@pytest.mark.parametrize("behaviour", [Behaviour(bad_origin=True), Behaviour(zero_transmit=True),
                                       Behaviour(mode=3)])
async def test_bogus_replies_are_ignored_then_reported(responders: Responders, behaviour: Behaviour) -> None:
    server, _ = await responders.start(behaviour)
    result = await query_server(server, packets=2, spacing=0.0, reply_timeout=0.1)
    assert result.status is ServerStatus.BOGUS and result.sample is None
    assert result.error


async def test_silent_server_gives_up_after_two_timeouts(responders: Responders) -> None:
    server, b = await responders.start(silent=True)
    started = time.monotonic()
    result = await query_server(server, packets=8, spacing=0.0, reply_timeout=0.1)
    assert result.status is ServerStatus.SILENT
    assert b.received == 2 and time.monotonic() - started < 2.0  # not 8 timeouts


async def test_lowest_delay_sample_is_kept(responders: Responders) -> None:
    server, b = await responders.start(skew=1.0, jitter=0.05, seed=7)
    result = await query_server(server, packets=5, spacing=0.0, reply_timeout=1.0)
    assert result.sample is not None and result.replies == 5
    # The kept offset is one of the served ones (not an average).
    assert min(abs(result.sample.offset - o) for o in b.replies) < 0.005


async def test_poll_discipline_min_interval_and_backoff(responders: Responders) -> None:
    good, gb = await responders.start(skew=0.3)
    rate, rb = await responders.start(kod="RATE")
    deny, db = await responders.start(kod="DENY")
    now = [1000.0]
    client = SntpClient([good, rate, deny], packets=2, spacing=0.0, timeout=1.0, monotonic=lambda: now[0])
    first = {str(r.server): r for r in await client.poll_all()}
    assert first[str(good)].status is ServerStatus.OK and not first[str(good)].cached
    assert (gb.received, rb.received, db.received) == (2, 1, 1)

    now[0] += 5  # < 15 s: nobody is polled again; the good sample is reused
    second = {str(r.server): r for r in await client.poll_all()}
    assert second[str(good)].cached and second[str(good)].status is ServerStatus.OK
    assert second[str(rate)].status is ServerStatus.BACKOFF
    assert second[str(deny)].status is ServerStatus.DENIED
    assert (gb.received, rb.received, db.received) == (2, 1, 1)

    now[0] += 15  # good server due again; RATE backs off 4x15 s; DENY never again
    await client.poll_all()
    assert (gb.received, rb.received, db.received) == (4, 1, 1)
    now[0] += 60
    await client.poll_all()
    assert (rb.received, db.received) == (2, 1)


async def test_jitter_100ms_is_measured_not_amplified(responders: Responders) -> None:
    server, b = await responders.start(skew=0.0, jitter=0.1, seed=3)
    offsets = []
    for _ in range(5):
        r = await query_server(server, packets=1, spacing=0.0, reply_timeout=1.0)
        assert r.sample is not None
        offsets.append(r.sample.offset)
    # Each measurement tracks the offset the responder served (to loopback precision).
    assert all(abs(m - served) < 0.005 for m, served in zip(offsets, b.replies, strict=True))
    assert statistics.pstdev(offsets) > 0.01
