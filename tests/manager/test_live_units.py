"""Row-by-row tests of the live bus, the stream tokens and the manager's reason keys."""

from __future__ import annotations

import pytest

from evolink.gateway.console import reason_key
from evolink.gateway.live import (
    GLOBAL,
    OVERFLOW,
    QUEUE_SIZE,
    LiveBus,
    LiveEvent,
    LiveScope,
    LiveTokens,
    TokenError,
)
from evolink.gateway.runtime import QR_LIMIT_MESSAGE


def test_token_round_trip_and_scope() -> None:
    tokens = LiveTokens(b"k" * 32)
    scope = tokens.verify(tokens.issue(LiveScope("id-1", "a")))
    assert scope == LiveScope("id-1", "a") and not scope.is_global
    assert scope.allows("id-1") and not scope.allows("id-2")
    assert tokens.verify(tokens.issue(LiveScope(GLOBAL))).allows("anything")


@pytest.mark.parametrize("token, message", [
    ("", "malformed"), ("abc", "malformed"), ("YWJj.ZGVm", "invalid"), ("!!!.???", "malformed"),
])
def test_token_malformed_or_forged(token: str, message: str) -> None:
    with pytest.raises(TokenError, match=message):
        LiveTokens(b"k" * 32).verify(token)


def test_token_from_another_secret_or_expired() -> None:
    now = [1000.0]
    a = LiveTokens(b"a" * 32, ttl=60, now=lambda: now[0])
    b = LiveTokens(b"b" * 32, ttl=60, now=lambda: now[0])
    token = a.issue(LiveScope(GLOBAL))
    with pytest.raises(TokenError, match="invalid"):
        b.verify(token)
    now[0] += 59
    assert a.verify(token).is_global
    now[0] += 2
    with pytest.raises(TokenError, match="expired"):
        a.verify(token)
    # a tampered payload (scope widened) fails the signature
    _head, sig = a.issue(LiveScope("id-1")).split(".")
    forged = a.issue(LiveScope(GLOBAL)).split(".")[0] + "." + sig
    with pytest.raises(TokenError, match="invalid"):
        a.verify(forged)


def _ev(instance_id: str, n: int = 0) -> LiveEvent:
    return LiveEvent("connection.update", f"name-{instance_id}", instance_id, {"n": n}, "2026-01-01T00:00:00.000Z")


async def test_bus_scopes_and_overflow() -> None:
    bus = LiveBus()
    everyone, only_a = bus.subscribe(LiveScope(GLOBAL)), bus.subscribe(LiveScope("a"))
    bus.offer(_ev("a"))
    bus.offer(_ev("b"))
    assert [e.instance_id for e in (await everyone.next(1), await everyone.next(1))] == ["a", "b"]
    assert (await only_a.next(1)).instance_id == "a"  # type: ignore[union-attr]
    assert await only_a.next(0.01) is None  # b's event never reached it
    # a subscriber that stops reading is closed with one overflow marker, never blocks the publisher
    for n in range(QUEUE_SIZE + 5):
        bus.offer(_ev("a", n))
    assert len(bus) == 0 and only_a.closed and everyone.closed
    items = [only_a.queue.get_nowait() for _ in range(only_a.queue.qsize())]
    assert len(items) == QUEUE_SIZE + 1 and items[-1] is OVERFLOW and items[0].data == {"n": 0}
    bus.unsubscribe(only_a)  # idempotent


@pytest.mark.parametrize("reason, status, message, key", [
    ("qr_refs_ended", 408, "QR refs attempts ended", "expired"),
    ("qr_refs_ended", 428, QR_LIMIT_MESSAGE, "qr_limit"),
    ("clock", 425, "refused", "clock_refused"),
    ("certificate", 495, "bad chain", "server_refused"),
    ("timed_out", 408, "keepalive", "connection_lost"),
    ("logged_out", 401, "removed", "logged_out"),
    ("replaced", 440, "", "replaced"),
    (None, 401, None, "logged_out"),
    (None, 599, None, "server_refused"),
    (None, None, None, None),
])
def test_reason_keys(reason: str | None, status: int | None, message: str | None, key: str | None) -> None:
    assert reason_key(reason, status, message) == key


def test_last_disconnect_from_the_stored_row() -> None:
    from evolink.gateway.console import instance_view, last_disconnect
    from evolink.store.models import Instance

    row = Instance(id="i1", name="a", token="T", connection_status="close", owner_jid="15550001111@s.whatsapp.net",
                   disconnection_reason_code=401, disconnection_object='{"reason": "logged_out", "by": "api"}')
    assert last_disconnect(row, None) == {"reason": "logged_out", "code": 401, "message": None, "at": None}
    row.disconnection_object = "not json"
    row.disconnection_reason_code = 503
    assert last_disconnect(row, None)["reason"] == "connection_lost"  # type: ignore[index]
    view = instance_view(row, None, qrcode_limit=30, phone_client="Evolution API", phone_name="Chrome")
    assert view["state"] == "close" and view["mode"] == "qr" and view["browser"] == "Chrome on Evolution API"
    assert view["pairing"] is None and view["ownerJid"] == "15550001111@s.whatsapp.net"
    row.disconnection_reason_code = None
    assert last_disconnect(row, None) is None
