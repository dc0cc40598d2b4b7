"""Keepalive schedule: a ``w:p`` ping every [min, max) seconds; dead after ``dead_after`` s of silence.

Any frame from the server counts as a sign of life (as in Baileys), so an answered ping, a
notification or a pong all push the deadline. The decision logic is pure (monotonic seconds in,
action out); the engine runs it in one task per connection.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum


class Action(Enum):
    PING = "ping"
    DEAD = "dead"


@dataclass(slots=True)
class KeepaliveSchedule:
    min_interval: float
    max_interval: float
    dead_after: float
    last_received: float
    next_ping: float = 0.0
    rng: random.Random | None = None

    def __post_init__(self) -> None:
        self.next_ping = self.last_received + self._interval()

    def _interval(self) -> float:
        # Jitter keeps thousands of engines that connected together from pinging together.
        rng = self.rng or random
        return rng.uniform(self.min_interval, self.max_interval)

    def received(self, now: float) -> None:
        self.last_received = max(self.last_received, now)

    @property
    def deadline(self) -> float:
        return self.last_received + self.dead_after

    def wake_at(self) -> float:
        """When the keepalive task next needs to look (next ping or the death deadline)."""
        return min(self.next_ping, self.deadline)

    def due(self, now: float) -> Action | None:
        """What to do at ``now``: DEAD once silent for ``dead_after``; PING when the interval is up."""
        if now >= self.deadline:
            return Action.DEAD
        if now >= self.next_ping:
            self.next_ping = now + self._interval()
            return Action.PING
        return None
