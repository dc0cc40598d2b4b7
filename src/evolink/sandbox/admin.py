"""Admin HTTP/1.1 JSON API of the sandbox (the stable control surface other tests build on).

A deliberately small server on ``asyncio.start_server``: the sandbox needs a handful of JSON routes,
full control of the ``Date`` header (sandbox clock) and no extra framework in the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from evolink.sandbox.errors import AdminError
from evolink.sandbox.faults import Faults

if TYPE_CHECKING:
    from evolink.sandbox.server import Sandbox

log = logging.getLogger("evolink.sandbox.admin")

MAX_BODY = 1 << 20
MAX_HEADER_LINES = 100
KEEPALIVE_IDLE = 30.0

Handler = Callable[[dict[str, str], Any], Awaitable[tuple[int, Any]]]


class AdminServer:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sb = sandbox
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._install_routes()

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._client, host, port, limit=1 << 16)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Closing the sockets ends each client loop on EOF (cancelling the tasks would make
        # asyncio's stream callback log the CancelledError).
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    # ---------------------------------------------------------------------------- routes
    def _route(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        self._routes.append((method, regex, handler))

    def _install_routes(self) -> None:
        sb = self.sb

        async def info(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, {**sb.info(), "clock": sb.clock_json()}

        async def create_phone(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 201, sb.create_phone(_field(body, "phone"))

        async def list_phones(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.list_phones()

        async def get_phone(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.get_phone(p["phone"])

        async def scan(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, await sb.scan(p["phone"], _field(body, "qr"))

        async def link_code(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, await sb.link_code(p["phone"], _field(body, "code"))

        async def remove_device(p: dict[str, str], body: Any) -> tuple[int, Any]:
            await sb.remove_device(p["phone"], p["device"])
            return 200, {"removed": True, "phone": p["phone"], "device": int(p["device"])}

        async def connections(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.list_connections()

        async def connection(p: dict[str, str], body: Any) -> tuple[int, Any]:
            conn = sb.connections.get(p["id"])
            if conn is None:
                raise AdminError(404, "connection_not_found", f"no connection {p['id']}")
            return 200, conn.to_json()

        async def kick(p: dict[str, str], body: Any) -> tuple[int, Any]:
            await sb.kick(p["id"], _field(body, "code"))
            return 200, {"kicked": p["id"]}

        async def get_clock(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.clock_json()

        async def put_clock(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.set_clock_offset(_field(body, "offset_seconds"))

        async def get_faults(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.faults.to_json()

        async def put_faults(p: dict[str, str], body: Any) -> tuple[int, Any]:
            if not isinstance(body, dict):
                raise AdminError(400, "invalid_body", "expected a JSON object")
            sb.faults = Faults.from_json(body)
            return 200, sb.faults.to_json()

        async def get_cert(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.cert_json()

        async def put_cert(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.set_cert_validity(_field(body, "not_before"), _field(body, "not_after"))

        async def create_group(p: dict[str, str], body: Any) -> tuple[int, Any]:
            if not isinstance(body, dict):
                raise AdminError(400, "invalid_body", "expected a JSON object")
            return 201, sb.create_group(_field(body, "subject"), _field(body, "members"), body.get("creator"),
                                        body.get("addressing_mode", "lid"))

        async def list_groups(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.list_groups()

        async def get_group(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.group_json(p["group"])

        async def phone_messages(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.phone_messages(p["phone"])

        async def phone_send(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.phone_send(p["phone"], _field(body, "to"), _field(body, "text"))

        async def push_name(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.set_push_name(p["phone"], _field(body, "name"))

        async def phone_received(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.phone_received(p["phone"])

        async def phone_read(p: dict[str, str], body: Any) -> tuple[int, Any]:
            return 200, sb.phone_read(p["phone"], _field(body, "ids"))

        self._route("POST", "/admin/phones/{phone}/send", phone_send)
        self._route("POST", "/admin/phones/{phone}/push-name", push_name)
        self._route("GET", "/admin/phones/{phone}/received", phone_received)
        self._route("POST", "/admin/phones/{phone}/read", phone_read)
        self._route("POST", "/admin/groups", create_group)
        self._route("GET", "/admin/groups", list_groups)
        self._route("GET", "/admin/groups/{group}", get_group)
        self._route("GET", "/admin/phones/{phone}/messages", phone_messages)
        self._route("GET", "/admin", info)
        self._route("GET", "/admin/info", info)
        self._route("POST", "/admin/phones", create_phone)
        self._route("GET", "/admin/phones", list_phones)
        self._route("GET", "/admin/phones/{phone}", get_phone)
        self._route("POST", "/admin/phones/{phone}/scan", scan)
        self._route("POST", "/admin/phones/{phone}/link-code", link_code)
        self._route("DELETE", "/admin/phones/{phone}/devices/{device}", remove_device)
        self._route("GET", "/admin/connections", connections)
        self._route("GET", "/admin/connections/{id}", connection)
        self._route("POST", "/admin/connections/{id}/kick", kick)
        self._route("GET", "/admin/clock", get_clock)
        self._route("PUT", "/admin/clock", put_clock)
        self._route("GET", "/admin/faults", get_faults)
        self._route("PUT", "/admin/faults", put_faults)
        self._route("GET", "/admin/cert", get_cert)
        self._route("PUT", "/admin/cert", put_cert)

    async def dispatch(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        path = path.split("?", 1)[0].rstrip("/") or "/"
        allowed = []
        for route_method, regex, handler in self._routes:
            match = regex.match(path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            try:
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                return await handler(params, body)
            except AdminError as exc:
                return exc.status, {"error": exc.error, "message": exc.message}
        if allowed:
            return 405, {"error": "method_not_allowed", "message": f"allowed: {', '.join(sorted(set(allowed)))}"}
        return 404, {"error": "not_found", "message": f"no route {method} {path}"}

    # ------------------------------------------------------------------------------ HTTP
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    request = await asyncio.wait_for(_read_request(reader), KEEPALIVE_IDLE)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                except ValueError:  # a line longer than the stream limit
                    await _write(writer, 431, {"error": "bad_request", "message": "request line or header too long"},
                                 self.sb.clock.http_date(), keep_alive=False)
                    return
                except _BadRequest as exc:
                    await _write(writer, exc.status, {"error": "bad_request", "message": str(exc)},
                                 self.sb.clock.http_date(), keep_alive=False)
                    return
                if request is None:
                    return
                method, path, body, keep_alive = request
                try:
                    status, payload = await self.dispatch(method, path, body)
                except Exception:
                    log.exception("admin handler failed", extra={"method": method, "path": path})
                    status, payload = 500, {"error": "internal", "message": "internal error"}
                await _write(writer, status, payload, self.sb.clock.http_date(), keep_alive=keep_alive)
                if not keep_alive:
                    return
        except ConnectionError:
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()
            self._writers.discard(writer)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _field(body: Any, name: str) -> Any:
    if not isinstance(body, dict):
        raise AdminError(400, "invalid_body", "expected a JSON object")
    if name not in body:
        raise AdminError(400, "missing_field", f"missing field '{name}'")
    return body[name]


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, Any, bool] | None:
    line = await reader.readline()
    if not line:
        return None
    try:
        method, target, version = line.decode("latin-1").strip().split(" ")
    except ValueError as exc:
        raise _BadRequest(400, "malformed request line") from exc
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADER_LINES):
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    else:
        raise _BadRequest(431, "too many headers")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _BadRequest(411, "chunked bodies are not supported; send Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as exc:
        raise _BadRequest(400, "bad Content-Length") from exc
    if not 0 <= length <= MAX_BODY:
        raise _BadRequest(413, "body too large")
    raw_body = await reader.readexactly(length) if length else b""
    body: Any = None
    if raw_body.strip():
        try:
            body = json.loads(raw_body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _BadRequest(400, f"body is not JSON: {exc}") from exc
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return method.upper(), target, body, keep_alive


async def _write(writer: asyncio.StreamWriter, status: int, payload: Any, date: str, *, keep_alive: bool) -> None:
    data = json.dumps(payload).encode()
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Date: {date}\r\n"
        "Server: evolink-sandbox\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + data)
    await writer.drain()
