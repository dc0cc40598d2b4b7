"""What the web manager shows about an instance: its state, the active QR/code, why the last link
failed (as a reason key the page words in the user's language), and the pairing history.

Pure views over the runtime and the stored rows; the route only fetches and serialises them.
Reason keys: `expired` (the code/QR ran out before it was used), `qr_limit` (QRCODE_LIMIT reached),
`clock_refused`, `server_refused` (the server closed or refused the link: 403, 500, certificate…),
`connection_lost` (the socket dropped: network, server unavailable), `logged_out` (the phone removed
the device or the API logged out), `replaced` (another session took over). A wrong code typed on the
phone is seen only by the phone (the sandbox/WhatsApp answers it there, the companion's socket stays
usable), so the page words that case as a hint next to every code instead of a detected reason.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from evolink.clock.base import iso_utc
from evolink.clock.guard import ClockGuard
from evolink.clock.policy import decide_link
from evolink.gateway.runtime import QR_LIMIT_MESSAGE, InstanceRuntime
from evolink.store.models import Instance, PairingAttempt

REASONS: dict[str, str] = {
    "qr_refs_ended": "expired", "timed_out": "connection_lost", "connection_closed": "connection_lost",
    "unavailable": "connection_lost", "connect_failed": "connection_lost", "closed_by_user": "connection_lost",
    "forbidden": "server_refused", "bad_session": "server_refused", "protocol": "server_refused",
    "certificate": "server_refused", "client_outdated": "server_refused", "clock": "clock_refused",
    "logged_out": "logged_out", "replaced": "replaced",
}
_STATUS_REASONS: dict[int, str] = {401: "logged_out", 403: "server_refused", 408: "expired", 425: "clock_refused",
                                   428: "connection_lost", 440: "replaced", 495: "server_refused",
                                   500: "server_refused", 503: "connection_lost"}


def reason_key(reason: str | None, status: int | None = None, message: str | None = None) -> str | None:
    """The manager's reason key for an engine close reason (or, for rows stored without one, the status)."""
    if message == QR_LIMIT_MESSAGE:
        return "qr_limit"
    if reason is not None and reason in REASONS:
        return REASONS[reason]
    if status is not None:
        return _STATUS_REASONS.get(status, "server_refused")
    return None


def _iso(value: datetime | None) -> str | None:
    return iso_utc(value) if value is not None else None


def last_disconnect(row: Instance, rt: InstanceRuntime | None) -> dict[str, Any] | None:
    """The last close: from the live runtime when it has one, else the stored disconnection columns."""
    if rt is not None and rt.last_close is not None:
        ev = rt.last_close
        return {"reason": reason_key(ev.reason.value, ev.code, ev.message), "code": ev.code,
                "message": ev.message, "at": None}
    if row.disconnection_reason_code is None:
        return None
    detail: dict[str, Any] = {}
    if row.disconnection_object:
        try:
            loaded = json.loads(row.disconnection_object)
            detail = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            detail = {}
    reason = detail.get("reason") if isinstance(detail.get("reason"), str) else None
    message = detail.get("message") if isinstance(detail.get("message"), str) else None
    return {"reason": reason_key(reason, row.disconnection_reason_code, message),
            "code": row.disconnection_reason_code, "message": message, "at": _iso(row.disconnection_at)}


def linked_browser(mode: str, phone_client: str, phone_name: str) -> str:
    """The name the phone lists under Linked devices (see `engine_factory`: code mode keeps Chrome/Mac OS)."""
    return "Chrome on Mac OS" if mode == "code" else f"{phone_name} on {phone_client}"


def instance_view(row: Instance, rt: InstanceRuntime | None, *, qrcode_limit: int, phone_client: str,
                  phone_name: str, attempts: list[PairingAttempt] | None = None) -> dict[str, Any]:
    state = rt.state if rt is not None else row.connection_status
    mode = rt.mode if rt is not None else "qr"
    view: dict[str, Any] = {
        "name": row.name, "id": row.id, "state": state,
        "ownerJid": rt.wuid if rt is not None and rt.wuid else row.owner_jid,  # the row is written just after
        "profileName": rt.profile_name if rt is not None and rt.profile_name else row.profile_name, "number": row.number, "mode": mode,
        "qrCount": rt.qr.count if rt is not None else 0, "qrLimit": qrcode_limit,
        "lastDisconnect": last_disconnect(row, rt),
        "browser": linked_browser(mode, phone_client, phone_name),
        "pairing": None, "lastSuccessSeconds": None,
    }
    if rt is not None and state != "open" and (rt.qr.code is not None or rt.qr.pairing_code is not None):
        issued, expires, _left = rt.code_times()  # the code's life on the elapsed clock (a wall step moves neither)
        view["pairing"] = {
            "pairingCode": rt.qr.pairing_code if mode == "code" else None,
            "code": rt.qr.code, "base64": rt.qr.base64,
            "pairingCodeIssuedAt": _iso(issued), "pairingCodeExpiresAt": _iso(expires),
        }
    for attempt in attempts or []:
        if attempt.outcome == "success":
            view["lastSuccessSeconds"] = attempt.duration_seconds
    return view


def history_view(attempts: list[PairingAttempt]) -> list[dict[str, Any]]:
    """Every attempt, oldest first; only the code's last two characters exist (the store keeps no more)."""
    return [{
        "id": a.id, "method": a.method, "codeSuffix": a.code_suffix,
        "issuedAtSystem": _iso(a.issued_at_system), "issuedAtCorrected": _iso(a.issued_at_corrected),
        "issuedAtServer": _iso(a.issued_at_server), "expiresAt": _iso(a.expires_at), "outcome": a.outcome,
        "finishedAt": _iso(a.finished_at), "durationSeconds": a.duration_seconds,
    } for a in attempts]


def clock_view(guard: ClockGuard | None) -> dict[str, Any]:
    """The clock panel: the guard's last measurement and what linking would be told now (not counted)."""
    if guard is None:
        return {"guard": False, "policy": None, "allowed": True, "message": "no clock guard in this process",
                "status": None, "timezone": None}
    status = guard.status
    decision = decide_link(status, guard.config.skew_policy, guard.config.max_skew_seconds)
    tz = status.timezone.to_dict() if status is not None and status.timezone is not None else None
    return {"guard": True, "policy": str(guard.config.skew_policy), "maxSkewSeconds": guard.config.max_skew_seconds,
            "allowed": decision.allowed, "reason": decision.reason, "message": decision.message,
            "status": status.summary() if status is not None else None, "timezone": tz}
