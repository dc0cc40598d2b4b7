"""Read-only views of an instance's lifecycle record: the API bodies and messages built from it.

Pure functions over `Lifecycle` (gateway/lifecycle.py) plus the few facts the record does not hold
(instance name, connect wait, the proxy in use, the clocks' readings), passed in by the caller
(`gateway/runtime.py`). Nothing here changes state or does I/O, so every body can be tested from a
record alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from evolink.clock.base import iso_utc
from evolink.gateway.lifecycle import Lifecycle, LinkMode, PairingCode, status_code
from evolink.wa.events import CloseEvent, ConnectionState

__all__ = ["CodeTimes", "QrObject", "close_message", "code_times", "connect_body", "last_disconnect_body",
           "qr_body", "qr_object", "ready", "state_body", "timeout_message"]

CodeTimes = tuple[datetime | None, datetime | None, float | None]


@dataclass(slots=True)
class QrObject:
    """A read-only view of the QR/code part of the lifecycle (what the API and the console show)."""

    count: int = 0
    code: str | None = None
    base64: str | None = None
    pairing_code: str | None = None
    code_issued_at: datetime | None = None  # as announced (corrected clock at issue)
    code_expires_at: datetime | None = None
    # The code's life on the elapsed clock (never stepped): what the API reports is derived from these.
    code_issued_elapsed: float | None = None
    code_deadline_elapsed: float | None = None


def qr_object(lc: Lifecycle) -> QrObject:
    code = lc.code
    if code is None:
        return QrObject(lc.qr_count, lc.qr_code, lc.qr_base64)
    return QrObject(lc.qr_count, lc.qr_code, lc.qr_base64, code.code, code.issued_at, code.expires_at,
                    code.issued_elapsed, code.deadline_elapsed)


def state_body(name: str, state: ConnectionState) -> dict[str, Any]:
    """Evolution's `connectionState` body."""
    return {"instance": {"instanceName": name, "state": state}}


def close_message(ev: CloseEvent) -> str:
    return f"connection closed ({ev.reason.value}, {status_code(ev)}): {ev.message}"


def last_disconnect_body(lc: Lifecycle, proxy_shown: str | None) -> dict[str, Any] | None:
    """Why a not-open instance is not open: the close the engine is retrying after while connecting
    (e.g. a proxy that refuses), else the final one; None when open or when there is nothing to say."""
    if lc.state is ConnectionState.OPEN:
        return None
    ev = lc.last_retry if lc.state is ConnectionState.CONNECTING else lc.last_close
    if ev is None:
        return None
    return {"reason": ev.reason.value, "statusReason": status_code(ev), "message": ev.message,
            "willReconnect": ev.will_reconnect, "proxy": proxy_shown}


def code_times(code: PairingCode | None, now: datetime, elapsed: Callable[[], float]) -> CodeTimes:
    """(issued at, expires at, seconds left) of the pending code, given the corrected clock `now`;
    `elapsed` (the never-stepped clock) is read right after, only for a code that carries its life.

    The code's life is kept on the elapsed clock, so a wall-clock step neither shortens nor
    lengthens it; the instants are re-derived from the current corrected time, so after a step
    (once the guard has corrected the clock) they are the same true instants as before it."""
    if code is None:
        return None, None, None
    if code.deadline_elapsed is None or code.issued_elapsed is None:
        return code.issued_at, code.expires_at, (code.expires_at - now).total_seconds()
    at = elapsed()
    left = code.deadline_elapsed - at
    return (now - timedelta(seconds=at - code.issued_elapsed), now + timedelta(seconds=left), left)


def qr_body(lc: Lifecycle, times: Callable[[], CodeTimes]) -> dict[str, Any]:
    """Evolution's QR body (`pairingCode`, `code`, `base64`, `count`), plus the code's issue/expiry
    when a code is pending in code mode (additive). `times` is read only when a code is shown."""
    code = lc.code.code if lc.code is not None and lc.mode is LinkMode.CODE else None
    body: dict[str, Any] = {"pairingCode": code}
    if lc.qr_code is not None:
        body["code"] = lc.qr_code
    if lc.qr_base64 is not None:
        body["base64"] = lc.qr_base64
    body["count"] = lc.qr_count
    if code is not None:
        issued, expires, left = times()
        body["pairingCodeIssuedAt"] = iso_utc(issued)
        body["pairingCodeExpiresAt"] = iso_utc(expires)
        body["pairingCodeExpiresIn"] = None if left is None else max(0, int(left))
    return body


def ready(lc: Lifecycle) -> bool:
    """Has `connect` something to answer with (open, a close, the QR, or in code mode the code and QR
    or the code's failure)?"""
    if lc.state is ConnectionState.OPEN or (lc.state is ConnectionState.CLOSE and lc.last_close is not None):
        return True
    if lc.mode is LinkMode.CODE:
        # The code is confirmed after pair-device, whose QR may still be rendering: wait for both.
        return (lc.code is not None and lc.qr_code is not None) or lc.code_error is not None
    return lc.qr_code is not None


def timeout_message(lc: Lifecycle, name: str, connect_wait: float) -> str:
    """What `connect` says when nothing arrived within its wait, naming the last close if any."""
    wait = f"{connect_wait:g} s"
    detail = ""
    if lc.last_close:
        detail = f" (last close: {close_message(lc.last_close)})"
    elif lc.last_retry:
        detail = f" (last attempt: {close_message(lc.last_retry)}; retrying)"
    if lc.mode is LinkMode.CODE:
        return (f"No pairing code within {wait}: the WhatsApp server has not confirmed the code request for "
                f"instance \"{name}\" yet (state {lc.state}){detail}; call connect again to get it")
    return (f"No QR code within {wait}: the WhatsApp server has not sent pair-device to instance "
            f"\"{name}\" yet (state {lc.state}){detail}; call connect again to get it")


def connect_body(lc: Lifecycle, name: str, connect_wait: float, times: Callable[[], CodeTimes]) -> dict[str, Any]:
    """Evolution's `GET /instance/connect` body for the record as it is now (always HTTP 200): the
    state when open, an error naming the cause (final close, failed code request, timeout), else the
    QR body. In code mode a confirmed code is answered even if its QR image has not rendered yet."""
    if lc.state is ConnectionState.OPEN:
        return state_body(name, lc.state)
    final = lc.last_close
    if lc.state is ConnectionState.CLOSE and final is not None and not final.will_reconnect \
            and lc.qr_code is None:
        # a final close (e.g. 405, retired WA Web version) says what to fix; a code request only
        # saw that the engine stopped
        return {"error": True, "message": close_message(final)}
    if lc.mode is LinkMode.CODE and lc.code is None and lc.code_error:
        return {"error": True, "message": lc.code_error}
    if not ready(lc):
        if lc.mode is LinkMode.CODE and lc.code is not None:
            return qr_body(lc, times)  # the code is what matters; the QR image follows by webhook
        return {"error": True, "message": timeout_message(lc, name, connect_wait)}
    if lc.state is ConnectionState.CLOSE and lc.last_close is not None and lc.qr_code is None:
        return {"error": True, "message": close_message(lc.last_close)}
    return qr_body(lc, times)
