"""gateway/runtime_views.py: the connect/QR/state bodies as pure functions of a lifecycle record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from evolink.gateway import runtime_views as views
from evolink.gateway.lifecycle import Lifecycle, LinkMode, PairingCode, Phase
from evolink.wa.events import CloseEvent, CloseReason, ConnectionState

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
FINAL = CloseEvent(CloseReason.FORBIDDEN, 403, False, "banned")
RETRY = CloseEvent(CloseReason.TIMED_OUT, None, True, "keepalive")
CODE = PairingCode("ABCD1234", "5511999", NOW - timedelta(seconds=10), NOW + timedelta(seconds=50))


def no_times() -> views.CodeTimes:
    raise AssertionError("code times read without a code shown")


def rec(**kw: object) -> Lifecycle:
    return Lifecycle(name="a", **kw)  # type: ignore[arg-type]


def test_state_body() -> None:
    assert views.state_body("a", ConnectionState.OPEN) == {"instance": {"instanceName": "a", "state": "open"}}


@pytest.mark.parametrize(("lc", "want"), [
    (rec(phase=Phase.OPEN, last_close=FINAL), None),
    (rec(phase=Phase.CONNECTING), None),
    (rec(phase=Phase.RECONNECTING, last_retry=RETRY, last_close=FINAL), "keepalive"),  # connecting: the retry
    (rec(phase=Phase.FAILED, last_retry=RETRY, last_close=FINAL), "banned"),  # closed: the final one
])
def test_last_disconnect_body(lc: Lifecycle, want: str | None) -> None:
    body = views.last_disconnect_body(lc, "socks5://***@p:1")
    assert (body and body["message"]) == want
    if body is not None:
        assert body["proxy"] == "socks5://***@p:1"
    if want == "keepalive":
        assert body == {"reason": "timed_out", "statusReason": 408, "message": "keepalive",
                        "willReconnect": True, "proxy": "socks5://***@p:1"}


@pytest.mark.parametrize(("lc", "ready"), [
    (rec(phase=Phase.OPEN), True),
    (rec(phase=Phase.FAILED, last_close=FINAL), True),
    (rec(phase=Phase.CLOSED), False),
    (rec(phase=Phase.AWAITING_QR, qr_code="q"), True),
    (rec(phase=Phase.CONNECTING), False),
    (rec(phase=Phase.CODE_ISSUED, mode=LinkMode.CODE, code=CODE), False),  # QR still rendering
    (rec(phase=Phase.CODE_ISSUED, mode=LinkMode.CODE, code=CODE, qr_code="q"), True),
    (rec(phase=Phase.AWAITING_CODE, mode=LinkMode.CODE, qr_code="q"), False),
    (rec(phase=Phase.AWAITING_CODE, mode=LinkMode.CODE, code_error="boom"), True),
])
def test_ready(lc: Lifecycle, ready: bool) -> None:
    assert views.ready(lc) is ready


def test_code_times_on_the_elapsed_clock() -> None:
    code = PairingCode("C", "1", NOW, NOW + timedelta(seconds=60), issued_elapsed=100.0, deadline_elapsed=160.0)
    stepped = NOW + timedelta(hours=1)  # the wall clock jumped; 20 s really passed
    issued, expires, left = views.code_times(code, stepped, lambda: 120.0)
    assert left == 40.0
    assert issued == stepped - timedelta(seconds=20) and expires == stepped + timedelta(seconds=40)
    assert views.code_times(None, NOW, lambda: 0.0) == (None, None, None)


def test_code_times_without_elapsed_life_uses_the_announced_instants() -> None:
    def never() -> float:
        raise AssertionError("elapsed clock read for a code without an elapsed life")

    assert views.code_times(CODE, NOW, never) == (CODE.issued_at, CODE.expires_at, 50.0)


def test_qr_body_code_mode_and_qr_mode() -> None:
    lc = rec(phase=Phase.CODE_ISSUED, mode=LinkMode.CODE, code=CODE, qr_code="q", qr_base64="data:", qr_count=2)
    body = views.qr_body(lc, lambda: (NOW, NOW + timedelta(seconds=30), 29.7))
    assert body == {"pairingCode": "ABCD1234", "code": "q", "base64": "data:", "count": 2,
                    "pairingCodeIssuedAt": "2026-12-07T08:00:00.000Z",
                    "pairingCodeExpiresAt": "2026-12-07T08:00:30.000Z", "pairingCodeExpiresIn": 29}
    # a code left over from code mode is not shown on a QR-mode connection
    assert views.qr_body(rec(phase=Phase.AWAITING_QR, code=CODE, qr_code="q", qr_count=1), no_times) == \
        {"pairingCode": None, "code": "q", "count": 1}


@pytest.mark.parametrize(("lc", "want"), [
    (rec(phase=Phase.OPEN), {"instance": {"instanceName": "a", "state": "open"}}),
    (rec(phase=Phase.FAILED, last_close=FINAL),
     {"error": True, "message": "connection closed (forbidden, 403): banned"}),
    (rec(phase=Phase.AWAITING_CODE, mode=LinkMode.CODE, code_error="server said no"),
     {"error": True, "message": "server said no"}),
    (rec(phase=Phase.AWAITING_QR, qr_code="q", qr_count=1), {"pairingCode": None, "code": "q", "count": 1}),
])
def test_connect_body_rows(lc: Lifecycle, want: dict[str, object]) -> None:
    assert views.connect_body(lc, "a", 10, no_times) == want


def test_connect_body_code_before_its_qr_and_timeouts() -> None:
    lc = rec(phase=Phase.CODE_ISSUED, mode=LinkMode.CODE, code=CODE)
    body = views.connect_body(lc, "a", 10, lambda: (None, None, None))
    assert body["pairingCode"] == "ABCD1234" and "code" not in body
    qr_timeout = views.connect_body(rec(phase=Phase.CONNECTING, last_retry=RETRY), "a", 2.5, no_times)
    assert qr_timeout["error"] is True
    assert qr_timeout["message"].startswith('No QR code within 2.5 s: the WhatsApp server has not sent pair-device '
                                            'to instance "a" yet (state connecting) (last attempt: connection '
                                            'closed (timed_out, 408): keepalive; retrying)')
    code_timeout = views.timeout_message(rec(phase=Phase.AWAITING_CODE, mode=LinkMode.CODE), "a", 10)
    assert code_timeout.startswith("No pairing code within 10 s")
