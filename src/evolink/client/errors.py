"""Typed errors of `evolink.client`. Each says what happened (`str(err)`) and what to do (`err.hint`)."""

from __future__ import annotations

from typing import Any


class EvolinkError(Exception):
    """Base class. `hint` is one sentence telling the user what to do next."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint


class GatewayUnreachable(EvolinkError):
    """No HTTP answer (connection refused, DNS, timeout)."""

    hint = "Check the server URL and that the gateway is running (evolink serve)."


class ApiError(EvolinkError):
    """The gateway answered with an HTTP error (Evolution's envelope); `status` is the HTTP status."""

    def __init__(self, status: int, message: str, *, body: Any = None, hint: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}", hint=hint)
        self.status = status
        self.message = message
        self.body = body


class Unauthorized(ApiError):
    hint = "Use the global AUTHENTICATION_API_KEY, or the token (hash) of this very instance."


class InstanceNotFound(ApiError):
    hint = "Create the instance first (POST /instance/create), or check its name."


class LinkRefused(EvolinkError):
    """The gateway refused to start linking for a reason a retry cannot change (bad number, another
    number is being linked …): fix the request."""

    hint = "Fix the request as the message says, then try again."


class InvalidNumber(LinkRefused):
    hint = "Give the number with its country code, digits only, e.g. 5511999999999 or 15550001111."


class ClockRefused(LinkRefused):
    """The gateway's clock guard refused linking (`CLOCK_SKEW_POLICY=refuse`); `fix` is what to run."""

    def __init__(self, message: str, *, fix: str | None, clock: dict[str, Any]) -> None:
        super().__init__(message, hint=fix or "Fix the server's clock (see `evolink doctor`), then try again.")
        self.fix = fix
        self.clock = clock


class LinkFailed(EvolinkError):
    """Every attempt ran out (codes expired unused, or the link kept failing); `reason` is the last
    one (`expired`, `error`, `qr_limit`), `attempts` how many codes/QR series were used."""

    hint = "Check that the phone is online and the code is typed within its time, then try again."

    def __init__(self, message: str, *, reason: str, attempts: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.attempts = attempts
