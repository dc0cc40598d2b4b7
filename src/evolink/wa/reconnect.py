"""Reconnect policy: exponential backoff with full jitter (tenacity's wait_random_exponential).

Full jitter spreads thousands of engines that lost the same server over the whole window instead of
making them retry in lock-step (the "reconnect storm"). The attempt counter resets only when a link
that reached ``open`` stayed up for ``stable_after`` seconds: a login the server (or a flaky network)
cuts right after ``open`` is a failure like any other, otherwise every such open would restart the
backoff at ``base`` and the engine would reconnect about once a second, the pattern WhatsApp bans
numbers for. 515 restarts skip the wait entirely (bounded by the engine).

Times are plain monotonic seconds passed in by the caller, so the policy is a pure transition table.
"""

from __future__ import annotations

from tenacity import RetryCallState, Retrying, wait_random_exponential


class ReconnectPolicy:
    def __init__(self, base: float = 1.0, cap: float = 60.0, max_attempts: int | None = None,
                 stable_after: float = 60.0) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
        if stable_after < 0:
            raise ValueError("need stable_after >= 0")
        self.stable_after = stable_after
        self._opened_at: float | None = None
        self.base = base
        self.cap = cap
        self.max_attempts = max_attempts
        self._wait = wait_random_exponential(multiplier=base, max=cap)
        self._state = RetryCallState(Retrying(), None, (), {})
        self.failures = 0

    def ceiling(self, failures: int) -> float:
        """Upper bound of the delay after ``failures`` consecutive failures (before jitter)."""
        return float(min(self.cap, self.base * 2.0 ** max(failures - 1, 0)))

    def next_delay(self) -> float:
        """Record one more failure and return how long to wait before the next attempt."""
        self.failures += 1
        self._state.attempt_number = self.failures
        return float(self._wait(self._state))

    @property
    def exhausted(self) -> bool:
        return self.max_attempts is not None and self.failures >= self.max_attempts

    def opened(self, at: float) -> None:
        """The link reached ``open`` at monotonic time ``at``."""
        self._opened_at = at

    def closed(self, at: float) -> bool:
        """The link ended at ``at``; resets the counter (and returns True) if it had been stable."""
        opened, self._opened_at = self._opened_at, None
        if opened is not None and at - opened >= self.stable_after:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        self.failures = 0
        self._opened_at = None
