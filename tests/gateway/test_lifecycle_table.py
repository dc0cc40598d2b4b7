"""The instance lifecycle table (gateway/lifecycle.py), row by row: pure, no I/O, no engine."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from evolink.gateway import lifecycle as L
from evolink.gateway.lifecycle import ConnectionState, Lifecycle, LinkMode, Phase
from evolink.wa.events import CloseEvent, CloseReason

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
PHONE = "15550001111"
CODE = L.PairingCode("ABCD1234", PHONE, NOW, NOW + timedelta(minutes=3))


def closed() -> Lifecycle:
    return Lifecycle(name="acc", qrcode_limit=3)


def awaiting_qr(count: int = 1) -> Lifecycle:
    return replace(closed(), phase=Phase.AWAITING_QR, engine=True, qr_count=count, qr_code="q", qr_base64="png")


def code_issued() -> Lifecycle:
    return replace(closed(), phase=Phase.CODE_ISSUED, mode=LinkMode.CODE, phone=PHONE, engine=True, qr_count=1,
                   qr_code="q", qr_base64="png", code=CODE, code_requested=True, announced_code=CODE.code)


def paired() -> Lifecycle:
    return replace(code_issued(), phase=Phase.PAIRED, code=None, code_requested=False, qr_code=None, qr_base64=None)


def opened() -> Lifecycle:
    return replace(closed(), phase=Phase.OPEN, engine=True, wuid=f"{PHONE}@s.whatsapp.net", profile_name="Ann")


def kinds(effects: list[L.Effect]) -> list[str]:
    return [type(e).__name__ for e in effects]


def emitted(effects: list[L.Effect]) -> list[tuple[str, Any]]:
    return [(e.event, e.data) for e in effects if isinstance(e, L.Emit)]


def close(reason: CloseReason, code: int | None = None, will: bool = False) -> L.Closed:
    return L.Closed(CloseEvent(reason, code, will, f"{reason.value} happened"), NOW)


# --- every state maps to Evolution's strings ---------------------------------------------------


def test_every_phase_has_an_evolution_state() -> None:
    assert set(L.API_STATE) == set(Phase)
    assert {s.value for s in L.API_STATE.values()} == {"open", "connecting", "close"}
    assert ConnectionState.OPEN == "open" and json.dumps({"s": ConnectionState.CLOSE}) == '{"s": "close"}'


def test_every_event_has_a_row() -> None:
    assert set(L.TRANSITIONS) == set(L.Event.__args__)  # type: ignore[attr-defined]


# --- API events --------------------------------------------------------------------------------


def test_connect_closed_qr_starts_engine() -> None:
    lc, eff = L.transition(closed(), L.Connect(None))
    assert lc.phase is Phase.CONNECTING and lc.state == "connecting" and lc.engine and lc.mode is LinkMode.QR
    assert eff == [L.StartEngine(LinkMode.QR)]


def test_connect_closed_with_number_starts_engine_and_requests_code() -> None:
    lc, eff = L.transition(closed(), L.Connect(PHONE))
    assert lc.phase is Phase.AWAITING_CODE and lc.mode is LinkMode.CODE and lc.code_requested
    assert eff == [L.StartEngine(LinkMode.CODE), L.RequestCode(PHONE)]


def test_connect_after_terminal_close_stops_old_engine_first() -> None:
    failed = replace(opened(), phase=Phase.FAILED, last_close=close(CloseReason.REPLACED).close)
    lc, eff = L.transition(failed, L.Connect(None))
    assert eff == [L.StopEngine(logout=False), L.StartEngine(LinkMode.QR)]
    assert lc.last_close is None and lc.phase is Phase.CONNECTING


def test_connect_open_is_a_no_op() -> None:
    assert L.transition(opened(), L.Connect(PHONE)) == (opened(), [])


def test_connect_again_shares_the_attempt() -> None:
    assert L.transition(code_issued(), L.Connect(PHONE)) == (code_issued(), [])
    assert L.transition(awaiting_qr(), L.Connect(None)) == (awaiting_qr(), [])


def test_connect_with_number_switches_qr_connection_to_code() -> None:
    lc, eff = L.transition(awaiting_qr(), L.Connect(PHONE))
    assert lc.mode is LinkMode.CODE and lc.phone == PHONE and eff == [L.RequestCode(PHONE)]
    assert lc.qr_code == "q"  # same socket, same QR


def test_connect_with_another_number_while_linking_is_refused() -> None:
    lc, eff = L.transition(code_issued(), L.Connect("15550002222"))
    assert lc == code_issued() and kinds(eff) == ["Reply"] and "...1111" in eff[0].message  # type: ignore[union-attr]


def test_connect_after_pair_success_requests_no_new_code() -> None:
    assert L.transition(paired(), L.Connect(PHONE)) == (paired(), [])


def test_connect_while_stopping_is_refused() -> None:
    lc, eff = L.transition(replace(closed(), stopping=True), L.Connect(None))
    assert not lc.engine and kinds(eff) == ["Reply"]


def test_link_method_asks_the_guard_only_for_a_new_link() -> None:
    assert L.link_method(closed(), None) is LinkMode.QR
    assert L.link_method(closed(), PHONE) is LinkMode.CODE
    assert L.link_method(awaiting_qr(), PHONE) is LinkMode.CODE  # switching
    assert L.link_method(awaiting_qr(), None) is None
    assert L.link_method(code_issued(), PHONE) is None
    assert L.link_method(opened(), None) is None


def test_connect_refused_by_clock_records_and_answers_without_state_change() -> None:
    lc, eff = L.transition(closed(), L.ConnectRefused(LinkMode.CODE, "clock is off"))
    assert lc == closed()
    assert eff == [L.RecordAttempt(LinkMode.CODE, None, None, outcome="refused_clock"), L.Reply("clock is off")]


def test_restart_closed_is_refused() -> None:
    lc, eff = L.transition(closed(), L.Restart())
    assert lc == closed() and eff == [L.Reply('The "acc" instance is not connected')]


def test_restart_code_mode_new_engine_and_new_code() -> None:
    lc, eff = L.transition(code_issued(), L.Restart())
    assert eff == [L.StopEngine(logout=False), L.StartEngine(LinkMode.CODE), L.RequestCode(PHONE)]
    assert lc.code is None and lc.qr_code is None and lc.phase is Phase.AWAITING_CODE


def test_resume_starts_from_creds_once() -> None:
    lc, eff = L.transition(closed(), L.Resume())
    assert eff == [L.StartEngine(LinkMode.QR)] and lc.engine
    assert L.transition(lc, L.Resume()) == (lc, [])


def test_logout_open() -> None:
    lc, eff = L.transition(opened(), L.Logout(NOW))
    assert lc.phase is Phase.LOGGED_OUT and lc.state == "close" and lc.wuid is None and not lc.engine
    assert kinds(eff) == ["StopEngine", "ClearCreds", "FinishAttempts", "Persist", "Emit", "Emit", "Emit"]
    assert eff[0] == L.StopEngine(logout=True) and eff[1] == L.ClearCreds(only_unregistered=False)
    assert [e for e, _ in emitted(eff)] == ["status.instance", "logout.instance", "connection.update"]
    assert emitted(eff)[-1][1] == {"instance": "acc", "state": "close", "statusReason": 401}
    persist = next(e for e in eff if isinstance(e, L.Persist))
    assert persist.values["disconnection_reason_code"] == 401 and persist.values["connection_status"] == "close"


def test_logout_never_connected_is_refused() -> None:
    assert not L.can_logout(closed())
    lc, eff = L.transition(closed(), L.Logout(NOW))
    assert lc == closed() and kinds(eff) == ["Reply"]


def test_shutdown_keeps_state_for_resume() -> None:
    lc, eff = L.transition(opened(), L.ShutdownRequested())
    assert lc.stopping and eff == []
    lc, eff = L.transition(lc, L.Shutdown())
    assert lc.phase is Phase.OPEN and not lc.engine and eff == [L.StopEngine(logout=False)]


def test_lease_lost_closes_socket_and_persists_nothing() -> None:
    lc, eff = L.transition(opened(), L.LeaseLost())
    assert lc.phase is Phase.LEASE_LOST and lc.state == "close" and not lc.engine
    assert kinds(eff) == ["StopEngine", "Log"] and eff[0] == L.StopEngine(logout=False)


def test_start_failed_closes() -> None:
    started, _ = L.transition(closed(), L.Connect(PHONE))
    lc, eff = L.transition(started, L.StartFailed("proxy down"))
    assert lc.phase is Phase.CLOSED and not lc.engine and not lc.code_requested and eff == [L.Reply("proxy down")]


def test_renew_is_a_new_engine_same_mode() -> None:
    lc, eff = L.transition(replace(code_issued(), code=None), L.Renew())
    assert eff == [L.StopEngine(logout=False), L.StartEngine(LinkMode.CODE)] and lc.phase is Phase.CONNECTING
    assert L.transition(replace(code_issued(), stopping=True), L.Renew())[1] == []


def test_code_confirmed_then_issued_announces_once() -> None:
    requested, _ = L.transition(closed(), L.Connect(PHONE))
    lc, eff = L.transition(requested, L.CodeConfirmed(CODE))
    assert lc.code == CODE and eff == []
    lc, eff = L.transition(lc, L.CodeIssued(CODE))
    assert lc.phase is Phase.CODE_ISSUED and lc.announced_code == CODE.code
    assert kinds(eff) == ["Log", "FinishAttempts", "RecordAttempt", "Emit", "Emit"]
    assert eff[0].fields["code_suffix"] == "34"  # type: ignore[union-attr]
    assert CODE.code not in json.dumps(eff[0].fields)  # type: ignore[union-attr]
    assert emitted(eff)[0][1]["qrcode"]["pairingCode"] == CODE.code
    assert L.transition(lc, L.CodeIssued(CODE)) == (lc, [])  # announced once


def test_code_failed_keeps_error_for_the_answer() -> None:
    requested, _ = L.transition(closed(), L.Connect(PHONE))
    lc, eff = L.transition(requested, L.CodeFailed("timeout"))
    assert eff == [] and not lc.code_requested and lc.code_error is not None and "timeout" in lc.code_error


# --- engine events ----------------------------------------------------------------------------


def test_engine_connecting() -> None:
    lc, eff = L.transition(replace(closed(), engine=True), L.EngineConnecting())
    assert lc.phase is Phase.CONNECTING and kinds(eff) == ["Persist", "Emit"]
    assert emitted(eff) == [("connection.update", {"instance": "acc", "state": "connecting", "statusReason": 200})]
    assert L.transition(paired(), L.EngineConnecting())[0].phase is Phase.PAIRED  # still paired


def test_qr_shown_and_counted() -> None:
    lc, eff = L.transition(replace(closed(), engine=True, phase=Phase.CONNECTING),
                           L.QrShown("q0", "png0", 0, NOW))
    assert lc.phase is Phase.AWAITING_QR and lc.qr_count == 1 and lc.qr_code == "q0"
    assert kinds(eff) == ["RecordAttempt", "Persist", "Emit"]
    assert emitted(eff)[0][1] == {"qrcode": {"instance": "acc", "pairingCode": None, "code": "q0", "base64": "png0"}}
    lc, eff = L.transition(lc, L.QrShown("q1", "png1", 1, NOW))
    assert lc.qr_count == 2 and kinds(eff) == ["Persist", "Emit"]  # one attempt per registration socket


def test_qr_rotation_keeps_the_code() -> None:
    lc, eff = L.transition(code_issued(), L.QrShown("q2", "png2", 1, NOW))
    assert lc.code == CODE and lc.phase is Phase.CODE_ISSUED and "RequestCode" not in kinds(eff)
    assert emitted(eff)[0][1]["qrcode"]["pairingCode"] == CODE.code


def test_qr_on_new_registration_socket_requests_one_new_code() -> None:
    lost = replace(code_issued(), code=None, code_requested=False, phase=Phase.CONNECTING)
    lc, eff = L.transition(lost, L.QrShown("q3", "png3", 0, NOW))
    assert kinds(eff) == ["RequestCode", "Persist", "Emit"] and lc.code_requested


def test_qr_over_the_limit_is_refused() -> None:
    lc, eff = L.transition(awaiting_qr(count=3), L.QrShown("q", "", 0, NOW))
    assert lc.phase is Phase.REFUSED and lc.state == "close" and lc.qr_count == 0 and not lc.engine
    assert lc.last_close is not None and lc.last_close.message == L.QR_LIMIT_MESSAGE
    assert kinds(eff) == ["StopEngine", "ClearCreds", "Emit", "Emit", "FinishAttempts", "Persist"]
    assert eff[1] == L.ClearCreds(only_unregistered=True)
    conn = emitted(eff)[1][1]
    assert conn["state"] == "refused" and conn["statusReason"] == 428


def test_open() -> None:
    lc, eff = L.transition(paired(), L.Opened(f"{PHONE}@s.whatsapp.net", "Ann"))
    assert lc.phase is Phase.OPEN and lc.state == "open" and lc.wuid == f"{PHONE}@s.whatsapp.net"
    assert not lc.pair_accepted and lc.last_close is None
    assert kinds(eff) == ["FinishAttempts", "Persist", "Emit"] and eff[0] == L.FinishAttempts("success")
    assert emitted(eff)[0][1] == {"instance": "acc", "wuid": f"{PHONE}@s.whatsapp.net", "profileName": "Ann",
                                  "profilePictureUrl": None, "state": "open", "statusReason": 200}


def test_logged_out_upstream() -> None:
    lc, eff = L.transition(opened(), L.LoggedOutUpstream())
    assert lc.phase is Phase.LOGGED_OUT and emitted(eff) == [("logout.instance", None)]


# --- every close reason ------------------------------------------------------------------------

TERMINAL = [
    (CloseReason.LOGGED_OUT, 401, Phase.LOGGED_OUT),  # the phone removed the device
    (CloseReason.FORBIDDEN, 403, Phase.FAILED),
    (CloseReason.REPLACED, 440, Phase.FAILED),  # another socket for the same device
    (CloseReason.BAD_SESSION, 500, Phase.FAILED),
    (CloseReason.UNAVAILABLE, 503, Phase.FAILED),  # gave up after the retry budget
    (CloseReason.CLIENT_OUTDATED, None, Phase.FAILED),
    (CloseReason.CLOCK, 425, Phase.REFUSED_BY_CLOCK),
]


@pytest.mark.parametrize(("reason", "status", "phase"), TERMINAL)
@pytest.mark.parametrize("before", [opened, code_issued, awaiting_qr], ids=["open", "code", "qr"])
def test_terminal_close(reason: CloseReason, status: int | None, phase: Phase, before: Any) -> None:
    start: Lifecycle = before()
    lc, eff = L.transition(start, close(reason))
    want = status if status is not None else 500
    assert lc.phase is phase and lc.state == "close" and lc.last_close is not None
    assert lc.qr_code is None and lc.code is None and not lc.pair_accepted
    assert [e for e, _ in emitted(eff)] == ["status.instance", "connection.update"]
    assert emitted(eff)[-1][1] == {"instance": "acc", "state": "close", "statusReason": want}
    assert emitted(eff)[0][1]["disconnectionReasonCode"] == want
    persist = next(e for e in eff if isinstance(e, L.Persist))
    assert persist.values["connection_status"] == "close" and persist.values["disconnection_reason_code"] == want
    assert json.loads(persist.values["disconnection_object"])["reason"] == reason.value
    outcome = "refused_clock" if reason is CloseReason.CLOCK else "failed"
    assert L.FinishAttempts(outcome) in eff
    assert L.is_starting(lc)  # the next connect starts over


@pytest.mark.parametrize("reason", [CloseReason.TIMED_OUT, CloseReason.CONNECTION_CLOSED, CloseReason.UNAVAILABLE,
                                    CloseReason.BAD_SESSION, CloseReason.RESTART_REQUIRED])
def test_close_with_reconnect_is_silent(reason: CloseReason) -> None:
    lc, eff = L.transition(opened(), close(reason, will=True))
    assert lc.phase is Phase.RECONNECTING and lc.state == "connecting" and lc.last_retry is not None
    assert eff == [] and lc.wuid == opened().wuid


def test_close_with_reconnect_loses_the_code() -> None:
    lc, eff = L.transition(code_issued(), close(CloseReason.TIMED_OUT, will=True))
    assert lc.code is None and not lc.code_requested and lc.qr_code is None
    assert eff == [L.FinishAttempts("failed")] and lc.phase is Phase.RECONNECTING


def test_515_after_pair_success_is_the_success_path() -> None:
    lc, eff = L.transition(code_issued(), close(CloseReason.RESTART_REQUIRED, 515, will=True))
    assert lc.phase is Phase.PAIRED and lc.pair_accepted and eff == []
    assert not lc.wants_code
    # the restart's QR (if any) does not request a new code either
    lc, eff = L.transition(lc, L.QrShown("q", "png", 0, NOW))
    assert "RequestCode" not in kinds(eff) and lc.phase is Phase.PAIRED


def test_qr_refs_exhausted_renews_the_registration_socket() -> None:
    lc, eff = L.transition(awaiting_qr(count=1), close(CloseReason.QR_REFS_ENDED))
    assert lc.phase is Phase.CONNECTING and lc.state == "connecting" and lc.qr_code is None
    assert eff == [L.FinishAttempts("expired"), L.RenewRegistration()]


def test_qr_refs_exhausted_in_code_mode_loses_code_then_renews() -> None:
    lc, eff = L.transition(code_issued(), close(CloseReason.QR_REFS_ENDED))
    assert eff == [L.FinishAttempts("expired"), L.FinishAttempts("expired"), L.RenewRegistration()]
    assert lc.code is None and lc.wants_code  # the next registration socket gets one new code


def test_qr_refs_exhausted_at_the_limit_is_refused() -> None:
    lc, eff = L.transition(awaiting_qr(count=3), close(CloseReason.QR_REFS_ENDED))
    assert lc.phase is Phase.REFUSED and "RenewRegistration" not in kinds(eff)
    assert emitted(eff)[-1][1]["state"] == "refused"


def test_qr_refs_exhausted_while_stopping_is_terminal() -> None:
    lc, eff = L.transition(replace(awaiting_qr(), stopping=True), close(CloseReason.QR_REFS_ENDED))
    assert lc.phase is Phase.FAILED and "RenewRegistration" not in kinds(eff)
    assert emitted(eff)[-1][1]["statusReason"] == 408


def test_status_codes_of_close_reasons() -> None:
    want = {CloseReason.LOGGED_OUT: 401, CloseReason.FORBIDDEN: 403, CloseReason.REPLACED: 440,
            CloseReason.BAD_SESSION: 500, CloseReason.UNAVAILABLE: 503, CloseReason.RESTART_REQUIRED: 515,
            CloseReason.QR_REFS_ENDED: 408}
    for reason, code in want.items():
        assert L.status_code(CloseEvent(reason, None, False, "")) == code
    assert L.status_code(CloseEvent(CloseReason.FORBIDDEN, 499, False, "")) == 499  # the server's code wins
