"""Values the client returns: parsed `connect` answers, pairing codes, QR codes, a linked result."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ConnectAnswer:
    """Evolution's `GET /instance/connect` body, classified. `kind`: open | code | qr | error | empty."""

    kind: str
    raw: dict[str, Any]

    @classmethod
    def parse(cls, body: Any) -> ConnectAnswer:
        if not isinstance(body, dict):
            return cls("error", {"error": True, "message": f"unexpected answer: {body!r}"})
        if isinstance(body.get("instance"), dict) and body["instance"].get("state") == "open":
            return cls("open", body)
        if body.get("error"):
            return cls("error", body)
        if body.get("pairingCode"):
            return cls("code", body)
        if body.get("code"):
            return cls("qr", body)
        return cls("empty", body)  # Evolution's `{"count": 0}`: nothing yet

    @property
    def message(self) -> str:
        return str(self.raw.get("message") or "")

    @property
    def pairing_code(self) -> str | None:
        code = self.raw.get("pairingCode")
        return code if isinstance(code, str) and code else None

    @property
    def qr(self) -> str | None:
        code = self.raw.get("code")
        return code if isinstance(code, str) and code else None


@dataclass(frozen=True, slots=True)
class PairingCode:
    """A server-confirmed pairing code. `expires_in` is seconds from when it was received."""

    code: str
    number: str
    expires_at: datetime | None
    expires_in: float | None
    attempt: int  # 1 for the first code, 2 for the first new one …

    @property
    def grouped(self) -> str:
        """`ABCD-EFGH`, as the phone shows and expects it."""
        c = self.code.replace("-", "").upper()
        return f"{c[:4]}-{c[4:]}" if len(c) == 8 else c


@dataclass(frozen=True, slots=True)
class QrCode:
    """A QR to show: `code` is what it encodes, `base64` the PNG data URL, `count` the QR number."""

    code: str
    base64: str | None
    count: int
    attempt: int


@dataclass(frozen=True, slots=True)
class Linked:
    instance: str
    owner_jid: str | None
    profile_name: str | None
    seconds: float  # from the first request to `open`
    codes: int  # pairing codes (or QR series) used

    @property
    def number(self) -> str | None:
        if not self.owner_jid:
            return None
        return "+" + self.owner_jid.split("@", 1)[0].split(":", 1)[0]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry n (n >= 1): min(initial·factor^(n-1), maximum) ± jitter (a fraction)."""

    initial: float = 2.0
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.2

    def delay(self, n: int, rand: float | None = None) -> float:
        base = min(self.initial * self.factor ** max(0, n - 1), self.maximum)
        r = random.random() if rand is None else rand
        return max(0.0, base * (1 + self.jitter * (2 * r - 1)))
