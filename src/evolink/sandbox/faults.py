"""Injectable faults for reliability tests (``PUT /admin/faults``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from evolink.sandbox.errors import AdminError

FIELDS = ("latency_ms", "drop_after_frames", "companion_hello_error")


@dataclass(frozen=True, slots=True)
class IqError:
    """An ``<error code=… text=…/>`` the server answers with instead of the normal result."""

    code: int
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "text": self.text}

    @classmethod
    def from_json(cls, field: str, body: object) -> IqError:
        if isinstance(body, IqError):
            return body
        if not isinstance(body, dict) or set(body) != {"code", "text"}:
            raise AdminError(400, "invalid_faults", f'{field} must be null or {{"code": int, "text": str}}')
        code, text = body["code"], body["text"]
        if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599:
            raise AdminError(400, "invalid_faults", f"{field}.code must be an integer in 400..599")
        if not isinstance(text, str) or not 0 < len(text) <= 100 or not text.isprintable():
            raise AdminError(400, "invalid_faults", f"{field}.text must be 1..100 printable characters")
        return cls(code, text)


@dataclass(slots=True)
class Faults:
    # Delay added before every frame the server sends (not before the frames of a closing socket).
    latency_ms: int = 0
    # When set, each connection is dropped abruptly (TCP abort, no close frame) once the server
    # has sent this many frames on it. Counts from the connection's start.
    drop_after_frames: int | None = None
    # When set, every companion_hello (pairing-code request) is answered with this iq error.
    companion_hello_error: IqError | None = None

    def to_json(self) -> dict[str, Any]:
        hello = self.companion_hello_error
        return {
            "latency_ms": self.latency_ms,
            "drop_after_frames": self.drop_after_frames,
            "companion_hello_error": None if hello is None else hello.to_json(),
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Faults:
        if not isinstance(body, dict):
            raise AdminError(400, "invalid_faults", "body must be a JSON object")
        unknown = set(body) - set(FIELDS)
        if unknown:
            raise AdminError(400, "invalid_faults", f"unknown fields: {sorted(unknown)}")
        latency = body.get("latency_ms", 0)
        drop = body.get("drop_after_frames")
        hello = body.get("companion_hello_error")
        if not isinstance(latency, int) or isinstance(latency, bool) or not 0 <= latency <= 60_000:
            raise AdminError(400, "invalid_faults", "latency_ms must be an integer in 0..60000")
        if drop is not None and (not isinstance(drop, int) or isinstance(drop, bool) or drop < 0):
            raise AdminError(400, "invalid_faults", "drop_after_frames must be null or an integer >= 0")
        return cls(
            latency_ms=latency,
            drop_after_frames=drop,
            companion_hello_error=None if hello is None else IqError.from_json("companion_hello_error", hello),
        )
