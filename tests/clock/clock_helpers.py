"""Loopback test doubles for the clock guard: SNTP responders and an HTTP Date server.

Responders tell *true* time (the test process's real clock) plus a configured skew, so a client whose
host clock is shifted (time injection or libfaketime in a child process) measures the shift.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formatdate
from typing import Any

from evolink.clock.config import NtpServer
from evolink.clock.kernel import KernelState
from evolink.clock.sntp import NtpPacket, decode_packet, encode_packet, unix_to_ntp


@dataclass
class Behaviour:
    skew: float = 0.0
    jitter: float = 0.0  # offset noise per reply, uniform in [-jitter, +jitter]
    silent: bool = False
    kod: str | None = None  # "RATE" | "DENY" | "RSTR" | other 4-letter code (stratum 0 reply)
    leap: int = 0
    stratum: int = 1
    bad_origin: bool = False
    zero_transmit: bool = False
    mode: int = 4
    root_dispersion: float = 0.0001
    seed: int = 1
    received: int = 0
    replies: list[float] = field(default_factory=list)  # the offsets actually served
    got_packet: asyncio.Event = field(default_factory=asyncio.Event)


class SntpResponder(asyncio.DatagramProtocol):
    def __init__(self, behaviour: Behaviour) -> None:
        self.b = behaviour
        self.rng = random.Random(behaviour.seed)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        b = self.b
        b.received += 1
        b.got_packet.set()
        if b.silent or self.transport is None:
            return
        noise = self.rng.uniform(-b.jitter, b.jitter) if b.jitter else 0.0
        t2 = time.time() + b.skew + noise
        req = decode_packet(data)
        origin = req.transmit_ts ^ 0xDEAD if b.bad_origin else req.transmit_ts
        stratum, ref = b.stratum, b"GPS\0"
        if b.kod is not None:
            stratum, ref = 0, b.kod.encode().ljust(4, b"\0")
        t3 = time.time() + b.skew + noise
        b.replies.append(b.skew + noise)
        reply = NtpPacket(b.leap, 4, b.mode, stratum, 4, -20, 0.0, b.root_dispersion, ref,
                          unix_to_ntp(t2 - 1), origin, unix_to_ntp(t2),
                          0 if b.zero_transmit else unix_to_ntp(t3))
        self.transport.sendto(encode_packet(reply), addr)


class Responders:
    """Start several responders on 127.0.0.1 (ephemeral ports); close them all at the end."""

    def __init__(self) -> None:
        self.transports: list[asyncio.DatagramTransport] = []

    async def start(self, behaviour: Behaviour | None = None, **kw: object) -> tuple[NtpServer, Behaviour]:
        b = behaviour or Behaviour(**kw)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: SntpResponder(b),
                                                           local_addr=("127.0.0.1", 0))
        self.transports.append(transport)
        port = transport.get_extra_info("sockname")[1]
        return NtpServer("127.0.0.1", port), b

    def close(self) -> None:
        for t in self.transports:
            t.close()


class HttpDateServer:
    """Minimal HTTP/1.1 server answering every request with a (skewed) ``Date`` header."""

    def __init__(self, skew: float = 0.0) -> None:
        self.skew = skew
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        self.requests += 1
        date = formatdate(time.time() + self.skew, usegmt=True)
        writer.write(f"HTTP/1.1 200 OK\r\nDate: {date}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def synced_kernel() -> KernelState:
    return KernelState(True, True, 0, 0x2001, False, 0.05, 0.001)


def unsynced_kernel() -> KernelState:
    return KernelState(True, False, 5, 0x40, True, 16.0, 16.0)


def unused_udp_port() -> int:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port



KEY = re.compile(r"^[^:\s]+:[^:\s]+$")


def validate_health_json(doc: dict[str, Any]) -> None:
    """draft-inadarei-api-health-check-06 structure (the parts evolink emits)."""
    assert doc["status"] in ("pass", "warn", "fail")
    if doc["status"] == "pass":
        assert "output" not in doc
    for name in ("version", "releaseId", "serviceId", "description", "output"):
        assert name not in doc or isinstance(doc[name], str)
    assert isinstance(doc.get("checks", {}), dict)
    for key, entries in doc.get("checks", {}).items():
        assert KEY.match(key), key
        assert isinstance(entries, list) and entries
        for e in entries:
            assert e["status"] in ("pass", "warn", "fail")
            assert e.get("componentType", "component") in ("component", "datastore", "system")
            if "observedUnit" in e:
                assert "observedValue" in e and isinstance(e["observedUnit"], str)
            datetime.fromisoformat(e["time"])  # ISO 8601
            assert e["time"].endswith("Z")
            if e["status"] == "pass":
                assert "output" not in e and "affectedEndpoints" not in e
            if "affectedEndpoints" in e:
                assert all(isinstance(u, str) for u in e["affectedEndpoints"])
    worst = max((("pass", "warn", "fail").index(e["status"])
                 for entries in doc.get("checks", {}).values() for e in entries), default=0)
    assert ("pass", "warn", "fail").index(doc["status"]) >= min(worst, 1)
