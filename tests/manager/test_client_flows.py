"""The client's link flows, sans-I/O: scripted gateway answers in, actions out, on a fake clock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evolink.client import Backoff, ClockRefused, ConnectAnswer, InvalidNumber, LinkFailed, LinkRefused
from evolink.client.linking import Connect, Emit, Flow, Restart, Sleep, code_flow, qr_flow

ROOT = Path(__file__).resolve().parents[2]
NO_JITTER = Backoff(initial=1.0, factor=2.0, maximum=8.0, jitter=0.0)


def code(c: str, expires_in: float = 10) -> ConnectAnswer:
    return ConnectAnswer.parse({"pairingCode": c, "code": "2@x,y,z,w", "count": 1, "pairingCodeExpiresIn": expires_in,
                                "pairingCodeExpiresAt": "2026-01-01T00:00:10.000Z"})


OPEN = ConnectAnswer.parse({"instance": {"instanceName": "a", "state": "open"}})


def err(message: str, **extra: Any) -> ConnectAnswer:
    return ConnectAnswer.parse({"error": True, "message": message, **extra})


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def drive(flow: Flow, answers: list[ConnectAnswer], clock: Clock) -> tuple[list[Any], Any]:
    """Feed `answers` to each Connect/Restart; Sleep advances the clock. Returns (actions, result)."""
    actions: list[Any] = []
    result: Any = None
    pending = list(answers)
    try:
        while True:
            action = flow.send(result)
            actions.append(action)
            result = None
            if isinstance(action, Connect | Restart):
                result = pending.pop(0)
            elif isinstance(action, Sleep):
                clock.t += action.seconds
    except StopIteration as stop:
        return actions, stop.value


def test_same_code_polled_until_open() -> None:
    clock = Clock()
    actions, result = drive(code_flow("1555", attempts=3, backoff=NO_JITTER, poll=1, now=clock),
                            [code("AAAA1111"), code("AAAA1111"), code("AAAA1111"), OPEN], clock)
    assert result is OPEN
    emits = [a.item for a in actions if isinstance(a, Emit)]
    assert [(e.code, e.grouped, e.attempt, e.expires_in) for e in emits] == [("AAAA1111", "AAAA-1111", 1, 10)]
    assert not any(isinstance(a, Restart) for a in actions)


def test_expired_code_renewed_by_the_gateway_is_the_one_new_code() -> None:
    clock = Clock()
    answers = [code("AAAA1111", 2), code("AAAA1111"), code("AAAA1111"), code("BBBB2222"), OPEN]
    actions, result = drive(code_flow("1555", attempts=3, backoff=NO_JITTER, poll=1, now=clock), answers, clock)
    assert result is OPEN
    assert [a.item.code for a in actions if isinstance(a, Emit)] == ["AAAA1111", "BBBB2222"]
    assert not any(isinstance(a, Restart) for a in actions)
    # expired at t=2: one grace delay (backoff 1 s for the first code), then it asked again
    assert Sleep(1.0) in actions


def test_expired_code_on_a_live_socket_restarts_once() -> None:
    clock = Clock()
    answers = [code("AAAA1111", 1), code("AAAA1111"), code("AAAA1111"), code("CCCC3333"), OPEN]
    actions, result = drive(code_flow("1555", attempts=3, backoff=NO_JITTER, poll=1, now=clock), answers, clock)
    assert result is OPEN and sum(isinstance(a, Restart) for a in actions) == 1
    assert [a.item.code for a in actions if isinstance(a, Emit)] == ["AAAA1111", "CCCC3333"]


def test_attempts_bound_the_codes() -> None:
    clock = Clock()
    answers = [code("AAAA1111", 1), code("AAAA1111"), code("AAAA1111"), code("BBBB2222", 1),
               code("BBBB2222"), code("BBBB2222")]
    with pytest.raises(LinkFailed) as info:
        drive(code_flow("1555", attempts=2, backoff=NO_JITTER, poll=1, now=clock), answers, clock)
    assert info.value.reason == "expired" and info.value.attempts == 2 and info.value.hint


@pytest.mark.parametrize("answer, error", [
    (err("refused", clock={"fix": "timedatectl set-ntp true"}), ClockRefused),
    (err('"12" is not a phone number: use digits with the country code'), InvalidNumber),
    (err('Instance "a" is linking number ...1111 with a pairing code; '
     'log out first to link a different number'), LinkRefused),
])
def test_refusals_raise_after_one_request(answer: ConnectAnswer, error: type[Exception]) -> None:
    clock = Clock()
    flow = code_flow("1555", attempts=5, backoff=NO_JITTER, poll=1, now=clock)
    assert flow.send(None) == Connect("1555")
    with pytest.raises(error) as info:
        flow.send(answer)
    if isinstance(info.value, ClockRefused):
        assert info.value.hint == "timedatectl set-ntp true"


def test_transient_errors_back_off_then_fail() -> None:
    clock = Clock()
    answers = [err("No pairing code within 10 s: …")] * 3
    with pytest.raises(LinkFailed) as info:
        drive(code_flow("1555", attempts=3, backoff=NO_JITTER, poll=1, now=clock), answers, clock)
    assert info.value.reason == "error" and "No pairing code" in str(info.value)
    assert clock.t == 1.0 + 2.0  # two waits: 1 s then 2 s (exponential)


def test_evolution_empty_answer_is_asked_again() -> None:
    clock = Clock()
    actions, result = drive(code_flow("1555", attempts=1, backoff=NO_JITTER, poll=1, now=clock),
                            [ConnectAnswer.parse({"count": 0}), code("AAAA1111"), OPEN], clock)
    assert result is OPEN and [a.item.code for a in actions if isinstance(a, Emit)] == ["AAAA1111"]


def test_qr_flow_emits_rotations_and_counts_series() -> None:
    clock = Clock()

    def qr(c: str, n: int) -> ConnectAnswer:
        return ConnectAnswer.parse({"pairingCode": None, "code": c, "base64": "data:image/png;base64,x", "count": n})

    actions, result = drive(qr_flow(attempts=2, backoff=NO_JITTER, poll=1),
                            [qr("q1", 1), qr("q1", 1), qr("q2", 2), qr("q3", 1), OPEN], clock)
    assert result is OPEN
    assert [(a.item.code, a.item.count, a.item.attempt) for a in actions if isinstance(a, Emit)] == [
        ("q1", 1, 1), ("q2", 2, 1), ("q3", 1, 2)]
    with pytest.raises(LinkFailed) as info:
        drive(qr_flow(attempts=1, backoff=NO_JITTER, poll=1), [qr("q1", 3), qr("q2", 1)], clock)
    assert info.value.reason == "qr_limit"


def test_backoff_jitter_bounds() -> None:
    b = Backoff(initial=2, factor=2, maximum=30, jitter=0.2)
    assert [b.delay(n, 0.5) for n in (1, 2, 3, 4, 5, 6)] == [2, 4, 8, 16, 30, 30]
    assert b.delay(1, 0.0) == pytest.approx(1.6) and b.delay(1, 1.0) == pytest.approx(2.4)


def test_client_package_imports_nothing_else_of_evolink() -> None:
    code_ = ("import sys, evolink.client, evolink.client.cli; "
             "print(','.join(sorted(m for m in sys.modules if m.startswith('evolink'))))")
    out = subprocess.run([sys.executable, "-c", code_], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}, check=True).stdout
    loaded = [m for m in out.strip().split(",") if m]
    assert all(m == "evolink" or m.startswith("evolink.client") for m in loaded), loaded


def test_an_already_expired_code_is_never_shown() -> None:
    clock = Clock()
    answers = [code("OLDD0000", 0), code("OLDD0000", 0), code("NEWW1111"), OPEN]
    actions, result = drive(code_flow("1555", attempts=1, backoff=NO_JITTER, poll=1, now=clock), answers, clock)
    assert result is OPEN and [a.item.code for a in actions if isinstance(a, Emit)] == ["NEWW1111"]
    assert sum(isinstance(a, Restart) for a in actions) == 1


def test_already_linked_while_the_link_completes_is_not_a_failure() -> None:
    clock = Clock()
    settling = err("The WhatsApp server did not confirm a pairing code: this engine is already linked; log out first")
    actions, result = drive(code_flow("1555", attempts=1, backoff=NO_JITTER, poll=1, now=clock),
                            [code("AAAA1111"), settling, settling, OPEN], clock)
    assert result is OPEN and not any(isinstance(a, Restart) for a in actions)
    with pytest.raises(LinkRefused):  # the other "log out first" is a real refusal
        drive(code_flow("1555", attempts=3, backoff=NO_JITTER, poll=1, now=clock),
              [err('Instance "a" is linking number ...2222 with a pairing code; log out first to link a different '
                   "number")], clock)
