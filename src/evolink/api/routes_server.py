"""Server-level routes the Evolution manager calls before any instance page: `POST /verify-creds`.

Evolution 2.3.7 guards it with `authGuard.apikey` and no `:instanceName` in the path, so only the
global key passes: an instance token or a wrong key gets the guard's 401 (`"Unauthorized"` string).
The body carries `FACEBOOK_APP_ID`/`FACEBOOK_CONFIG_ID`/`FACEBOOK_USER_TOKEN`; Express drops keys whose
value is undefined, so unset ones are absent from the JSON, as here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from evolink.api.auth import global_guard
from evolink.api.context import GatewayContext, get_context
from evolink.api.responses import VerifyCreds

router = APIRouter(tags=["server"])


@router.post("/verify-creds", dependencies=[Depends(global_guard)],
             summary="Check the global API key (the manager's sign-in)", response_model=VerifyCreds, response_model_exclude_unset=True)
async def verify_creds(ctx: GatewayContext = Depends(get_context)) -> dict[str, Any]:
    s = ctx.settings
    body: dict[str, Any] = {"status": 200, "message": "Credentials are valid"}
    for key, value in (("facebookAppId", s.FACEBOOK_APP_ID), ("facebookConfigId", s.FACEBOOK_CONFIG_ID),
                       ("facebookUserToken", s.FACEBOOK_USER_TOKEN)):
        if value is not None:
            body[key] = value
    return body
