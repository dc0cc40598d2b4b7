"""The lifecycle of one instance as data: a pure transition function over an immutable record.

`transition(lc, event) -> (new_lc, effects)` is the only place an instance's link state changes (in
the spirit of h11's `_state.py`). It does no I/O and reads no clock: events carry the instants they
need, and the effects (start/stop the engine, request a pairing code, persist, emit a webhook, …)
are carried out, in order, by the thin async shell in `gateway/runtime.py`.

Protocol caveats the table encodes (see docs/gateway.md):
- a pairing code belongs to one registration socket: any close loses it, except the 515 restart
  that follows pair-success, which is the success path (login follows; no new code is requested);
- a close the engine recovers from (`will_reconnect`) is not announced (Evolution sends no
  `connection.update` for it); consumers keep seeing `connecting`;
- the registration socket running out of QR refs is not final: a new one is opened (new QRs, one
  new code) until QRCODE_LIMIT is reached, then the instance is `refused` (creds of a device that
  never registered are dropped);
- every other close without reconnect is terminal (401 device removed, 403, 440 replaced, 500 …):
  the status, the reason and the webhooks say so, and the next `connect` starts a fresh engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from evolink.clock.base import iso_utc
from evolink.gateway import names
from evolink.wa.events import CloseEvent, CloseReason, ConnectionState

QR_LIMIT_MESSAGE = "QR code limit reached, please login again"

# Evolution's `statusReason` numbers (Baileys DisconnectReason) for the engine's typed reasons.
STATUS_CODES: dict[CloseReason, int] = {
    CloseReason.LOGGED_OUT: 401, CloseReason.FORBIDDEN: 403, CloseReason.REPLACED: 440,
    CloseReason.RESTART_REQUIRED: 515, CloseReason.QR_REFS_ENDED: 408, CloseReason.TIMED_OUT: 408,
    CloseReason.CONNECTION_CLOSED: 428, CloseReason.BAD_SESSION: 500, CloseReason.UNAVAILABLE: 503,
    CloseReason.CERTIFICATE: 495, CloseReason.PROTOCOL: 500, CloseReason.CONNECT_FAILED: 503,
    CloseReason.CLOCK: 425, CloseReason.CLOSED_BY_USER: 428,
}


class LinkMode(StrEnum):
    """How the device is being linked (also what the engine factory announces as browser)."""

    QR = "qr"
    CODE = "code"


class Phase(StrEnum):
    """The instance's own states; `ConnectionState` (Evolution's strings) is derived from them."""

    CLOSED = "closed"  # no engine yet, or its start failed (proxy unavailable)
    CONNECTING = "connecting"  # engine started (login from creds or waiting for pair-device)
    AWAITING_QR = "awaiting_qr"  # a QR is shown
    AWAITING_CODE = "awaiting_code"  # code mode, the server has not confirmed the code yet
    CODE_ISSUED = "code_issued"  # the server confirmed the pairing code; the phone may type it
    PAIRED = "paired"  # pair-success and its 515 restart: login follows, no new code
    RECONNECTING = "reconnecting"  # the engine lost the socket and retries by itself
    OPEN = "open"
    FAILED = "failed"  # terminal close (403, 440 replaced, 500 …) kept in `last_close`
    LOGGED_OUT = "logged_out"  # by the API, or the phone removed the device (401)
    REFUSED = "refused"  # QRCODE_LIMIT reached
    REFUSED_BY_CLOCK = "refused_by_clock"  # the engine's clock guard refused to link
    LEASE_LOST = "lease_lost"  # another node owns the instance now (cluster mode)


API_STATE: dict[Phase, ConnectionState] = {
    Phase.CLOSED: ConnectionState.CLOSE, Phase.CONNECTING: ConnectionState.CONNECTING,
    Phase.AWAITING_QR: ConnectionState.CONNECTING, Phase.AWAITING_CODE: ConnectionState.CONNECTING,
    Phase.CODE_ISSUED: ConnectionState.CONNECTING, Phase.PAIRED: ConnectionState.CONNECTING,
    Phase.RECONNECTING: ConnectionState.CONNECTING, Phase.OPEN: ConnectionState.OPEN,
    Phase.FAILED: ConnectionState.CLOSE, Phase.LOGGED_OUT: ConnectionState.CLOSE,
    Phase.REFUSED: ConnectionState.CLOSE, Phase.REFUSED_BY_CLOCK: ConnectionState.CLOSE,
    Phase.LEASE_LOST: ConnectionState.CLOSE,
}

# Pairing-attempt outcome recorded when a close ends a pending attempt (default "failed").
ATTEMPT_OUTCOME: dict[CloseReason, str] = {
    CloseReason.CLOCK: "refused_clock", CloseReason.QR_REFS_ENDED: "expired",
}
# Which terminal phase a final close leads to (default FAILED).
TERMINAL_PHASE: dict[CloseReason, Phase] = {
    CloseReason.LOGGED_OUT: Phase.LOGGED_OUT, CloseReason.CLOCK: Phase.REFUSED_BY_CLOCK,
}


def status_code(ev: CloseEvent) -> int:
    """Evolution's `statusReason` of a close: the server's code, else the reason's usual one."""
    return ev.code if ev.code is not None else STATUS_CODES.get(ev.reason, 500)


