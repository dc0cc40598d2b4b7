"""``GET /metrics``: Prometheus text exposition of ``evolink.metrics.REGISTRY``.

Evolution's switches are honoured with one deliberate difference: the endpoint is on unless
``PROMETHEUS_METRICS=false`` (the clock alerts depend on it). ``METRICS_AUTH_REQUIRED=true`` requires
either the gateway's global API key in the ``apikey`` header (evolink addition; the metrics name
every instance, so the key that sees every instance may read them) or Basic auth
(``METRICS_USER``/``METRICS_PASSWORD``) with Evolution's responses. ``METRICS_ALLOWED_IPS`` (comma
list) is actually enforced (Evolution 2.3.7's check never rejects). Unset, the default stays open
(Prometheus convention).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Mapping

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from evolink.metrics import REGISTRY

REALM = 'Basic realm="Evolution API Metrics"'
METRICS_VARIABLES = ("PROMETHEUS_METRICS", "METRICS_AUTH_REQUIRED", "METRICS_USER", "METRICS_PASSWORD",
                     "METRICS_ALLOWED_IPS")

_TEXT = {"text/plain": {"schema": {"type": "string"}}}
_TEXT_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"description": "METRICS_AUTH_REQUIRED: missing or wrong Basic credentials", "content": _TEXT},
    403: {"description": "the client IP is not in METRICS_ALLOWED_IPS", "content": _TEXT},
}


def _flag(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _gateway_key(request: Request) -> str | None:
    ctx = getattr(request.app.state, "gateway", None)
    return None if ctx is None else str(ctx.api_key.value)


def _global_key_presented(request: Request) -> bool:
    key, expected = request.headers.get("apikey"), _gateway_key(request)
    if not key or expected is None:
        return False
    return secrets.compare_digest(key.encode(), expected.encode())


def create_metrics_router(env: Mapping[str, str] | None = None) -> APIRouter:
    src = os.environ if env is None else env
    r = APIRouter(tags=["metrics"])
    if not _flag(src.get("PROMETHEUS_METRICS"), True):
        return r
    auth_required = _flag(src.get("METRICS_AUTH_REQUIRED"), False)
    user, password = src.get("METRICS_USER") or "", src.get("METRICS_PASSWORD") or ""
    allowed = [ip.strip() for ip in (src.get("METRICS_ALLOWED_IPS") or "").split(",") if ip.strip()]

    @r.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics", responses=_TEXT_ERRORS)
    async def metrics(request: Request) -> Response:
        client = request.client.host if request.client else ""
        if allowed and client not in allowed:
            return PlainTextResponse("Forbidden: IP not allowed", status_code=403)
        if auth_required and not _global_key_presented(request):
            gateway_key = _gateway_key(request)
            if not user or not password:
                if gateway_key is None:  # neither Basic credentials nor an API key to check against
                    return PlainTextResponse("Metrics authentication not configured", status_code=500)
                return PlainTextResponse("Authentication required", status_code=401)
            header = request.headers.get("authorization", "")
            if not header.lower().startswith("basic "):
                return PlainTextResponse("Authentication required", status_code=401,
                                         headers={"WWW-Authenticate": REALM})
            try:
                given_user, _, given_pw = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                given_user, given_pw = "", ""
            if not (secrets.compare_digest(given_user.encode(), user.encode())
                    and secrets.compare_digest(given_pw.encode(), password.encode())):
                return PlainTextResponse("Invalid credentials", status_code=401, headers={"WWW-Authenticate": REALM})
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})

    return r


router = create_metrics_router()
