"""The I/O shell: a WebSocket carrying length-prefixed frames, then Noise-encrypted binary nodes.

Everything protocol-shaped is delegated to the sans-I/O ``evolink.wire`` modules; this file only
moves bytes, so it stays small and the engine logic above it can be tested against the sandbox.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from urllib.parse import quote, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidProxy, InvalidURI

from evolink.wa.config import EngineConfig
from evolink.wire import binary
from evolink.wire.binary import Node
from evolink.wire.frames import FrameReader, client_intro, encode_frame
from evolink.wire.noise import Transport

log = logging.getLogger("evolink.wa.socket")


class SocketClosed(Exception):
    """The WebSocket is gone (remote close, network error or our own close)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ConnectFailed(Exception):
    """The WebSocket could not be opened (DNS, TCP, TLS, proxy or HTTP upgrade)."""


def redact_proxy(url: str) -> str:
    """`scheme://user:***@host:port`: a proxy URL fit for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{parts.username or ''}:***@{host}"


def _scrub(text: str, proxy: str | None) -> str:
    """Remove the proxy password from an error text (some libraries quote the proxy URL)."""
    if not proxy:
        return text
    password = urlsplit(proxy).password
    if password:
        for form in {password, quote(password, safe="")}:
            text = text.replace(form, "***")
    return text


class FrameSocket:
    """A WebSocket speaking WA frames: intro + 3-byte length on the first send, reassembly on receive."""

    def __init__(self, ws: ClientConnection, routing_info: bytes | None, max_frame_size: int) -> None:
        self._ws = ws
        self._intro: bytes | None = client_intro(routing_info)
        self._reader = FrameReader(max_frame_size)
        self._ready: deque[bytes] = deque()

    @classmethod
    async def open(cls, config: EngineConfig, *, ssl_context: ssl.SSLContext | None = None,
                   routing_info: bytes | None = None) -> FrameSocket:
        kwargs: dict[str, object] = {}
        # The proxy named in every failure: "refused by the proxy" and "refused by WhatsApp" differ.
        via = f" (via proxy {redact_proxy(config.proxy)})" if config.proxy else ""
        if config.ws_url.startswith("wss://") and ssl_context is not None:
            kwargs["ssl"] = ssl_context
        try:
            ws = await asyncio.wait_for(
                connect(
                    config.ws_url,
                    origin=config.origin,  # type: ignore[arg-type]
                    additional_headers=list(config.extra_headers) or None,
                    proxy=config.proxy,
                    # App-level w:p pings do the liveness work; WS pings would double the wakeups.
                    ping_interval=None,
                    open_timeout=None,  # bounded by the wait_for above
                    max_size=None,  # frames are bounded by FrameReader instead
                    compression=None,  # server frames are small; deflate costs ~64 KiB per socket
                    user_agent_header=None,
                    **kwargs,  # type: ignore[arg-type]
                ),
                config.connect_timeout,
            )
        except TimeoutError:
            raise ConnectFailed(f"timed out after {config.connect_timeout:g}s opening {config.ws_url}{via}") from None
        except (OSError, InvalidHandshake, InvalidURI, InvalidProxy, ssl.SSLError, ImportError) as exc:
            raise ConnectFailed(f"{type(exc).__name__}: {_scrub(str(exc), config.proxy)}{via}") from None
        return cls(ws, routing_info, config.max_frame_size)

    async def send_frame(self, payload: bytes) -> None:
        data = encode_frame(payload)
        if self._intro is not None:
            data, self._intro = self._intro + data, None
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise SocketClosed(f"send on closed socket: {exc}") from None

    async def recv_frame(self) -> bytes:
        """Next complete frame; raises SocketClosed, or FrameError on an oversized/garbled stream."""
        while not self._ready:
            try:
                message = await self._ws.recv()
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                raise SocketClosed(f"connection closed ({code})", code) from None
            if isinstance(message, str):
                log.debug("ignoring text WebSocket message")
                continue
            self._ready.extend(self._reader.feed(message))
        return self._ready.popleft()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._ws.close(), 2.0)
        except (TimeoutError, OSError, ConnectionClosed):
            pass
        finally:
            # Never leave the transport half-open: two live sockets per engine is not allowed.
            transport = getattr(self._ws, "transport", None)
            if transport is not None:
                transport.abort()


class NoiseSocket:
    """Encrypted node stream on top of a finished handshake. Sends are serialised so the write nonce
    order always matches the order on the wire."""

    def __init__(self, frames: FrameSocket, transport: Transport) -> None:
        self.frames = frames
        self._transport = transport
        self._send_lock = asyncio.Lock()

    async def send_node(self, node: Node) -> None:
        body = binary.encode(node)
        async with self._send_lock:
            await self.frames.send_frame(self._transport.encrypt(body))

    async def recv_node(self) -> Node:
        """Next decrypted, decoded node; WireError on garbage, SocketClosed at the end."""
        frame = await self.frames.recv_frame()
        return binary.decode(self._transport.decrypt(frame))

    async def close(self) -> None:
        await self.frames.close()
