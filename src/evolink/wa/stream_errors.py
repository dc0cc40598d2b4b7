"""Map what the server says when it ends a stream (stream:error, failure, remote close) to a decision.

Pure functions over codes and child tags, so the policy is unit-testable without a socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from evolink.wa.config import VERSION_VARIABLE, format_version
from evolink.wa.events import CloseReason


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Why a connection ended and what the engine does next."""

    reason: CloseReason
    code: int | None
    message: str
    will_reconnect: bool
    immediate: bool = False  # reconnect without backoff (515 restart)
    wipe_creds: bool = False  # logged out: the device no longer exists upstream

    @property
    def logged_out(self) -> bool:
        return self.reason is CloseReason.LOGGED_OUT


def _backoff(reason: CloseReason, code: int | None, message: str) -> Disconnect:
    return Disconnect(reason, code, message, will_reconnect=True)


def _final(reason: CloseReason, code: int | None, message: str, *, wipe: bool = False) -> Disconnect:
    return Disconnect(reason, code, message, will_reconnect=False, wipe_creds=wipe)


def for_code(code: int | None, message: str = "") -> Disconnect:
    """Decision for a numeric close code (stream:error code, failure reason, Baileys-style status)."""
    if code == 515:
        return Disconnect(CloseReason.RESTART_REQUIRED, 515, message or "restart required",
                          will_reconnect=True, immediate=True)
    if code == 401:
        return _final(CloseReason.LOGGED_OUT, 401, message or "logged out", wipe=True)
    if code == 403:
        return _final(CloseReason.FORBIDDEN, 403, message or "forbidden")
    if code == 440:
        return _final(CloseReason.REPLACED, 440, message or "connection replaced by another session")
    if code == 408:
        return _backoff(CloseReason.TIMED_OUT, 408, message or "timed out")
    if code == 428:
        return _backoff(CloseReason.CONNECTION_CLOSED, 428, message or "connection closed")
    if code == 503:
        return _backoff(CloseReason.UNAVAILABLE, 503, message or "service unavailable")
    # 500 and anything unknown: the session may be bad, but retrying with backoff is safe.
    return _backoff(CloseReason.BAD_SESSION, code if code is not None else 500, message or "stream error")


def _int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def from_stream_error(code: str | None, conflict_type: str | None, child_tags: list[str]) -> Disconnect:
    """``<stream:error code=..><conflict type=../></stream:error>`` → decision.

    An explicit code wins (as in both reference clients), except that ``device_removed`` always means
    logged out and a bare ``conflict`` means replaced (440).
    """
    numeric = _int(code)
    if conflict_type == "device_removed":
        return for_code(401, "device removed")
    if numeric is not None:
        detail = f"stream error {numeric}" + (f" ({conflict_type})" if conflict_type else "")
        return for_code(numeric, detail if numeric not in (515, 401) else "")
    if conflict_type is not None or "conflict" in child_tags:
        return for_code(440, f"conflict: {conflict_type or 'replaced'}")
    if "xml-not-well-formed" in child_tags:
        return _backoff(CloseReason.PROTOCOL, 500, "server reported a malformed stanza")
    return for_code(500, "stream error without code" + (f" ({', '.join(child_tags)})" if child_tags else ""))


def outdated_message(version: tuple[int, int, int] | None) -> str:
    """What a `failure 405` tells the operator: the one variable that fixes it."""
    shown = f" {format_version(version)}" if version is not None else ""
    return (f"WhatsApp refused this WA Web version{shown} (failure 405: retired); set {VERSION_VARIABLE} "
            "to the current WA Web version (e.g. the one a fresh web.whatsapp.com session announces) "
            "and connect again")


def from_failure(reason: str | None, message: str | None = None,
                 version: tuple[int, int, int] | None = None) -> Disconnect:
    """``<failure reason=N/>`` in answer to a login payload (`version`: what the client announced)."""
    numeric = _int(reason)
    text = message or f"login failure {reason}"
    if numeric in (401, 406):
        return _final(CloseReason.LOGGED_OUT, numeric, text, wipe=True)
    if numeric == 402:
        return _final(CloseReason.FORBIDDEN, 402, f"temporarily banned: {text}")
    if numeric == 405:
        return _final(CloseReason.CLIENT_OUTDATED, 405, outdated_message(version))
    return for_code(numeric if numeric is not None else 500, text)


def remote_closed() -> Disconnect:
    return for_code(428, "connection closed by the server")
