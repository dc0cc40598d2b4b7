"""Shared pieces of the routes evolink answers for Evolution integrations it does not run."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request

from evolink.api.auth import instance_guard
from evolink.api.errors import ApiError
from evolink.api.openapi import error_responses, never_succeeds

Handler = Callable[..., Awaitable[Any]]


def not_supported(what: str, request: Request) -> ApiError:
    """400 in Evolution's envelope (the status Evolution gives a disabled integration), naming the call."""
    return ApiError(400, f"{what} is not supported by evolink: {request.method} {request.url.path} changes nothing "
                         "(evolink runs no such integration; see docs/gateway.md)")


def constant(value: Any) -> Callable[[], Any]:
    """An answer function returning a fresh copy of `value` on every call."""
    return lambda: copy.deepcopy(value)


def add_read(router: APIRouter, path: str, answer: Callable[[], Any], *, tag: str, summary: str,
             model: Any) -> None:
    """A guarded GET answering what an Evolution instance with nothing configured answers."""

    async def read(request: Request) -> Any:
        return answer()

    router.add_api_route(path, read, methods=["GET"], dependencies=[Depends(instance_guard)], tags=[tag],
                         summary=summary, operation_id=f"{tag}_{path.strip('/').replace('/', '_')}",
                         response_model=model)


def add_refusal(router: APIRouter, method: str, path: str, what: str, *, tag: str) -> None:
    """A guarded write answering a clear "not supported by evolink" error instead of a 404."""

    @never_succeeds
    async def refuse(request: Request) -> Any:
        raise not_supported(what, request)

    router.add_api_route(path, refuse, methods=[method], dependencies=[Depends(instance_guard)], tags=[tag],
                         summary=f"Not supported by evolink (400): {what}",
                         operation_id=f"{tag}_{method.lower()}_{path.strip('/').replace('/', '_')}",
                         responses=error_responses(400))
