"""From measurements to one verdict with a human reason and a fix.

Precedence: a known offset that looks like a local-time hardware clock, then plain skew, then the
state of the sources (unreachable / no majority), then the kernel's sync flag. The clock fault is
what the operator must act on first; source trouble only matters when the clock looks right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

from evolink.clock.kernel import KernelState
from evolink.clock.timezone import format_utc_offset, zones_with_offset

RTC_STEP = 900.0  # zone offsets are multiples of 15 min
RTC_TOLERANCE = 90.0  # drift allowed on top of the zone offset
MAX_ZONE_OFFSET = 14 * 3600.0  # UTC−12 … UTC+14

NtpState = Literal["ok", "unreachable", "no_majority", "disabled"]

FIX_NTP = "on the host: timedatectl set-ntp true (or run chronyd/systemd-timesyncd)"
FIX_RTC = ("on the host: timedatectl set-local-rtc 0 and timedatectl set-ntp true; "
           "set the display zone with TZ=<Area/City> in the container, never by shifting the clock")
FIX_CONTAINER = "containers share the host kernel clock, so fix the host, not the container"


class VerdictCode(StrEnum):
    OK = "ok"
    SKEWED = "skewed"
    UNSYNCED = "unsynced"
    LOCAL_TIME_RTC = "local_time_rtc"
    NTP_UNREACHABLE = "ntp_unreachable"
    NO_MAJORITY = "no_majority"


@dataclass(frozen=True, slots=True)
class Verdict:
    code: VerdictCode
    reason: str
    fix: str | None = None
    zone_offset: str | None = None  # local_time_rtc: the zone the RTC was set in, e.g. "UTC+03:00"
    candidate_zones: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"verdict": str(self.code), "reason": self.reason}
        if self.fix:
            d["fix"] = self.fix
        if self.zone_offset:
            d["zoneOffset"] = self.zone_offset
            d["candidateZones"] = list(self.candidate_zones)
        return d


def rtc_zone_offset(offset: float) -> float | None:
    """Zone offset (seconds east of UTC) if ``offset`` (true − host) looks like an RTC kept in local time."""
    k = round(offset / RTC_STEP)
    if k == 0 or abs(k * RTC_STEP) > MAX_ZONE_OFFSET:
        return None
    if abs(offset - k * RTC_STEP) > RTC_TOLERANCE:
        return None
    return -k * RTC_STEP  # host ahead (negative offset) <=> zone east of UTC


def describe_duration(seconds: float) -> str:
    """'3h00m20.0s', '1m05.0s', '1.500s' (absolute value)."""
    a = abs(seconds)
    if a >= 59.95:  # shown to 0.1 s: round first, so 1799.99 s reads 30m00.0s (not 29m60.0s), 59.97 s 1m00.0s
        a = round(a, 1)
    h, rem = divmod(a, 3600)
    m, s = divmod(rem, 60)
    if h >= 1:
        return f"{int(h)}h{int(m):02d}m{s:04.1f}s"
    if m >= 1:
        return f"{int(m)}m{s:04.1f}s"
    return f"{s:.3f}s" if s < 10 else f"{s:.1f}s"


def describe_offset(offset: float) -> str:
    """'3h00m20.0s ahead of' / '1.5s behind' true time (host relative to truth)."""
    return f"{describe_duration(offset)} {'ahead of' if offset < 0 else 'behind'}"


def diagnose(*, offset: float | None, source: str | None, ntp_state: NtpState, ntp_agreeing: int = 0,
             ntp_candidates: int = 0, kernel: KernelState | None = None, warn_skew: float = 1.0,
             now: datetime | None = None) -> Verdict:
    """Pure: the verdict for one measurement round. ``offset`` = true − host (seconds)."""
    if offset is not None:
        zone = rtc_zone_offset(offset)
        if zone is not None:
            name = format_utc_offset(zone)
            zones = zones_with_offset(zone, now)
            drift = offset + zone
            example = f", e.g. {', '.join(zones[:3])}" if zones else ""
            reason = (f"RTC kept in local time, {name}{example}: the host clock is "
                      f"{describe_offset(offset)} true time ({source}; {abs(drift):.0f} s of drift on top of the zone offset)")
            return Verdict(VerdictCode.LOCAL_TIME_RTC, reason, f"{FIX_RTC}; {FIX_CONTAINER}", name, zones[:10])
        if abs(offset) > warn_skew:
            reason = f"the host clock is {describe_offset(offset)} true time ({source})"
            return Verdict(VerdictCode.SKEWED, reason, f"{FIX_NTP}; {FIX_CONTAINER}")
    if ntp_state == "unreachable":
        fallback = f"; upstream fallback used ({source})" if offset is not None else "; no upstream fallback"
        return Verdict(VerdictCode.NTP_UNREACHABLE, f"no NTP server answered usably{fallback}",
                       "allow outbound UDP 123 or set CLOCK_NTP_SERVERS to reachable servers")
    if ntp_state == "no_majority":
        fallback = f"; upstream fallback used ({source})" if offset is not None else ""
        return Verdict(VerdictCode.NO_MAJORITY,
                       f"NTP sources disagree: largest agreeing group {ntp_agreeing} of {ntp_candidates}{fallback}",
                       "configure at least 3 independent servers in CLOCK_NTP_SERVERS or drop the faulty one")
    if kernel is not None and kernel.available and kernel.synced is False:
        return Verdict(VerdictCode.UNSYNCED,
                       f"the kernel reports the clock unsynchronised (maxerror {kernel.maxerror:.1f} s): "
                       "nothing keeps it right, although the measured offset is fine now", FIX_NTP)
    if offset is None:
        return Verdict(VerdictCode.NTP_UNREACHABLE, "no time source configured or answering",
                       "set CLOCK_NTP_SERVERS or CLOCK_UPSTREAM_HTTP_URL")
    return Verdict(VerdictCode.OK, f"the host clock is {describe_offset(offset)} true time ({source})")
