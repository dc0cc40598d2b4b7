"""Marzullo selection, verdicts (incl. the local-time RTC diagnosis) and the link policy table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evolink.clock.config import SkewPolicy
from evolink.clock.kernel import KernelState
from evolink.clock.policy import decide_link
from evolink.clock.select import Estimate, marzullo, select_and_combine
from evolink.clock.status import ClockStatus
from evolink.clock.verdict import VerdictCode, describe_offset, diagnose, rtc_zone_offset

SYNCED = KernelState(True, True, 0, 0, False, 0.01, 0.001)
UNSYNCED = KernelState(True, False, 5, 0x40, True, 16.0, 16.0)


def test_marzullo_finds_deepest_region() -> None:
    depth, lo, hi = marzullo([(8, 12), (11, 13), (10, 12)])
    assert (depth, lo, hi) == (3, 11, 12)
    assert marzullo([(0, 1), (2, 3)])[0] == 1
    assert marzullo([(0, 1), (1, 2)])[0] == 2  # touching intervals agree


def test_one_falseticker_among_three_is_rejected() -> None:
    est = [Estimate("a", 0.2, 0.001), Estimate("b", 0.21, 0.001), Estimate("c", 0.19, 0.001),
           Estimate("liar", 40.0, 0.001)]
    sel = select_and_combine(est)
    assert sel.majority and sel.agreeing == 3
    assert sel.falsetickers == ("liar",)
    assert sel.offset == pytest.approx(0.2, abs=0.005)
    assert sel.uncertainty is not None and 0.005 < sel.uncertainty < 0.05


def test_two_disagreeing_sources_have_no_majority() -> None:
    sel = select_and_combine([Estimate("a", 0.0, 0.01), Estimate("b", 5.0, 0.01)])
    assert not sel.majority and sel.offset is None and sel.agreeing == 1


@settings(max_examples=60, deadline=None)
@given(truth=st.floats(-1e5, 1e5), noise=st.lists(st.floats(-0.1, 0.1), min_size=3, max_size=5),
       lie=st.floats(1.0, 1e4), sign=st.sampled_from([-1, 1]))
def test_property_jitter_never_splits_majority_and_liar_is_outvoted(truth: float, noise: list[float],
                                                                    lie: float, sign: int) -> None:
    est = [Estimate(f"s{i}", truth + n, 0.002) for i, n in enumerate(noise)]
    est.append(Estimate("liar", truth + sign * lie, 0.002))
    sel = select_and_combine(est)
    assert sel.majority and "liar" in sel.falsetickers
    assert sel.offset is not None and abs(sel.offset - truth) <= 0.1 + 1e-6


def test_rtc_zone_offset_window() -> None:
    assert rtc_zone_offset(-(3 * 3600 + 20)) == 3 * 3600
    assert rtc_zone_offset(3 * 3600 - 89) == -3 * 3600
    assert rtc_zone_offset(-(5 * 3600 + 30 * 60)) == 5.5 * 3600
    assert rtc_zone_offset(-(3 * 3600 + 95)) is None  # beyond 90 s of drift
    assert rtc_zone_offset(45.0) is None  # k = 0 is just skew
    assert rtc_zone_offset(-15 * 3600.0) is None  # no zone is UTC+15


NOW = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)


def test_local_time_rtc_names_utc_plus_3_zones() -> None:
    v = diagnose(offset=-(3 * 3600 + 20.0), source="ntp", ntp_state="ok", ntp_agreeing=3, ntp_candidates=4,
                 kernel=SYNCED, now=NOW)
    assert v.code is VerdictCode.LOCAL_TIME_RTC
    assert v.zone_offset == "UTC+03:00"
    assert "RTC kept in local time, UTC+03:00, e.g. " in v.reason
    assert "3h00m20.0s ahead of true time (ntp; 20 s of drift on top of the zone offset)" in v.reason
    assert v.candidate_zones and "Europe/Moscow" in v.candidate_zones
    for key in v.candidate_zones:  # derived from tzdata at this instant
        assert NOW.astimezone(ZoneInfo(key)).utcoffset() == timedelta(hours=3)
    assert v.fix is not None and "timedatectl set-local-rtc 0" in v.fix


def test_local_time_rtc_utc_minus_3_suggests_sao_paulo_first() -> None:
    v = diagnose(offset=3 * 3600 - 12.0, source="ntp", ntp_state="ok", kernel=SYNCED, now=NOW)
    assert v.code is VerdictCode.LOCAL_TIME_RTC
    assert v.reason.startswith("RTC kept in local time, UTC−03:00, e.g. America/Sao_Paulo")


def test_candidate_zones_follow_dst_at_the_instant() -> None:
    winter = diagnose(offset=-3600.0, source="ntp", ntp_state="ok", now=datetime(2026, 1, 15, tzinfo=UTC))
    summer = diagnose(offset=-3600.0, source="ntp", ntp_state="ok", now=datetime(2026, 7, 15, tzinfo=UTC))
    assert "Europe/Berlin" in winter.candidate_zones and "Europe/Berlin" not in summer.candidate_zones
    assert "Europe/London" in summer.candidate_zones


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"offset": 0.05, "source": "ntp", "ntp_state": "ok", "kernel": SYNCED}, VerdictCode.OK),
    ({"offset": 0.05, "source": "ntp", "ntp_state": "ok", "kernel": UNSYNCED}, VerdictCode.UNSYNCED),
    ({"offset": -120.0, "source": "ntp", "ntp_state": "ok", "kernel": SYNCED}, VerdictCode.SKEWED),
    ({"offset": 0.2, "source": "upstream_http", "ntp_state": "unreachable"}, VerdictCode.NTP_UNREACHABLE),
    ({"offset": None, "source": None, "ntp_state": "unreachable"}, VerdictCode.NTP_UNREACHABLE),
    ({"offset": None, "source": None, "ntp_state": "no_majority"}, VerdictCode.NO_MAJORITY),
    ({"offset": 500.0, "source": "upstream_http", "ntp_state": "no_majority"}, VerdictCode.SKEWED),
])
def test_verdict_table(kwargs: dict[str, object], code: VerdictCode) -> None:
    assert diagnose(**kwargs).code is code  # type: ignore[arg-type]


def test_describe_offset() -> None:
    assert describe_offset(-0.25) == "0.250s ahead of"
    assert describe_offset(125.0) == "2m05.0s behind"


def _status(offset: float | None, ntp_state: str = "ok", source: str | None = "ntp") -> ClockStatus:
    v = diagnose(offset=offset, source=source, ntp_state=ntp_state, kernel=SYNCED, now=NOW)  # type: ignore[arg-type]
    return ClockStatus(NOW.timestamp(), v, offset, 0.01 if offset is not None else None, source,
                       ntp_state)  # type: ignore[arg-type]


@pytest.mark.parametrize(("policy", "offset", "ntp", "source", "allowed", "reason"), [
    (SkewPolicy.COMPENSATE, 0.1, "ok", "ntp", True, "ok"),
    (SkewPolicy.COMPENSATE, -10820.0, "ok", "ntp", True, "compensated"),
    (SkewPolicy.COMPENSATE, 100.0, "unreachable", "upstream_http", False, "upstream_disagrees"),
    (SkewPolicy.COMPENSATE, 5.0, "unreachable", "upstream_http", True, "compensated"),
    (SkewPolicy.COMPENSATE, None, "unreachable", None, True, "offset_unknown"),
    (SkewPolicy.REFUSE, 0.1, "ok", "ntp", True, "ok"),
    (SkewPolicy.REFUSE, 31.0, "ok", "ntp", False, "skew_exceeds_max"),
    (SkewPolicy.REFUSE, -10820.0, "ok", "ntp", False, "local_time_rtc"),
    (SkewPolicy.REFUSE, None, "no_majority", None, False, "offset_unknown"),
    (SkewPolicy.WARN, -10820.0, "ok", "ntp", True, "warn_only"),
    (SkewPolicy.WARN, None, "unreachable", None, True, "warn_only"),
])
def test_policy_table(policy: SkewPolicy, offset: float | None, ntp: str, source: str | None,
                      allowed: bool, reason: str) -> None:
    d = decide_link(_status(offset, ntp, source), policy, 30.0)
    assert (d.allowed, d.reason) == (allowed, reason)
    assert d.clock["policy"] == str(policy) and d.clock["allowed"] is allowed
    if not allowed:
        assert d.message.startswith(f"Linking refused by the clock guard (CLOCK_SKEW_POLICY={policy})")
        assert "Sources:" in d.message and "Diagnosis:" in d.message and "Fix:" in d.message


def test_refusal_message_states_offset_sources_diagnosis_and_fix() -> None:
    d = decide_link(_status(-(3 * 3600 + 20.0)), SkewPolicy.REFUSE, 30.0)
    assert not d.allowed
    assert "3h00m20.0s ahead of true time (offset -10820.000 s ± 0.01, from ntp)" in d.message
    assert "local_time_rtc — RTC kept in local time, UTC+03:00" in d.message
    assert "timedatectl set-local-rtc 0" in d.message
    assert d.clock["verdict"] == "local_time_rtc" and d.clock["zoneOffset"] == "UTC+03:00"


def test_unmeasured_clock() -> None:
    assert not decide_link(None, SkewPolicy.REFUSE, 30).allowed
    assert decide_link(None, SkewPolicy.COMPENSATE, 30).allowed
