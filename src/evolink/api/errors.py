"""Evolution's error envelope `{status, error, response: {message}}` for every error evolink answers.

- `ApiError(status, *messages)` → `message` is the list of messages (Evolution's thrown exceptions);
  `ApiError(401)` with no message → the string "Unauthorized", as Evolution's guard answers.
- Schema validation → 400 with the messages doubly nested (`[["..."]]`), as Evolution does.
- Unknown route → 404 `Cannot <METHOD> <path>` (Express's text); a method the path does not have → 405 with
  the same text and an `Allow` header (Express answers 404 there; 405 is what HTTP and the OpenAPI promise).
- Anything unexpected → 500 with the error's message string (never a traceback in the body).
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("evolink.api")


class ApiError(Exception):
    def __init__(self, status: int, *messages: Any) -> None:
        super().__init__(*messages)
        self.status = status
        self.messages = list(messages)

    @property
    def message(self) -> Any:
        if not self.messages:
            return HTTPStatus(self.status).phrase
        return self.messages


def envelope(status: int, message: Any) -> dict[str, Any]:
    return {"status": status, "error": HTTPStatus(status).phrase, "response": {"message": message}}


def error_response(status: int, message: Any) -> JSONResponse:
    return JSONResponse(envelope(status, message), status_code=status)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_messages(errors: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for err in errors:
        kind = err.get("type", "")
        where = _field(tuple(err.get("loc", ())))
        if kind == "missing":
            out.append(f'requires property "{where}"')
        elif kind == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "invalid JSON")
            out.append(f"Malformed JSON body: {detail}")
        else:
            out.append(f'"{where}" {err.get("msg", "is invalid")}'.replace("Value error, ", ""))
    return out


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on this path (Starlette's `Allow` names only the first)."""
    methods: set[str] = set()
    path = request.url.path
    for route in iter_route_contexts(request.app.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods.update(route.methods or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        messages = validation_messages(errors)
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, messages)  # a parse error, not a schema error: one level
        return error_response(400, [messages])

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(404, [f"Cannot {request.method.upper()} {request.url.path}"])
        if exc.status_code == 405:
            resp = error_response(405, [f"Cannot {request.method.upper()} {request.url.path}"])
            resp.headers["Allow"] = ", ".join(allowed_methods(request)) or (exc.headers or {}).get("Allow", "")
            return resp
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return error_response(exc.status_code, [detail])

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path, "method": request.method})
        return error_response(500, f"{type(exc).__name__}: {exc}")
