"""What a webhook destination may be: checked when it is configured (`/webhook/set`, `create`, the
`WEBHOOK_GLOBAL_URL` variable), so the delivery worker is never handed one it cannot send.

httpx only finds out at request time: a header name or value outside ASCII raises `UnicodeEncodeError`,
a port past 65535 fails inside the connection pool, and a caller-chosen `Content-Length` (or any other
framing header) contradicts the body httpx writes. The worker records such failures like an HTTP error
(see `DeliveryWorker._post`); these rules refuse them up front with a message naming the fault.

Rules (RFC 9110): the URL is `http(s)://host[:port]/…` with a host, a port in 1..65535 and no
whitespace or control characters; header names are tokens; values are printable ASCII (tab allowed,
no CR/LF) of at most 4096 characters, given as strings, numbers or booleans; framing and hop-by-hop
headers (`Content-Length`, `Transfer-Encoding`, `Host`, `Connection`, …) are the client's and are
refused; at most 50 headers. `jwt_key` is not sent as a header (it signs the `Authorization` JWT),
so its value only has to be a non-empty string.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

MAX_HEADERS = 50
MAX_HEADER_VALUE = 4096
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\t\x20-\x7e]*")
_URL_CHARS = re.compile(r"[\x21-\x7e]+")  # no spaces, controls or non-ASCII (IRIs must be percent-encoded)
RESERVED_HEADERS = frozenset({
    "content-length", "transfer-encoding", "host", "connection", "keep-alive", "proxy-connection", "te",
    "trailer", "upgrade", "expect",
})
JWT_KEY = "jwt_key"


class WebhookRuleError(ValueError):
    """A webhook URL or header that could never be sent; the message says why."""


def check_url(url: str) -> str:
    """`url` if it is a sendable http(s) URL, else `WebhookRuleError`."""
    if not _URL_CHARS.fullmatch(url):
        raise WebhookRuleError("url must be printable ASCII without spaces (percent-encode other characters)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRuleError(f"url is not valid: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookRuleError("url must start with http:// or https://")
    if not parts.hostname:
        raise WebhookRuleError("url has no host")
    if port is not None and not 1 <= port <= 65535:
        raise WebhookRuleError(f"url port {port} is out of range 1-65535")
    return url


def check_headers(headers: dict[str, Any] | None) -> dict[str, Any] | None:
    """`headers` if every entry can be sent as an HTTP header, else `WebhookRuleError`."""
    if headers is None:
        return None
    if len(headers) > MAX_HEADERS:
        raise WebhookRuleError(f"at most {MAX_HEADERS} headers")
    for name, value in headers.items():
        if name.lower() == JWT_KEY:
            if not isinstance(value, str):
                raise WebhookRuleError("jwt_key must be a string")
            continue
        if not _TOKEN.fullmatch(name):
            raise WebhookRuleError(f"header name {name!r} is not an HTTP token (ASCII letters, digits, !#$%&'*+-.^_`|~)")
        if name.lower() in RESERVED_HEADERS:
            raise WebhookRuleError(f"header {name!r} is set by the HTTP client and cannot be configured")
        if isinstance(value, bool):
            continue
        if not isinstance(value, str | int | float):
            raise WebhookRuleError(f"header {name!r}: value must be a string, number or boolean")
        text = str(value)
        if len(text) > MAX_HEADER_VALUE:
            raise WebhookRuleError(f"header {name!r}: value longer than {MAX_HEADER_VALUE} characters")
        if not _VALUE.fullmatch(text):
            raise WebhookRuleError(f"header {name!r}: value must be printable ASCII (no line breaks)")
    return headers