@dataclass(frozen=True, slots=True)
class PairingCode:
    """A server-confirmed code; its life is also kept on the never-stepped elapsed clock."""

    code: str  # never logged beyond its last 2 characters
    phone: str
    issued_at: datetime
    expires_at: datetime
    issued_elapsed: float | None = None
    deadline_elapsed: float | None = None


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Everything the lifecycle decides on. Replace, never mutate: `transition` returns a new one."""

    name: str
    qrcode_limit: int = 30
    phase: Phase = Phase.CLOSED
    mode: LinkMode = LinkMode.QR
    phone: str | None = None
    engine: bool = False  # an engine object exists (it may have given up after a terminal close)
    stopping: bool = False  # process shutdown / lease hand-over in progress: nothing new starts
    qr_count: int = 0
    qr_code: str | None = None
    qr_base64: str | None = None
    code: PairingCode | None = None
    code_requested: bool = False  # a code request was made on this connection
    code_error: str | None = None
    announced_code: str | None = None
    last_close: CloseEvent | None = None  # the final close (why a closed instance is closed)
    last_retry: CloseEvent | None = None  # the close the engine is recovering from
    wuid: str | None = None
    profile_name: str | None = None

    @property
    def state(self) -> ConnectionState:
        return API_STATE[self.phase]

    @property
    def pair_accepted(self) -> bool:
        return self.phase is Phase.PAIRED

    @property
    def wants_code(self) -> bool:
        """Code mode with no code, no request and no error on this connection, and not yet paired."""
        return (self.mode is LinkMode.CODE and self.phone is not None and self.code is None
                and not self.code_requested and self.code_error is None and not self.pair_accepted)


# --- effects -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartEngine:
    """Build and start a new engine (new generation) in `mode`; may fail (proxy unavailable)."""

    mode: LinkMode


@dataclass(frozen=True, slots=True)
class StopEngine:
    logout: bool  # remove the companion upstream first


@dataclass(frozen=True, slots=True)
class RequestCode:
    phone: str


@dataclass(frozen=True, slots=True)
class RenewRegistration:
    """Ask for a new registration socket (under the instance lock, if nothing replaced the engine)."""


@dataclass(frozen=True, slots=True)
class ClearCreds:
    only_unregistered: bool  # True: keep creds of a device that did register


@dataclass(frozen=True, slots=True)
class Persist:
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Emit:
    event: str
    data: Any


@dataclass(frozen=True, slots=True)
class RecordAttempt:
    method: str
    code: str | None
    expires_at: datetime | None
    outcome: str = "pending"


@dataclass(frozen=True, slots=True)
class FinishAttempts:
    outcome: str


@dataclass(frozen=True, slots=True)
class Reply:
    """The API call is answered with this error message (Evolution's `{error: true, message}`)."""

    message: str


@dataclass(frozen=True, slots=True)
class Log:
    message: str
    fields: dict[str, Any]


Effect = (StartEngine | StopEngine | RequestCode | RenewRegistration | ClearCreds | Persist | Emit
          | RecordAttempt | FinishAttempts | Reply | Log)


# --- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """`GET /instance/connect[?number=]`, after the link guard allowed it (see `link_method`)."""

    phone: str | None


@dataclass(frozen=True, slots=True)
class ConnectRefused:
    """The clock guard refused a link that `connect` would have started."""

    method: LinkMode
    message: str


@dataclass(frozen=True, slots=True)
class Restart:
    pass


@dataclass(frozen=True, slots=True)
class Resume:
    """Process start (or lease takeover): log in again from stored creds, no new link."""


@dataclass(frozen=True, slots=True)
class Logout:
    now: datetime


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    """Process stop (or lease hand-over) begins: from now on nothing new starts."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Process stop, once the queued engine events are handled: close the socket, keep status and
    creds so the next start resumes."""


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """Cluster mode: another node holds the instance's lease. Close the socket at once; persist
    nothing (the row belongs to the new owner)."""


@dataclass(frozen=True, slots=True)
class StartFailed:
    message: str


@dataclass(frozen=True, slots=True)
class Renew:
    """The registration socket is renewed (under the lock, same engine generation)."""


@dataclass(frozen=True, slots=True)
class CodeConfirmed:
    """The code request returned (before its ordered announcement, `CodeIssued`)."""

    code: PairingCode


@dataclass(frozen=True, slots=True)
class CodeFailed:
    message: str


@dataclass(frozen=True, slots=True)
class EngineConnecting:
    pass


@dataclass(frozen=True, slots=True)
class QrShown:
    """A QR from the engine, already rendered (`code` is Evolution's form, `base64` its PNG)."""

    code: str
    base64: str
    index: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CodeIssued:
    """The engine's (or the request's) pairing code, in engine-event order: announced once."""

    code: PairingCode


@dataclass(frozen=True, slots=True)
class Opened:
    wuid: str
    push_name: str | None


@dataclass(frozen=True, slots=True)
class Closed:
    close: CloseEvent
    now: datetime


@dataclass(frozen=True, slots=True)
class LoggedOutUpstream:
    """The engine wiped its creds: the phone removed the device (401)."""


@dataclass(frozen=True, slots=True)
class PushNameLearned:
    """The account told its push name (its own devices' messages, pair-success): `profileName`."""

    name: str


Event = (Connect | ConnectRefused | Restart | Resume | Logout | ShutdownRequested | Shutdown | LeaseLost | StartFailed | Renew
         | CodeConfirmed | CodeFailed | EngineConnecting | QrShown | CodeIssued | Opened | Closed
         | LoggedOutUpstream | PushNameLearned)

Result = tuple[Lifecycle, list[Effect]]


# --- queries (pure) ----------------------------------------------------------------------------


def is_starting(lc: Lifecycle) -> bool:
    """`connect` would start a new engine."""
    return not lc.engine or lc.state is ConnectionState.CLOSE


def link_method(lc: Lifecycle, phone: str | None) -> LinkMode | None:
    """The link `connect(phone)` would start (to be checked by the clock guard), or None."""
    if lc.state is ConnectionState.OPEN:
        return None
    starting = is_starting(lc)
    if not (starting or (phone is not None and lc.mode is not LinkMode.CODE)):
        return None
    return LinkMode.CODE if (phone or (not starting and lc.mode is LinkMode.CODE)) else LinkMode.QR


def can_logout(lc: Lifecycle) -> bool:
    return lc.engine or lc.state is not ConnectionState.CLOSE


# --- helpers -----------------------------------------------------------------------------------


def _conn_update(lc: Lifecycle, state: ConnectionState, status: int, **extra: Any) -> Emit:
    return Emit(names.CONNECTION_UPDATE, {"instance": lc.name, **extra, "state": state, "statusReason": status})


def _status_instance(lc: Lifecycle, code: int, at: datetime, message: str) -> Emit:
    return Emit(names.STATUS_INSTANCE, {"instance": lc.name, "status": "closed", "disconnectionAt": iso_utc(at),
                                        "disconnectionReasonCode": code,
                                        "disconnectionObject": json.dumps({"message": message})})


def _qr_emit(lc: Lifecycle, pairing_code: str | None) -> Emit:
    return Emit(names.QRCODE_UPDATED, {"qrcode": {"instance": lc.name, "pairingCode": pairing_code,
                                                  "code": lc.qr_code, "base64": lc.qr_base64}})


def _no_code(lc: Lifecycle) -> Lifecycle:
    return replace(lc, code=None, code_requested=False, code_error=None)


def _fresh_engine(lc: Lifecycle, mode: LinkMode, phone: str | None) -> Result:
    """A new engine generation: everything bound to the old socket is gone."""
    new = replace(lc, phase=Phase.CONNECTING, mode=mode, phone=phone, engine=True, qr_code=None,
                  qr_base64=None, code=None, code_requested=False, code_error=None, last_close=None,
                  last_retry=None)
    effects: list[Effect] = [StartEngine(mode)]
    return new, effects


def _request_code(lc: Lifecycle) -> Result:
    assert lc.phone is not None
    return replace(lc, code_requested=True, code_error=None, phase=_connecting_phase(lc, Phase.AWAITING_CODE)), \
        [RequestCode(lc.phone)]


def _connecting_phase(lc: Lifecycle, wanted: Phase) -> Phase:
    """Code/QR progress never hides a more advanced connecting phase (issued code, paired)."""
    if lc.phase in (Phase.CODE_ISSUED, Phase.PAIRED) and wanted in (Phase.AWAITING_QR, Phase.AWAITING_CODE):
        return lc.phase
    return wanted


def _qr_limit(lc: Lifecycle) -> Result:
    new = replace(lc, phase=Phase.REFUSED, engine=False, qr_count=0, qr_code=None, qr_base64=None, code=None,
                  code_requested=False, code_error=None, last_retry=None,
                  last_close=CloseEvent(CloseReason.QR_REFS_ENDED, 428, False, QR_LIMIT_MESSAGE))
    return new, [
        StopEngine(logout=False), ClearCreds(only_unregistered=True),
        Emit(names.QRCODE_UPDATED, {"message": QR_LIMIT_MESSAGE, "statusCode": 500}),
        _conn_update(new, ConnectionState.REFUSED, 428, wuid=lc.wuid, profileName=lc.profile_name,
                     profilePictureUrl=None),
        FinishAttempts("expired"), Persist({"connection_status": ConnectionState.CLOSE}),
    ]


# --- transitions: API side ---------------------------------------------------------------------


def _stopping(lc: Lifecycle) -> Result:
    return lc, [Reply(f'Instance "{lc.name}" is stopping on this node; try again')]


def _on_connect(lc: Lifecycle, ev: Connect) -> Result:
    if lc.state is ConnectionState.OPEN:
        return lc, []
    if lc.stopping:
        return _stopping(lc)
    starting, phone = is_starting(lc), ev.phone
    if not starting and phone is not None and lc.mode is LinkMode.CODE and lc.phone not in (None, phone):
        return lc, [Reply(f'Instance "{lc.name}" is linking number ...{(lc.phone or "")[-4:]} with a pairing code; '
                          "log out first to link a different number")]
    effects: list[Effect] = []
    if starting:
        if lc.engine:
            effects.append(StopEngine(logout=False))
        lc, started = _fresh_engine(lc, LinkMode.CODE if phone else LinkMode.QR, phone)
        effects += started
    if phone is not None and lc.mode is not LinkMode.CODE:
        lc = replace(lc, mode=LinkMode.CODE, phone=phone)  # switch this live connection to code mode
    if lc.mode is LinkMode.CODE and lc.phone and not lc.code_requested and lc.code is None \
            and not lc.pair_accepted:
        lc, more = _request_code(lc)
        effects += more
    return lc, effects


def _on_connect_refused(lc: Lifecycle, ev: ConnectRefused) -> Result:
    # Counted in metrics by the clock guard itself; here only the audit row. The state is unchanged.
    return lc, [RecordAttempt(ev.method, None, None, outcome="refused_clock"), Reply(ev.message)]


def _on_restart(lc: Lifecycle, _ev: Restart) -> Result:
    if lc.state is ConnectionState.CLOSE:
        return lc, [Reply(f'The "{lc.name}" instance is not connected')]
    if lc.stopping:
        return _stopping(lc)
    new, effects = _fresh_engine(lc, lc.mode, lc.phone)
    effects = [StopEngine(logout=False), *effects]
    if new.mode is LinkMode.CODE and new.phone:
        new, more = _request_code(new)
        effects += more
    return new, effects


def _on_resume(lc: Lifecycle, _ev: Resume) -> Result:
    if lc.engine or lc.stopping:
        return lc, []
    return _fresh_engine(lc, LinkMode.QR, None)


def _on_logout(lc: Lifecycle, ev: Logout) -> Result:
    if not can_logout(lc):
        return lc, [Reply(f'The "{lc.name}" instance is not connected')]
    # The next link may be another account: this one's push name goes with it.
    new = replace(_no_code(lc), phase=Phase.LOGGED_OUT, engine=False, wuid=None, qr_code=None, qr_base64=None,
                  profile_name=None)
    return new, [
        StopEngine(logout=True), ClearCreds(only_unregistered=False), FinishAttempts("failed"),
        Persist({"connection_status": ConnectionState.CLOSE, "disconnection_reason_code": 401,
                 "disconnection_at": ev.now, "profile_name": None,
                 "disconnection_object": json.dumps({"reason": "logged_out", "by": "api"})}),
        _status_instance(lc, 401, ev.now, "logged out by API"),
        Emit(names.LOGOUT_INSTANCE, None),
        _conn_update(lc, ConnectionState.CLOSE, 401),
    ]


def _on_shutdown_requested(lc: Lifecycle, _ev: ShutdownRequested) -> Result:
    return replace(lc, stopping=True), []


def _on_shutdown(lc: Lifecycle, _ev: Shutdown) -> Result:
    # The phase stays: the stored status is what the next process resumes from.
    return replace(_no_code(lc), stopping=True, engine=False), [StopEngine(logout=False)]


def _on_lease_lost(lc: Lifecycle, _ev: LeaseLost) -> Result:
    new = replace(_no_code(lc), phase=Phase.LEASE_LOST, engine=False, qr_code=None, qr_base64=None)
    return new, [StopEngine(logout=False), Log("lease lost: socket closed", {"phase": lc.phase})]


def _on_start_failed(lc: Lifecycle, ev: StartFailed) -> Result:
    return replace(_no_code(lc), phase=Phase.CLOSED, engine=False), [Reply(ev.message)]


def _on_renew(lc: Lifecycle, _ev: Renew) -> Result:
    if lc.stopping:
        return lc, []
    new, effects = _fresh_engine(lc, lc.mode, lc.phone)
    return new, [StopEngine(logout=False), *effects]


def _on_code_confirmed(lc: Lifecycle, ev: CodeConfirmed) -> Result:
    if lc.code is not None and lc.code.code == ev.code.code:
        return lc, []
    return replace(lc, code=ev.code), []


def _on_code_failed(lc: Lifecycle, ev: CodeFailed) -> Result:
    return replace(lc, code_requested=False,
                   code_error=f"The WhatsApp server did not confirm a pairing code: {ev.message}"), []


# --- transitions: engine side ------------------------------------------------------------------


def _on_engine_connecting(lc: Lifecycle, _ev: EngineConnecting) -> Result:
    phase = lc.phase
    if lc.state is ConnectionState.CLOSE or phase is Phase.RECONNECTING:
        phase = Phase.CONNECTING
    return replace(lc, phase=phase), [Persist({"connection_status": ConnectionState.CONNECTING}),
                                      _conn_update(lc, ConnectionState.CONNECTING, 200)]


def _on_qr(lc: Lifecycle, ev: QrShown) -> Result:
    if lc.qr_count >= lc.qrcode_limit:
        return _qr_limit(lc)
    phase = lc.phase if lc.state is ConnectionState.OPEN else _connecting_phase(
        lc, Phase.AWAITING_CODE if lc.mode is LinkMode.CODE else Phase.AWAITING_QR)
    new = replace(lc, qr_count=lc.qr_count + 1, qr_code=ev.code, qr_base64=ev.base64, phase=phase)
    effects: list[Effect] = []
    if new.wants_code:  # a new registration socket after a lost one: one new code
        new, more = _request_code(new)
        effects += more
    if new.mode is LinkMode.QR and ev.index == 0:
        effects.append(RecordAttempt(LinkMode.QR, None, ev.expires_at))
    effects.append(Persist({"connection_status": ConnectionState.CONNECTING}))
    effects.append(_qr_emit(new, new.code.code if new.code is not None else None))
    return new, effects


def _on_code_issued(lc: Lifecycle, ev: CodeIssued) -> Result:
    if lc.mode is not LinkMode.CODE:
        lc = replace(lc, mode=LinkMode.CODE, phone=ev.code.phone)
    if lc.code is None or lc.code.code != ev.code.code:
        lc = replace(lc, code=ev.code)
    if lc.announced_code == ev.code.code:
        return lc, []
    new = replace(lc, announced_code=ev.code.code,
                  phase=lc.phase if lc.state is not ConnectionState.CONNECTING else Phase.CODE_ISSUED)
    return new, [
        Log("pairing code issued", {"code_suffix": ev.code.code[-2:], "expires_at": iso_utc(ev.code.expires_at)}),
        FinishAttempts("superseded"),
        RecordAttempt(LinkMode.CODE, ev.code.code, ev.code.expires_at),
        _qr_emit(new, ev.code.code),
        _conn_update(new, ConnectionState.CONNECTING, 200),
    ]


def _on_open(lc: Lifecycle, ev: Opened) -> Result:
    name = ev.push_name or lc.profile_name  # an unknown name never erases a known one
    new = replace(_no_code(lc), phase=Phase.OPEN, wuid=ev.wuid, profile_name=name, last_close=None,
                  last_retry=None)
    return new, [
        FinishAttempts("success"),
        Persist({"connection_status": ConnectionState.OPEN, "owner_jid": ev.wuid, "profile_name": name,
                 "disconnection_reason_code": None, "disconnection_object": None, "disconnection_at": None}),
        _conn_update(new, ConnectionState.OPEN, 200, wuid=ev.wuid, profileName=name,
                     profilePictureUrl=None),
    ]


def _on_close(lc: Lifecycle, ev: Closed) -> Result:
    close = ev.close
    lost_code = lc.code is not None
    restart = close.reason is CloseReason.RESTART_REQUIRED
    # Both the QR and the code were bound to the socket that just closed.
    new = replace(_no_code(lc), qr_code=None, qr_base64=None)
    effects: list[Effect] = []
    if lost_code and restart:
        new = replace(new, phase=Phase.PAIRED)  # 515 after pair-success: login follows
    elif lost_code:
        effects.append(FinishAttempts(ATTEMPT_OUTCOME.get(close.reason, "failed")))
    if close.will_reconnect:
        # Evolution sends no CONNECTION_UPDATE for a close it recovers from; consumers see `connecting`.
        phase = Phase.PAIRED if new.phase is Phase.PAIRED else Phase.RECONNECTING
        return replace(new, last_retry=close, phase=phase), effects
    if close.reason is CloseReason.QR_REFS_ENDED and not lc.stopping:
        # The engine leaves this to us: like Evolution, open a new registration socket (new QRs, and
        # in code mode one new code, announced) until QRCODE_LIMIT says `refused`.
        effects.append(FinishAttempts("expired"))
        if new.qr_count >= new.qrcode_limit:
            limited, more = _qr_limit(new)
            return limited, effects + more
        return replace(new, phase=Phase.CONNECTING), [*effects, RenewRegistration()]
    # Terminal: the phone removed the device (401), 403, 440 replaced, 500 … The next connect starts over.
    status = status_code(close)
    new = replace(new, last_close=close, phase=TERMINAL_PHASE.get(close.reason, Phase.FAILED))
    return new, [
        *effects,
        FinishAttempts(ATTEMPT_OUTCOME.get(close.reason, "failed")),
        Persist({"connection_status": ConnectionState.CLOSE, "disconnection_reason_code": status,
                 "disconnection_at": ev.now,
                 "disconnection_object": json.dumps({"reason": close.reason.value, "message": close.message})}),
        _status_instance(new, status, ev.now, close.message),
        _conn_update(new, ConnectionState.CLOSE, status),
    ]


def _on_logged_out_upstream(lc: Lifecycle, _ev: LoggedOutUpstream) -> Result:
    # The device is gone; a new link may be another account, so its push name is forgotten.
    return replace(lc, phase=Phase.LOGGED_OUT, profile_name=None), [
        Persist({"connection_status": ConnectionState.CLOSE, "profile_name": None}),
        Emit(names.LOGOUT_INSTANCE, None)]


def _on_push_name(lc: Lifecycle, ev: PushNameLearned) -> Result:
    return replace(lc, profile_name=ev.name), [Persist({"profile_name": ev.name})]


_Handler = Callable[[Lifecycle, Any], Result]
TRANSITIONS: dict[type, _Handler] = {
    Connect: _on_connect, ConnectRefused: _on_connect_refused, Restart: _on_restart, Resume: _on_resume,
    Logout: _on_logout, ShutdownRequested: _on_shutdown_requested, Shutdown: _on_shutdown, LeaseLost: _on_lease_lost, StartFailed: _on_start_failed,
    Renew: _on_renew, CodeConfirmed: _on_code_confirmed, CodeFailed: _on_code_failed,
    EngineConnecting: _on_engine_connecting, QrShown: _on_qr, CodeIssued: _on_code_issued, Opened: _on_open,
    Closed: _on_close, LoggedOutUpstream: _on_logged_out_upstream, PushNameLearned: _on_push_name,
}


def transition(lc: Lifecycle, event: Event) -> Result:
    """The one way the lifecycle changes: the new record and the effects to carry out, in order."""
    return TRANSITIONS[type(event)](lc, event)
