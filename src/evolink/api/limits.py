"""Request body limits, and authentication before any body byte is read (issue 10 item 2).

A pure ASGI middleware in front of every route:

1. A request that announces a body (``Content-Length`` > 0 or ``Transfer-Encoding``) to a route must
   carry an ``apikey`` header that is the global key or the token of one of this installation's
   instances; otherwise it is answered at once, in the guards' order (404 for an instance of the path
   that does not exist, else 401), and its body is never read.
2. ``Content-Length`` above the limit of the path → 413 at once, body unread.
3. A chunked (or lying) body is counted as it streams; the chunk that crosses the limit raises a 413
   instead of being handed to the route, so at most ``limit`` bytes (plus one chunk) are ever held.

Every refusal is Evolution's error envelope. After a refusal uvicorn closes the connection instead of
draining the unread body. Limits: ``EVOLINK_MAX_BODY_BYTES`` (default 1 MiB) for every route,
``EVOLINK_MAX_MESSAGE_BODY_BYTES`` (default 32 MiB) for ``/message/*`` (base64 media); see
docs/security.md.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.routing import Match

from evolink.api.errors import envelope
from evolink.gateway.inputs import lookup_name

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MIB = 1024 * 1024
DEFAULT_MAX_BODY = 1 * MIB
DEFAULT_MAX_MESSAGE_BODY = 32 * MIB
MESSAGE_PREFIX = "/message/"

Refusal = tuple[int, Any]
PreAuth = Callable[[Scope, str], Awaitable[Refusal | None]]


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """The largest body accepted per path prefix (longest matching prefix wins)."""

    default: int = DEFAULT_MAX_BODY
    by_prefix: tuple[tuple[str, int], ...] = ((MESSAGE_PREFIX, DEFAULT_MAX_MESSAGE_BODY),)

    def for_path(self, path: str) -> int:
        best, limit = -1, self.default
        for prefix, value in self.by_prefix:
            if path.startswith(prefix) and len(prefix) > best:
                best, limit = len(prefix), value
        return limit


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body crosses its limit (FastAPI re-raises HTTPException
    from body parsing, so the route never runs and the error handlers answer 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large_message(limit))


def too_large_message(limit: int) -> str:
    return f"Request body larger than {limit} bytes"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value)
    return None


async def _answer(send: Send, status: int, message: Any) -> None:
    body = json.dumps(envelope(status, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def _leaf_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The app's routes, with FastAPI's included-router wrappers opened (they match without path params)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


def _route_match(scope: Scope) -> dict[str, Any] | None:
    """The path parameters of the route this request reaches (None: no route, the app answers 404)."""
    app = scope.get("app")
    for route in _leaf_routes(getattr(getattr(app, "router", None), "routes", ())):
        match, child = route.matches(scope)
        if match is Match.FULL:
            params: dict[str, Any] = child.get("path_params") or {}
            return params
    return None


async def gateway_pre_auth(scope: Scope, key: str) -> Refusal | None:
    """None when the key is the global API key or a token of this installation's instances (the route's
    guard still decides whether it opens *this* instance); else the refusal, in the guards' order:
    an instance of the path that does not exist is 404, as without a body; a bad key is 401."""
    app = scope.get("app")
    ctx = getattr(getattr(app, "state", None), "gateway", None)
    params = _route_match(scope)
    if params is None:
        return None  # no such route: the app answers 404 without reading the body
    if ctx is None:  # lifespan not started: nothing to authenticate against
        return 401, "Unauthorized"
    if key and hmac.compare_digest(key.encode(), ctx.api_key.value.encode()):
        return None
    if key and await ctx.store.list_instances(token=key):
        return None
    name = params.get("instanceName")
    if isinstance(name, str) and await ctx.store.get_instance(lookup_name(name)) is None:
        return 404, [f'The "{name}" instance does not exist']
    return 401, "Unauthorized"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: BodyLimits, pre_auth: PreAuth = gateway_pre_auth) -> None:
        self.app = app
        self.limits = limits
        self.pre_auth = pre_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length_raw = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        try:
            length = int(length_raw) if length_raw is not None else 0
        except ValueError:
            await _answer(send, 400, ["Invalid Content-Length"])
            return
        if length <= 0 and not chunked:
            await self.app(scope, receive, send)
            return
        key = (_header(scope, b"apikey") or b"").decode("latin-1")
        refusal = await self.pre_auth(scope, key)
        if refusal is not None:
            await _answer(send, *refusal)
            return
        limit = self.limits.for_path(scope.get("path", ""))
        if length > limit:
            await _answer(send, 413, [too_large_message(limit)])
            return
        seen = 0
        started = False

        async def capped_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, capped_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _answer(send, 413, [too_large_message(limit)])
