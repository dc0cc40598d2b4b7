"""Clock guard: measure, diagnose and act on host clock and timezone faults.

Every part of evolink asks ``evolink.clock.base`` for the time it emits or checks (webhook
``date_time``, pairing-code expiry, audit timestamps, certificate validity in the engine).
``ClockGuard`` (``evolink.clock.guard``) measures the true offset (SNTP majority, upstream ``Date``,
engine-fed server time), diagnoses faults and feeds the ``CorrectedClock``; ``decide_link``
(``evolink.clock.policy``) is the pre-link gate.
"""

from evolink.clock.base import Clock, CorrectedClock, SystemClock, UpstreamSample
from evolink.clock.config import ClockConfig, ClockConfigError, NtpServer, SkewPolicy
from evolink.clock.guard import ClockGuard
from evolink.clock.policy import LinkDecision, decide_link
from evolink.clock.status import ClockStatus
from evolink.clock.verdict import Verdict, VerdictCode

__all__ = [
    "Clock",
    "ClockConfig",
    "ClockConfigError",
    "ClockGuard",
    "ClockStatus",
    "CorrectedClock",
    "LinkDecision",
    "NtpServer",
    "SkewPolicy",
    "SystemClock",
    "UpstreamSample",
    "Verdict",
    "VerdictCode",
    "decide_link",
]
