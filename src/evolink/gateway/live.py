"""Live events for the web manager: an in-process fan-out of the gateway's events, and the short-lived
signed tokens that open a Server-Sent Events stream.

Every event the `EventPublisher` publishes (the same `connection.update`, `qrcode.updated` … that go
to webhooks) is also offered to `LiveBus` subscribers. A subscriber is a bounded queue scoped to all
instances (global key) or to one instance id (instance token). Publishing never blocks the linking
path: a subscriber that does not keep up is closed with an `overflow` marker, so the page knows it
missed something and reloads its state instead of silently showing a stale one.

Browsers' `EventSource` cannot send the `apikey` header, and an API key in a URL ends up in logs and
history. So the page first makes an authenticated POST and receives a `LiveToken`: an HMAC-SHA256
signed `{scope, exp}` with a per-process secret, valid for `TOKEN_TTL` seconds, accepted only to open
a stream. A restart invalidates all tokens (the page asks for a new one when its stream drops).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("evolink.gateway.live")

TOKEN_TTL = 60.0  # seconds a stream token may be used to open a stream
QUEUE_SIZE = 256  # events buffered per subscriber before it is closed with `overflow`
GLOBAL = "*"


class TokenError(ValueError):
    """A stream token is malformed, forged or expired; the message says which."""


@dataclass(frozen=True, slots=True)
class LiveScope:
    """What a stream may see: every instance (`instance_id` = "*") or one instance."""

    instance_id: str
    instance_name: str | None = None

    @property
    def is_global(self) -> bool:
        return self.instance_id == GLOBAL

    def allows(self, instance_id: str) -> bool:
        return self.is_global or self.instance_id == instance_id


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


class LiveTokens:
    """Issues and checks stream tokens `<payload>.<signature>` (both base64url)."""

    def __init__(self, secret: bytes | None = None, *, ttl: float = TOKEN_TTL,
                 now: Callable[[], float] = time.time) -> None:
        self._secret = secret or os.urandom(32)
        self.ttl = ttl
        self._now = now

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def issue(self, scope: LiveScope) -> str:
        payload = json.dumps({"i": scope.instance_id, "n": scope.instance_name,
                              "exp": round(self._now() + self.ttl, 3)}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def verify(self, token: str) -> LiveScope:
        head, dot, sig = token.partition(".")
        if not dot or not head or not sig:
            raise TokenError("malformed stream token")
        try:
            payload, signature = _unb64(head), _unb64(sig)
        except (ValueError, TypeError):  # binascii.Error is a ValueError
            raise TokenError("malformed stream token") from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise TokenError("invalid stream token (forged, or issued before a restart)")
        try:
            claims = json.loads(payload)
            instance_id, name, exp = str(claims["i"]), claims.get("n"), float(claims["exp"])
        except (ValueError, KeyError, TypeError):
            raise TokenError("malformed stream token") from None
        if self._now() > exp:
            raise TokenError("stream token expired: request a new one")
        return LiveScope(instance_id, name if isinstance(name, str) else None)


@dataclass(slots=True)
class LiveEvent:
    event: str
    instance: str
    instance_id: str
    data: Any
    date_time: str

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "instance": self.instance, "data": self.data, "date_time": self.date_time}


OVERFLOW = LiveEvent("overflow", "", "", None, "")  # queued last when a subscriber fell behind


@dataclass(eq=False, slots=True)
class Subscription:
    scope: LiveScope
    queue: asyncio.Queue[LiveEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE + 1))
    closed: bool = False

    async def next(self, within: float) -> LiveEvent | None:
        """The next event, or None after `within` seconds without one (time for a keep-alive)."""
        try:
            return await asyncio.wait_for(self.queue.get(), within)
        except TimeoutError:
            return None


class LiveBus:
    """Fan-out of published events to live subscribers; `offer` never blocks."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    def __len__(self) -> int:
        return len(self._subs)

    def subscribe(self, scope: LiveScope) -> Subscription:
        sub = Subscription(scope)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def offer(self, event: LiveEvent) -> None:
        for sub in list(self._subs):
            if sub.closed or not sub.scope.allows(event.instance_id):
                continue
            if sub.queue.qsize() >= QUEUE_SIZE:
                sub.closed = True  # tell it once, then drop it: the page reloads its state
                sub.queue.put_nowait(OVERFLOW)
                self._subs.discard(sub)
                log.warning("live subscriber fell behind; closed", extra={"scope": sub.scope.instance_id})
                continue
            sub.queue.put_nowait(event)
