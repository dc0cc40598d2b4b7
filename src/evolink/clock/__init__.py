"""Clock guard: measure, diagnose and act on host clock and timezone faults.

Every part of evolink asks ``evolink.clock.base`` for the time it emits or checks (webhook
``date_time``, pairing-code expiry, audit timestamps, certificate validity in the engine).
"""

from evolink.clock.base import Clock, CorrectedClock, SystemClock, UpstreamSample

__all__ = ["Clock", "CorrectedClock", "SystemClock", "UpstreamSample"]
