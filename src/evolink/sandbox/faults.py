"""Injectable faults for reliability tests (``PUT /admin/faults``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from evolink.sandbox.errors import AdminError


@dataclass(slots=True)
class Faults:
    # Delay added before every frame the server sends.
    latency_ms: int = 0
    # When set, each connection is dropped abruptly (TCP abort, no close frame) once the server
    # has sent this many frames on it. Counts from the connection's start.
    drop_after_frames: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Faults:
        latency = body.get("latency_ms", 0)
        drop = body.get("drop_after_frames")
        if not isinstance(latency, int) or isinstance(latency, bool) or not 0 <= latency <= 60_000:
            raise AdminError(400, "invalid_faults", "latency_ms must be an integer in 0..60000")
        if drop is not None and (not isinstance(drop, int) or isinstance(drop, bool) or drop < 0):
            raise AdminError(400, "invalid_faults", "drop_after_frames must be null or an integer >= 0")
        unknown = set(body) - {"latency_ms", "drop_after_frames"}
        if unknown:
            raise AdminError(400, "invalid_faults", f"unknown fields: {sorted(unknown)}")
        return cls(latency_ms=latency, drop_after_frames=drop)
