"""Cluster mode: any node answers any route by forwarding instance requests to the owner node.

An Evolution route names its instance in the last path segment (`/instance/connect/{name}`,
`/message/sendText/{name}`, `/webhook/set/{name}` …). When another live node holds that instance's
lease, the request (method, path, query, headers, body) is sent to that node's `EVOLINK_NODE_URL`
over HTTP and its response is returned unchanged, so the caller gets the answer a single node gives.
A forwarded request carries `x-evolink-forwarded-by`, and is never forwarded again (no loops: the
owner answers, even if the lease moved meanwhile).

Hand-written as a small ASGI middleware (rather than a reverse-proxy library) because the routing
decision needs the lease table; the HTTP part is httpx.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import unquote

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("evolink.api.forward")

FORWARDED = "x-evolink-forwarded-by"
_HOP = {"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-authorization", "proxy-authenticate", "content-length", "content-encoding"}
_LOCAL_GROUPS = {"manager", "health", "metrics", "docs", "openapi.json", "assets"}


def instance_name(path: str) -> str | None:
    """The instance a route names (last segment of a 3-segment path), or None."""
    parts = [p for p in path.split("/") if p]
    if len(parts) != 3 or parts[0] in _LOCAL_GROUPS:
        return None
    return unquote(parts[2])


class ForwardToOwner:
    """ASGI middleware; a no-op unless `app.state.cluster` and `app.state.gateway` are set."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        target = await self._owner(scope)
        if target is None:
            await self.app(scope, receive, send)
            return
        node_id, url, alive = target
        if not alive or not url:
            await _unavailable(send, f"the node owning this instance ({node_id}) is not responding; "
                                     "another node takes it over within the lease time")
            return
        await self._forward(scope, receive, send, node_id, url.rstrip("/"))

    async def _owner(self, scope: Scope) -> tuple[str, str | None, bool] | None:
        state = scope["app"].state if "app" in scope else None
        cluster = getattr(state, "cluster", None)
        gateway = getattr(state, "gateway", None)
        if cluster is None or gateway is None:
            return None
        if any(k.decode().lower() == FORWARDED for k, _v in scope.get("headers", [])):
            return None
        name = instance_name(scope.get("path", ""))
        if name is None:
            return None
        try:
            row = await gateway.store.get_instance(name)
            if row is None or cluster.book.holds(row.id, cluster.now()):
                return None
            owner: tuple[str, str | None, bool] | None = await cluster.owner(row.id)
        except Exception:
            log.exception("owner lookup failed; answering locally", extra={"instance": name})
            return None
        return owner

    async def _forward(self, scope: Scope, receive: Receive, send: Send, node_id: str, base: str) -> None:
        body = b""
        while True:
            message: Message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", [])
                   if k.decode("latin-1").lower() not in _HOP]
        cluster = scope["app"].state.cluster
        headers.append((FORWARDED, cluster.node_id))
        url = base + scope.get("root_path", "") + scope["path"]
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=5.0))
        request = asyncio.ensure_future(self._client.request(scope["method"], url, headers=headers, content=body))
        try:
            # A paused owner accepts the TCP connection and never answers: stop waiting once its
            # heartbeat goes stale (the caller retries; another node takes the instance over).
            while not (await asyncio.wait({request}, timeout=cluster.interval))[0]:
                if not await cluster.node_alive(node_id):
                    request.cancel()
                    await _unavailable(send, f"the node owning this instance ({node_id}) stopped responding")
                    return
            resp = request.result()
        except httpx.HTTPError as exc:
            log.warning("forwarding to the owner node failed: %s", exc, extra={"url": base})
            await _unavailable(send, f"the node owning this instance did not answer: {exc}")
            return
        finally:
            if not request.done():
                request.cancel()
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.multi_items()
               if k.lower() not in _HOP]
        out.append((b"content-length", str(len(resp.content)).encode()))
        await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
        await send({"type": "http.response.body", "body": resp.content})


async def _unavailable(send: Send, message: str) -> None:
    """503 in Evolution's error envelope."""
    await _json(send, 503, {"status": 503, "error": "Service Unavailable", "response": {"message": [message]}})


async def _json(send: Send, status: int, payload: Any) -> None:
    import json

    raw = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
    await send({"type": "http.response.body", "body": raw})
