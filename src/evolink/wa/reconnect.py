"""Reconnect policy: exponential backoff with full jitter (tenacity's wait_random_exponential).

Full jitter spreads thousands of engines that lost the same server over the whole window instead of
making them retry in lock-step (the "reconnect storm"). The attempt counter resets when a connection
reaches ``open``; 515 restarts skip the wait entirely.
"""

from __future__ import annotations

from tenacity import RetryCallState, Retrying, wait_random_exponential


class ReconnectPolicy:
    def __init__(self, base: float = 1.0, cap: float = 60.0, max_attempts: int | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError("need 0 < base <= cap")
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

    def reset(self) -> None:
        self.failures = 0
