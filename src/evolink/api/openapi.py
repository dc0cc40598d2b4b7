"""`/openapi.json` that describes what the API does: Evolution's error envelope, the `apikey` scheme.

FastAPI documents a 422 it never sends here (validation errors are Evolution's 400) and knows nothing of
the guards. `install_openapi(app)` post-processes the generated document once:

- every operation loses the 422 and gains the error responses it can really answer, each with the
  `ErrorEnvelope` schema: inferred from the route (a guard dependency → 401, `instance_guard` → 404 too;
  a request body → 400), plus whatever the route declares itself with `error_responses(...)`;
- guarded operations get `security: [{apikey: []}]` and the `apikey` header scheme is declared.

Routes added later (messaging helpers) are covered without change; a route that raises an error the
inference cannot see (`ApiError(403, ...)` in its body, a manual key check) declares it:
`@router.post(..., responses=error_responses(400, 403))`, and `openapi_extra=SECURED` for a manual check.
`never_succeeds(func)` marks a handler that only ever refuses (its default 2xx is removed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from evolink.api.auth import global_guard, instance_guard

SCHEME = "apikey"
SECURED: dict[str, Any] = {"security": [{SCHEME: []}]}
"""`openapi_extra` for a route that checks the `apikey` header itself (not through a guard dependency)."""

BODY_ERRORS: tuple[int, ...] = (400, 413)
"""Statuses any route with a request body can answer (400: malformed JSON or schema; 413: larger than
`EVOLINK_MAX_BODY_BYTES`, or `EVOLINK_MAX_MESSAGE_BODY_BYTES` on `/message/*`, see `api/limits.py`)."""

_ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str | list[str | list[str]] = Field(
        description='"Unauthorized" (401), a list of messages, or for schema errors a list of lists')


class ErrorEnvelope(BaseModel):
    """Evolution's error body: `{status, error, response: {message}}` (`evolink.api.errors.envelope`)."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(description="the HTTP status, repeated")
    error: str = Field(description='the status phrase, e.g. "Bad Request"')
    response: ErrorBody


# guard dependency -> the statuses it answers
GUARDS: dict[Callable[..., Any], tuple[int, ...]] = {instance_guard: (401, 404), global_guard: (401,)}


def register_guard(func: Callable[..., Any], *statuses: int) -> None:
    """Teach the inference a new guard dependency (e.g. the manager's `caller_scope`)."""
    GUARDS[func] = statuses


def _description(status: int) -> str:
    return {400: "Bad Request: invalid body or parameters, or refused (Evolution's envelope)",
            401: "Unauthorized: missing or wrong `apikey`",
            403: "Forbidden: name or token already in use",
            404: "Not Found: no such instance (checked before the key, as Evolution does)",
            413: "Payload Too Large"}.get(status, HTTPStatus(status).phrase)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each status as JSON with the `ErrorEnvelope` schema, whatever the route's
    own media type (an SSE or text route still answers errors as JSON). Reusable by every router."""
    return {status: {"description": _description(status),
                     "content": {"application/json": {"schema": dict(_ENVELOPE_REF)}}} for status in statuses}


def never_succeeds(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a handler that always answers an error: its default success response is not documented."""
    func.__evolink_never_succeeds__ = True  # type: ignore[attr-defined]
    return func


def _guards(dependant: Dependant) -> set[int]:
    found: set[int] = set()
    for dep in dependant.dependencies:
        if dep.call in GUARDS:
            found.update(GUARDS[dep.call])
        found |= _guards(dep)
    return found


def _inferred(route: RouteContext) -> tuple[set[int], bool]:
    guarded = _guards(route.dependant)  # the effective route: include-level dependencies count too
    statuses = set(guarded)
    extra = getattr(route.original_route, "openapi_extra", None) or {}
    if route.body_field is not None or "requestBody" in extra:  # a declared body read by hand counts too
        statuses.update(BODY_ERRORS)
    return statuses, bool(guarded)


def _routes(app: FastAPI) -> Iterable[RouteContext]:
    """Every API route with its effective path (FastAPI keeps included routers nested)."""
    return (c for c in iter_route_contexts(app.routes)
            if isinstance(c.original_route, APIRoute) and c.original_route.include_in_schema)


def _process(app: FastAPI, spec: dict[str, Any]) -> None:
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    _, defs = models_json_schema([(ErrorEnvelope, "serialization")], ref_template="#/components/schemas/{model}")
    for name, schema in defs.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["securitySchemes"] = {SCHEME: {"type": "apiKey", "in": "header", "name": "apikey",
                                              "description": "the global API key, or an instance's token "
                                                             "(that instance's routes only)"}}
    for route in _routes(app):
        statuses, guarded = _inferred(route)
        for method in route.methods or ():
            op = spec["paths"].get(route.path_format or "", {}).get(method.lower())
            if op is None:
                continue
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            for status in sorted(statuses):
                responses.setdefault(str(status), {"description": _description(status),
                                                   "content": {"application/json": {"schema": _ENVELOPE_REF}}})
            if getattr(getattr(route.original_route, "endpoint", None), "__evolink_never_succeeds__", False):
                responses.pop(str(route.status_code or 200), None)
            if guarded:
                op.setdefault("security", [{SCHEME: []}])


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` by the generated document, post-processed once (see the module doc)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        spec = generate()
        if SCHEME not in spec.get("components", {}).get("securitySchemes", {}):
            _process(app, spec)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
