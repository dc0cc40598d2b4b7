"""Link policy: may a device be linked (QR or code) given what we know about the clock?

``decide_link`` is pure (the guard logs and counts each decision). Policies
(``CLOCK_SKEW_POLICY``):

- ``compensate`` (default): link on corrected time whenever the offset is known from an NTP
  majority; refuse only when NTP cannot tell us and the upstream's own time disagrees with the host
  by more than ``CLOCK_MAX_SKEW_SECONDS``.
- ``refuse``: refuse when |offset| > max, when the clock looks set to local time, or when the offset
  cannot be known at all.
- ``warn``: never refuse; the message still says what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from evolink.clock.config import SkewPolicy
from evolink.clock.status import ClockStatus
from evolink.clock.verdict import FIX_NTP, VerdictCode, describe_offset


@dataclass(frozen=True, slots=True)
class LinkDecision:
    allowed: bool
    message: str
    clock: dict[str, object] = field(default_factory=dict)
    reason: str = "ok"  # machine-readable: ok | compensated | skew_exceeds_max | local_time_rtc |
    #                     offset_unknown | upstream_disagrees | warn_only
    policy: SkewPolicy = SkewPolicy.COMPENSATE


def _refusal(status: ClockStatus, policy: SkewPolicy, why: str) -> str:
    v = status.verdict
    if status.offset is not None:
        unc = f" ± {status.uncertainty:.2g}" if status.uncertainty is not None else ""
        where = (f"the host clock is {describe_offset(status.offset)} true time "
                 f"(offset {status.offset:+.3f} s{unc}, from {status.source})")
    else:
        where = "the host clock offset cannot be measured"
    fix = v.fix or FIX_NTP
    return (f"Linking refused by the clock guard (CLOCK_SKEW_POLICY={policy}): {why}; {where}. "
            f"Sources: {status.describe_sources()}. Diagnosis: {v.code} — {v.reason}. Fix: {fix}.")


def decide_link(status: ClockStatus | None, policy: SkewPolicy, max_skew: float) -> LinkDecision:
    """Pure decision; ``clock`` is the object the gateway adds to the Evolution error body."""
    if status is None:
        clock: dict[str, object] = {"verdict": None, "policy": str(policy), "maxSkewSeconds": max_skew}
        if policy is SkewPolicy.REFUSE:
            return LinkDecision(False, "Linking refused by the clock guard (CLOCK_SKEW_POLICY=refuse): "
                                "the clock has not been measured yet; retry in a few seconds.",
                                {**clock, "allowed": False}, "offset_unknown", policy)
        return LinkDecision(True, "clock not measured yet; linking on host time", {**clock, "allowed": True},
                            "offset_unknown" if policy is SkewPolicy.COMPENSATE else "warn_only", policy)
    base = {**status.summary(), "policy": str(policy), "maxSkewSeconds": max_skew}
    offset = status.offset
    exceeds = offset is not None and abs(offset) > max_skew
    rtc = status.verdict.code is VerdictCode.LOCAL_TIME_RTC

    def allow(reason: str, message: str) -> LinkDecision:
        return LinkDecision(True, message, {**base, "allowed": True}, reason, policy)

    def refuse(reason: str, why: str) -> LinkDecision:
        return LinkDecision(False, _refusal(status, policy, why), {**base, "allowed": False}, reason, policy)

    if policy is SkewPolicy.REFUSE:
        if offset is None:
            return refuse("offset_unknown", "the clock offset cannot be known")
        if rtc:
            return refuse("local_time_rtc", "the host clock appears to be set to local time")
        if exceeds:
            return refuse("skew_exceeds_max", f"|offset| exceeds CLOCK_MAX_SKEW_SECONDS={max_skew:g}")
        return allow("ok", f"clock within {max_skew:g} s ({status.verdict.code})")
    if policy is SkewPolicy.COMPENSATE:
        if status.trusted and offset is not None:
            if exceeds or rtc or abs(offset) > 1.0:
                return allow("compensated", f"linking on corrected time: {status.verdict.reason}")
            return allow("ok", f"clock ok ({status.verdict.code})")
        if offset is not None and exceeds:
            return refuse("upstream_disagrees",
                          f"no NTP majority to correct from, and the host disagrees with {status.source} "
                          f"by more than CLOCK_MAX_SKEW_SECONDS={max_skew:g}")
        if offset is not None:
            return allow("compensated" if abs(offset) > 1.0 else "ok",
                         f"no NTP majority; {status.source} agrees within {max_skew:g} s")
        return allow("offset_unknown", f"clock offset unknown ({status.verdict.reason}); linking on host time")
    # warn
    if exceeds or rtc or offset is None:
        return allow("warn_only", f"clock problem ignored (CLOCK_SKEW_POLICY=warn): {status.verdict.reason}")
    return allow("ok", f"clock ok ({status.verdict.code})")
