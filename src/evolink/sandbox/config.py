"""Sandbox configuration: every timing knob the real service has, shortened freely in tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DAY = 86_400.0


@dataclass(slots=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 0  # WebSocket port (0 = pick a free one)
    admin_port: int = 0  # admin HTTP port (0 = pick a free one)
    tls: bool = False  # wss:// with a self-signed certificate (admin stays plain http)
    data_dir: Path | None = None  # None = state kept in memory
    clock_offset: float = 0.0  # sandbox time = host time + offset (seconds)

    # QR linking: number of refs in pair-device, lifetime of the first and of each later ref.
    qr_ref_count: int = 6
    qr_first_ttl: float = 60.0
    qr_next_ttl: float = 20.0
    # Extra time after the last ref expires before the server closes the registration socket
    # (Baileys ends it itself with 408 at exactly the end of its own rotation).
    qr_close_grace: float = 2.0
    # Pairing-code registration lifetime (sandbox clock).
    pairing_code_ttl: float = 180.0

    # Certificate validity, relative to the sandbox time when a connection is accepted.
    cert_not_before: float = -1 * DAY
    cert_not_after: float = 30 * DAY

    handshake_timeout: float = 20.0  # socket must finish Noise within this
    idle_timeout: float = 60.0  # no frame from the client for this long -> close
    link_timeout: float = 15.0  # admin scan/link-code waits this long for the client's answers
    max_frame_size: int = (1 << 24) - 1
    # Listen backlog of the WebSocket port (the kernel caps it at net.core.somaxconn). asyncio's
    # default of 100 drops SYNs when thousands of clients reconnect at once, and the kernel's SYN
    # retransmit backoff (1, 3, 7, 15, 31 s…) then stretches a login storm to a minute.
    backlog: int = 4096

    # After login, tell the client its edge routing info (<ib><edge_routing>), as the real service
    # does; Baileys then opens later sockets with the "ED" intro. None disables it.
    edge_routing_info: bytes | None = b"\x08\x08\x08\x02"

    # Primary phone's platform announced in pair-success.
    phone_platform: str = "android"

    # Oldest WA Web version (ClientPayload userAgent.appVersion) accepted: an older one gets
    # `<failure reason="405"/>` after the handshake, for login and registration alike, as the real service
    # answers a retired version. None accepts any version.
    min_client_version: tuple[int, int, int] | None = None
