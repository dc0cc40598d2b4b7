"""The socket.io server (python-socketio) that carries events to WebSocket clients, Evolution-style.

Clients connect to `/socket.io/` with the API key as the `apikey` query parameter, `apikey` header
or `auth: {apikey}`. The default namespace `/` gets every event when WEBSOCKET_GLOBAL_EVENTS=true;
namespace `/{instance}` gets the events its `/websocket/set` row lists. The global key opens every
namespace; an instance token opens only its own instance's namespace (Evolution lets any instance
token, or any loopback client without a key, listen to everything: evolink does not).

Emission is the sender side of the outbox: `send` hands the row to socket.io, which writes it to the
connected sockets of that namespace (a namespace nobody listens on drops it, as in Evolution).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import socketio

from evolink.gateway.senders import BROKER_POLICY, SendResult
from evolink.gateway.webhooks import RetryPolicy

log = logging.getLogger("evolink.gateway.websocket")

# async (presented key or None, namespace) -> True when the key may listen there
Authorizer = Callable[[str | None, str], Awaitable[bool]]


def presented_key(environ: dict[str, Any], auth: Any) -> str | None:
    """The key a socket.io client presents: `auth.apikey`, the `apikey` query parameter, or header."""
    if isinstance(auth, dict) and isinstance(auth.get("apikey"), str) and auth["apikey"]:
        return str(auth["apikey"])
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if query.get("apikey") and query["apikey"][0]:
        return str(query["apikey"][0])
    header = environ.get("HTTP_APIKEY")
    return str(header) if header else None


class SocketHub:
    def __init__(self, authorize: Authorizer, *, cors_origins: list[str] | str = "*",
                 policy: RetryPolicy = BROKER_POLICY) -> None:
        self.policy = policy
        self._authorize = authorize
        origins: list[str] | str = "*" if cors_origins == "*" or "*" in cors_origins else list(cors_origins)
        self.server = socketio.AsyncServer(async_mode="asgi", namespaces="*", cors_allowed_origins=origins,
                                           logger=False, engineio_logger=False)
        self.server.on("connect", self._on_connect, namespace="*")
        self.asgi = socketio.ASGIApp(self.server, socketio_path="socket.io")

    async def _on_connect(self, namespace: str, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        key = presented_key(environ, auth)
        if key is None:
            raise socketio.exceptions.ConnectionRefusedError("apiKey is required")
        if not await self._authorize(key, namespace):
            log.info("websocket client refused", extra={"namespace": namespace})
            raise socketio.exceptions.ConnectionRefusedError("Invalid token")

    async def send(self, address: dict[str, str], event: str, payload: dict[str, Any],
                   message_id: str) -> SendResult:
        try:
            await self.server.emit(event, payload, namespace=address.get("namespace", "/"))
        except Exception as exc:  # never raises in practice; a failure must not escape the worker
            return SendResult.unreachable(f"socket.io emit failed: {type(exc).__name__}: {exc}")
        return SendResult.done()

    async def close(self) -> None:
        return None
