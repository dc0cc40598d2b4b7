"""The retrying link flows, sans-I/O: generators that yield what to do and receive the answers.

The sync and async clients run the same flow (`EvolinkClient.link_by_code` drives it with httpx.Client
and time.sleep, `AsyncEvolinkClient` with httpx.AsyncClient and asyncio.sleep), so the rules hold for
both and are tested once:

- the first `connect` gives the code (evolink answers with a server-confirmed code; against
  Evolution an empty `{"count": 0}` is simply asked again after the poll interval);
- while the code is valid, `connect` is asked again every `poll` seconds (it returns the same code,
  or `open` once the phone has entered it) — never a new code;
- a new code only when the old one is expired (by `pairingCodeExpiresIn`) or the link failed: after
  a delay with jitter (`Backoff`), ask again; if the gateway renewed the code by itself (it does when
  the registration socket ends), that is the new code, else `restart` opens a new socket for one;
- `attempts` bounds the codes (or QR series) used; transient errors are retried with the same
  backoff, and a refusal a retry cannot change (clock guard, bad number) is raised at once, with no
  second request.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from evolink.client.errors import ClockRefused, InvalidNumber, LinkFailed, LinkRefused
from evolink.client.models import Backoff, ConnectAnswer, PairingCode, QrCode


@dataclass(frozen=True, slots=True)
class Connect:
    number: str | None


@dataclass(frozen=True, slots=True)
class Restart:
    pass


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Emit:
    item: PairingCode | QrCode


Action = Connect | Restart | Sleep | Emit
Flow = Generator[Action, Any, ConnectAnswer]

_FATAL_MARKERS = ("log out first to link a different number", "Invalid integration", "instance does not exist")
# Seen while the phone's link completes (pair-success → restart → login): evolink's connect may try a
# new code on the restarting socket and report the engine "already linked". Not a failure: poll on.
_LINKING_MARKERS = ("already linked",)
SETTLE_POLLS = 40  # polls tolerated in that state before it counts as a failure


def raise_if_fatal(answer: ConnectAnswer) -> None:
    """An error answer a retry cannot change → its typed error; transient ones return."""
    clock = answer.raw.get("clock")
    if isinstance(clock, dict):
        fix = clock.get("fix")
        raise ClockRefused(answer.message, fix=fix if isinstance(fix, str) else None, clock=clock)
    if "is not a phone number" in answer.message:
        raise InvalidNumber(answer.message)
    if any(marker in answer.message for marker in _FATAL_MARKERS):
        raise LinkRefused(answer.message)


def _expires(answer: ConnectAnswer) -> tuple[datetime | None, float | None]:
    raw = answer.raw.get("pairingCodeExpiresIn")
    expires_in = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    at = answer.raw.get("pairingCodeExpiresAt")
    parsed = None
    if isinstance(at, str):
        try:
            parsed = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    return parsed, expires_in


def code_flow(number: str, *, attempts: int, backoff: Backoff, poll: float,
              now: Callable[[], float], default_ttl: float = 160.0) -> Flow:
    """Link by pairing code; returns the `open` answer. `now` is a monotonic clock in seconds."""
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    codes = failures = 0
    current: str | None = None
    deadline = 0.0
    renew_wait = False  # the expired code's grace delay has been slept
    settling = 0
    answer: ConnectAnswer = yield Connect(number)
    while True:
        if answer.kind == "open":
            return answer
        if answer.kind == "error":
            raise_if_fatal(answer)
            if any(m in answer.message for m in _LINKING_MARKERS) and settling < SETTLE_POLLS:
                settling += 1
                yield Sleep(poll)
                answer = yield Connect(number)
                continue
            failures += 1
            if failures >= attempts:
                raise LinkFailed(f"linking failed {failures} times; last answer: {answer.message}",
                                 reason="error", attempts=codes)
            yield Sleep(backoff.delay(failures))
            answer = yield Connect(number)
            continue
        code = answer.pairing_code
        expires_at, expires_in = _expires(answer)
        if code is not None and code != current and expires_in is not None and expires_in <= 0:
            current, deadline, renew_wait = code, now(), False  # already expired (e.g. a new run): never shown
        elif code is not None and code != current:
            if codes >= attempts:
                raise LinkFailed(f"{codes} pairing code(s) expired without being entered on the phone",
                                 reason="expired", attempts=codes)
            codes += 1
            current, renew_wait = code, False
            deadline = now() + (expires_in if expires_in is not None else default_ttl)
            yield Emit(PairingCode(code, number, expires_at, expires_in, codes))
        if current is not None and now() >= deadline:
            if codes >= attempts:
                raise LinkFailed(f"{codes} pairing code(s) expired without being entered on the phone",
                                 reason="expired", attempts=codes)
            if not renew_wait:
                # The gateway renews a code by itself when its registration socket ends: give it a
                # moment (with jitter) before forcing a new socket.
                renew_wait = True
                yield Sleep(backoff.delay(codes))
                answer = yield Connect(number)
                continue
            renew_wait = False
            deadline = now() + default_ttl  # restart gives a new code; until it arrives, don't restart again
            answer = yield Restart()
            if answer.kind in ("code", "open", "error"):
                continue
            answer = yield Connect(number)
            continue
        yield Sleep(poll)
        answer = yield Connect(number)


def qr_flow(*, attempts: int, backoff: Backoff, poll: float) -> Flow:
    """Link by QR; emits each new QR (they rotate) and returns the `open` answer. A QR series ends
    at QRCODE_LIMIT (the instance closes; the next `connect` starts a new series, its count starts
    again): `attempts` bounds the series, and the transient errors in a row."""
    if attempts < 1:
        raise ValueError("attempts must be >= 1")
    series, failures, last_count = 1, 0, 0
    current: str | None = None
    answer: ConnectAnswer = yield Connect(None)
    while True:
        if answer.kind == "open":
            return answer
        if answer.kind == "error":
            raise_if_fatal(answer)
            failures += 1
            if failures >= attempts:
                reason = "qr_limit" if "limit" in answer.message else "error"
                raise LinkFailed(f"no QR code was scanned: {answer.message}", reason=reason, attempts=series)
            yield Sleep(backoff.delay(failures))
            answer = yield Connect(None)
            continue
        failures = 0
        qr = answer.qr
        count = answer.raw.get("count")
        count = count if isinstance(count, int) else 0
        if qr is not None and qr != current:
            if count < last_count:  # the previous series reached QRCODE_LIMIT; this is a new one
                series += 1
                if series > attempts:
                    raise LinkFailed(f"{attempts} QR series shown, none scanned", reason="qr_limit",
                                     attempts=attempts)
            current, last_count = qr, count
            base64 = answer.raw.get("base64")
            yield Emit(QrCode(qr, base64 if isinstance(base64, str) else None, count, series))
        yield Sleep(poll)
        answer = yield Connect(None)
