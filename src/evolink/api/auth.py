"""Evolution's guards, in its order: instance exists (404) → apikey (401).

The `apikey` header (case-insensitive, no Bearer) is accepted when it is the global key, or the
token of the instance named in the path. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, Request

from evolink.api.context import GatewayContext, get_context
from evolink.api.errors import ApiError
from evolink.gateway.inputs import lookup_name
from evolink.store.models import Instance


def same_key(a: str, b: str) -> bool:
    """Constant-time comparison of a presented key with a stored one."""
    return hmac.compare_digest(a.encode(), b.encode())


def presented_key(request: Request) -> str | None:
    key = request.headers.get("apikey")
    return key if key else None


async def instance_guard(instanceName: str, request: Request,
                         ctx: GatewayContext = Depends(get_context)) -> Instance:
    row = await ctx.store.get_instance(lookup_name(instanceName))  # names are stored NFKC
    if row is None:
        raise ApiError(404, f'The "{instanceName}" instance does not exist')
    key = presented_key(request)
    if key is None:
        raise ApiError(401)
    if same_key(key, ctx.api_key.value) or same_key(key, row.token):
        return row
    raise ApiError(401)


async def global_guard(request: Request, ctx: GatewayContext = Depends(get_context)) -> None:
    key = presented_key(request)
    if key is None or not same_key(key, ctx.api_key.value):
        raise ApiError(401)
