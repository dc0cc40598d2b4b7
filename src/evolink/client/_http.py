"""Shared by both clients: headers, answer checking (Evolution's error envelope → typed errors)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from evolink.client.errors import ApiError, InstanceNotFound, Unauthorized


def headers(api_key: str) -> dict[str, str]:
    return {"apikey": api_key, "accept": "application/json"}


def path(template: str, instance: str) -> str:
    return template.format(quote(instance, safe=""))


def envelope_message(body: Any) -> str:
    """`response.message` of Evolution's envelope, unnested (it is a string, a list, or lists of lists)."""
    message: Any = body.get("response", {}).get("message") if isinstance(body, dict) else None
    if message is None and isinstance(body, dict):
        message = body.get("message") or body.get("error")
    while isinstance(message, list) and message:
        message = message[0]
    return str(message) if message not in (None, []) else ""


def checked(resp: httpx.Response) -> Any:
    """The JSON body of a 2xx answer; else the typed error."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.is_success:
        return body
    message = envelope_message(body) or resp.reason_phrase or "error"
    if resp.status_code == 401:
        raise Unauthorized(401, message, body=body)
    if resp.status_code == 404 and "does not exist" in message:
        raise InstanceNotFound(404, message, body=body)
    raise ApiError(resp.status_code, message, body=body)
