"""The sandbox process: WebSocket server, admin API, state, clock, faults and connection registry.

In-process use (tests)::

    async with Sandbox.start(qr_first_ttl=2, pairing_code_ttl=5) as sb:
        sb.ws_url, sb.admin_url, sb.root_public_key
        sb.create_phone("15550001111")
        await sb.link_code("15550001111", "ABCD-1234")

Every admin HTTP endpoint maps to one method here, so tests can use either.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import itertools
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from evolink.sandbox import stanzas
from evolink.sandbox.admin import AdminServer
from evolink.sandbox.clock import SandboxClock
from evolink.sandbox.config import SandboxConfig
from evolink.sandbox.connection import Connection
from evolink.sandbox.directory import Directory
from evolink.sandbox.errors import AdminError
from evolink.sandbox.faults import Faults, IqError
from evolink.sandbox.messaging_admin import MessagingControls
from evolink.sandbox.phone_keys import PhoneKeys
from evolink.sandbox.phone_signal import PhoneSignal
from evolink.sandbox.router import Router
from evolink.sandbox.routing_store import RoutingStore
from evolink.sandbox.services import Services
from evolink.sandbox.store import SandboxStore, normalize_phone
from evolink.sandbox.tls import server_ssl_context
from evolink.wire import certs, qr
from evolink.wire.binary import Node
from evolink.wire.crypto import PAIRING_ALPHABET, KeyPair
from evolink.wire.errors import WireError

log = logging.getLogger("evolink.sandbox")

WS_PATH = "/ws/chat"
MAX_CLOSED_KEPT = 200  # closed connections kept for GET /admin/connections
KICK_CODES = (401, 408, 428, 440, 500, 503, 515)


class Sandbox(MessagingControls):
    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.clock = SandboxClock(self.config.clock_offset)
        self.faults = Faults()
        self.store = SandboxStore(self.config.data_dir)
        self.routing = RoutingStore(self.store.db)
        self.directory = Directory(self.store)
        self.phone_keys = PhoneKeys(self.store.db, self.routing)
        for record in self.store.list_phones():
            self.phone_keys.ensure(record.phone, record.identity_private)
        self.router = Router(Services(self, self.directory, self.routing), self.live_connection,
                             self._phone_received, self.phone_keys.top_up, lambda: self._live.values())
        self.phone_inbox: dict[str, deque[Node]] = {}
        self.phone_signal = PhoneSignal(self.router, self.phone_keys,
                                        lambda phone: self._phone(phone).identity_private)
        self.root = self._load_root()
        # Intermediate and leaf (= Noise static) keys are per process, like a server rotating them.
        self.intermediate = KeyPair.generate()
        self.server_static = KeyPair.generate()
        self.cert_not_before = self.config.cert_not_before
        self.cert_not_after = self.config.cert_not_after
        self.connections: OrderedDict[str, Connection] = OrderedDict()
        # Logged-in sockets by (phone, device): login, replacement, removal and "online" are O(1).
        self._live: dict[tuple[str, int], Connection] = {}
        self._closed_ids: deque[str] = deque()  # closed connections kept for listing, oldest first
        self._ids = itertools.count(1)
        self._ws_server: Server | None = None
        self._admin: AdminServer | None = None
        self.ws_url = ""
        self.admin_url = ""

    # ----------------------------------------------------------------------- lifecycle
    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, config: SandboxConfig | None = None, **overrides: Any) -> AsyncIterator[Sandbox]:
        """Start on free ports (by default) and stop on exit; ``overrides`` patch ``config``."""
        cfg = dataclasses.replace(config or SandboxConfig(), **overrides)
        sandbox = cls(cfg)
        await sandbox.open()
        try:
            yield sandbox
        finally:
            await sandbox.aclose()

    async def open(self) -> None:
        cfg = self.config
        ssl_ctx = server_ssl_context(cfg.host, cfg.data_dir) if cfg.tls else None
        self._ws_server = await serve(
            self._handle,
            cfg.host,
            cfg.port,
            ssl=ssl_ctx,
            process_request=self._process_request,
            process_response=self._process_response,
            compression=None,  # declining permessage-deflate works with both clients
            ping_interval=None,  # liveness is the client's w:p keepalive plus our idle timeout
            max_size=cfg.max_frame_size + 1024,  # one frame plus the intro header
            open_timeout=cfg.handshake_timeout,
            backlog=cfg.backlog,
            close_timeout=2,
            server_header="evolink-sandbox",
        )
        ws_port = self._ws_server.sockets[0].getsockname()[1]
        self._admin = AdminServer(self)
        admin_port = await self._admin.start(cfg.host, cfg.admin_port)
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        self.ws_url = f"{'wss' if cfg.tls else 'ws'}://{host}:{ws_port}{WS_PATH}"
        self.admin_url = f"http://{host}:{admin_port}"
        log.info("sandbox listening", extra={"ws_url": self.ws_url, "admin_url": self.admin_url})

    async def aclose(self) -> None:
        if self._admin is not None:
            await self._admin.stop()
        if self._ws_server is not None:
            self._ws_server.close(close_connections=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws_server.wait_closed(), 5)
        self.store.close()

    async def serve_forever(self) -> None:
        assert self._ws_server is not None
        await self._ws_server.serve_forever()

    @property
    def root_public_key(self) -> str:
        """Hex of the 32-byte trust root (give it to clients as WA_CERT_DETAILS.PUBLIC_KEY)."""
        return self.root.public.hex()

    def info(self) -> dict[str, str]:
        return {"ws_url": self.ws_url, "admin_url": self.admin_url, "root_public_key": self.root_public_key}

    def _load_root(self) -> KeyPair:
        stored = self.store.get_meta("root_private")
        if stored is not None:
            return KeyPair.from_private(stored)
        root = KeyPair.generate()
        self.store.set_meta("root_private", root.private)
        return root

    def cert_chain(self) -> bytes:
        now = int(self.clock.time())
        return certs.build_cert_chain(
            self.root, self.intermediate, self.server_static.public,
            not_before=max(0, now + int(self.cert_not_before)), not_after=max(0, now + int(self.cert_not_after)),
        )

    # ------------------------------------------------------------------------ websocket
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            return None
        if path == "/":
            # A plain GET gives clients an HTTP Date to compare clocks before any login.
            return connection.respond(http.HTTPStatus.OK, "evolink sandbox\n")
        return connection.respond(http.HTTPStatus.NOT_FOUND, "not found\n")

    def _process_response(self, connection: ServerConnection, request: Request, response: Response) -> None:
        headers: Headers = response.headers
        del headers["Date"]
        headers["Date"] = self.clock.http_date()

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Connection(self, ws, f"c{next(self._ids)}")
        self.connections[conn.id] = conn
        await conn.run()

    def connection_closed(self, conn: Connection) -> None:
        self._closed_ids.append(conn.id)
        while len(self._closed_ids) > MAX_CLOSED_KEPT:
            self.connections.pop(self._closed_ids.popleft(), None)

    def _open_connections(self) -> list[Connection]:
        return [c for c in self.connections.values() if c.open]

    def live_connection(self, phone: str, device: int) -> Connection | None:
        conn = self._live.get((phone, device))
        return conn if conn is not None and conn.open else None

    def connection_logged_in(self, conn: Connection) -> None:
        """A device logging in again replaces its older socket, as on the real service.

        The old socket is told ``replaced`` and closes in the background: the new login never
        waits for it (it may be stalled behind the latency fault or a client that stopped reading).
        """
        assert conn.phone is not None and conn.device is not None
        key = (conn.phone, conn.device)
        old = self._live.get(key)
        self._live[key] = conn
        if old is not None and old is not conn:
            old.begin_close(1000, "kicked with 440", stanzas.stream_error(440))

    def connection_closing(self, conn: Connection) -> None:
        if conn.phone is not None and conn.device is not None:
            key = (conn.phone, conn.device)
            if self._live.get(key) is conn:
                del self._live[key]

    async def device_logged_out(self, conn: Connection) -> None:
        """The companion asked to be removed (logout): forget it and end its stream with 401."""
        if conn.phone is not None and conn.device is not None:
            await self.remove_device(conn.phone, conn.device)

    # ------------------------------------------------------------------------- controls
    def _phone(self, phone: object) -> Any:
        number = normalize_phone(phone)
        record = self.store.get_phone(number)
        if record is None:
            raise AdminError(404, "phone_not_found", f"no phone {number}")
        return record

    def create_phone(self, phone: object) -> dict[str, Any]:
        number = normalize_phone(phone)
        account = KeyPair.generate()
        record = self.store.create_phone(number, account.private, account.public, self.clock.unix())
        self.phone_keys.ensure(number, account.private)
        self.router.sv.push_names[number] = f"Phone {number[-4:]}"  # what messages from it carry as notify
        log.info("phone created", extra={"phone": number})
        return {**record.to_json(), "devices": []}

    def get_phone(self, phone: object) -> dict[str, Any]:
        record = self._phone(phone)
        devices = []
        for dev in self.store.list_devices(record.phone):
            devices.append({**dev.to_json(), "online": self.live_connection(dev.phone, dev.device) is not None,
                            "queued": self.routing.queue_length(dev.phone, dev.device),
                            "prekeys_left": self.routing.prekey_count(dev.phone, dev.device)})
        return {**record.to_json(), "devices": devices}

    def list_phones(self) -> list[dict[str, Any]]:
        return [self.get_phone(p.phone) for p in self.store.list_phones()]

    async def scan(self, phone: object, qr_string: object) -> dict[str, Any]:
        """The phone scans a QR code shown by a companion; returns the linked device."""
        record = self._phone(phone)
        if not isinstance(qr_string, str) or not qr_string.strip():
            raise AdminError(400, "invalid_qr", "qr must be a non-empty string")
        try:
            data = qr.parse_qr(qr_string.strip())
        except WireError as exc:
            raise AdminError(400, "invalid_qr", str(exc)) from exc
        conn = next((c for c in reversed(self._open_connections()) if c.has_ref(data.ref)), None)
        if conn is None:
            raise AdminError(404, "unknown_ref", "no open registration socket showed this QR code")
        if not conn.current_ref_valid(data.ref):
            raise AdminError(410, "expired", "this QR code has expired")
        device = await conn.scan(record, data.noise_public, data.identity_public, data.adv_secret, data.platform_id)
        return device.to_json()

    async def link_code(self, phone: object, code: object) -> dict[str, Any]:
        """The phone's user types a pairing code shown by a companion; returns the linked device."""
        record = self._phone(phone)
        if not isinstance(code, str):
            raise AdminError(400, "invalid_code", "code must be a string")
        normalized = code.replace("-", "").replace(" ", "").upper()
        if len(normalized) != 8 or any(ch not in PAIRING_ALPHABET for ch in normalized):
            raise AdminError(400, "invalid_code", "code must be 8 characters of the pairing alphabet")
        conn = next(
            (c for c in reversed(self._open_connections())
             if c.code_registration is not None and c.code_registration.phone == record.phone),
            None,
        )
        if conn is None:
            raise AdminError(404, "no_pending_registration", f"no pairing-code registration for {record.phone}")
        device = await conn.enter_code(record, normalized)
        return device.to_json()

    async def remove_device(self, phone: object, device: object) -> None:
        record = self._phone(phone)
        try:
            number = int(str(device))
        except ValueError as exc:
            raise AdminError(400, "invalid_device", "device must be an integer") from exc
        if not self.store.remove_device(record.phone, number):
            raise AdminError(404, "device_not_found", f"no device {number} on {record.phone}")
        self.router.device_removed(record.phone, number)
        log.info("device removed", extra={"phone": record.phone, "device": number})
        conn = self.live_connection(record.phone, number)
        if conn is not None:
            await conn.kick(401)

    def list_connections(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.connections.values()]

    async def kick(self, conn_id: str, code: object) -> None:
        if not isinstance(code, int) or isinstance(code, bool) or code not in KICK_CODES:
            raise AdminError(400, "invalid_code", f"code must be one of {list(KICK_CODES)}")
        conn = self.connections.get(conn_id)
        if conn is None:
            raise AdminError(404, "connection_not_found", f"no connection {conn_id}")
        if not conn.open:
            raise AdminError(409, "connection_closed", f"connection {conn_id} is already closed")
        await conn.kick(code)

    def set_clock_offset(self, offset_seconds: object) -> dict[str, Any]:
        if not isinstance(offset_seconds, int | float) or isinstance(offset_seconds, bool):
            raise AdminError(400, "invalid_offset", "offset_seconds must be a number")
        if abs(offset_seconds) > 100 * 365 * 86400:
            raise AdminError(400, "invalid_offset", "offset_seconds is out of range")
        self.clock.set_offset(float(offset_seconds))
        return self.clock_json()

    def clock_json(self) -> dict[str, Any]:
        return {"offset_seconds": self.clock.offset, "now": self.clock.time(), "iso": self.clock.now().isoformat()}

    def set_faults(self, latency_ms: int = 0, drop_after_frames: int | None = None,
                   companion_hello_error: IqError | dict[str, Any] | None = None) -> dict[str, Any]:
        """Replace the whole fault set (omitted faults are cleared), like ``PUT /admin/faults``.

        ``companion_hello_error``: ``{"code": 429, "text": "rate-overlimit"}`` (or an ``IqError``)
        makes every pairing-code request fail with that iq error.
        """
        self.faults = Faults.from_json({"latency_ms": latency_ms, "drop_after_frames": drop_after_frames,
                                        "companion_hello_error": companion_hello_error})
        return self.faults.to_json()

    def set_cert_validity(self, not_before: object, not_after: object) -> dict[str, Any]:
        """Certificate window relative to sandbox now (seconds), for clients that check it."""
        for value in (not_before, not_after):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise AdminError(400, "invalid_cert_validity", "not_before/not_after must be numbers")
        assert isinstance(not_before, int | float) and isinstance(not_after, int | float)
        self.cert_not_before, self.cert_not_after = float(not_before), float(not_after)
        return self.cert_json()

    def cert_json(self) -> dict[str, Any]:
        return {"not_before": self.cert_not_before, "not_after": self.cert_not_after}

